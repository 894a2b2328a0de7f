"""Press stops seen by the monitor, and diversion-window ends carried through them.

While the turret is stopped nothing moves inside the press (the line's press model freezes
its transfer and feed-frame stages), so material inside the press at a stop reaches the gate
later by the length of the stop. RTD-quantile and PAT windows are computed in clock time
from the RTD of a running press; :meth:`PressStops.end_through` moves a window's end by the
stopped time it spans:

    end' = the clock time at which the press has run ``end - t_ref`` seconds after ``t_ref``,

where ``t_ref`` is the time of the last affected material the window was computed from (at the
feeder or the probe). Material that arrives while the press is stopped waits in the stop
buffer and is counted as entering the press at the restart. The blender is not frozen by a
press stop, so for a feeder-to-gate window (blender + press) the moved end is later than the
true last arrival: conservative.

A stop still in progress is taken to last up to the end of the signals seen so far; the
windows are requested again at the restart with its true length.
"""

from __future__ import annotations

import math

__all__ = ["PressStops"]


class PressStops:
    """Stop intervals of the press, from the ``press_running`` signal chunk by chunk.

    Attributes
    ----------
    intervals : list of [float, float or None]
        ``[stop, restart]`` times [s]; ``restart`` is None while the press is stopped.
    now : float
        End of the signals seen so far [s].
    """

    def __init__(self) -> None:
        self.intervals: list[list[float | None]] = []
        self.now = 0.0

    @property
    def stopped(self) -> bool:
        """Whether the press is stopped at :attr:`now`."""
        return bool(self.intervals) and self.intervals[-1][1] is None

    def observe(self, t0: float, t1: float, running: bool) -> tuple[float, float] | None:
        """Take the press state of the signal chunk ``[t0, t1)`` [s].

        Returns
        -------
        (float, float) or None
            ``(stop, restart)`` [s] of a stop that ended at ``t0``, else None.
        """
        self.now = float(t1)
        if not running and not self.stopped:
            self.intervals.append([float(t0), None])
        elif running and self.stopped:
            self.intervals[-1][1] = float(t0)
            stop = self.intervals[-1][0]
            assert stop is not None
            return stop, float(t0)
        return None

    def end_through(self, t_ref: float, end: float) -> float:
        """Clock time [s] at which the press has run ``end - t_ref`` [s] after ``t_ref`` [s].

        Examples
        --------
        >>> s = PressStops()
        >>> _ = s.observe(0.0, 400.0, True); _ = s.observe(400.0, 700.0, False)
        >>> s.observe(700.0, 800.0, True)
        (400.0, 700.0)
        >>> s.end_through(350.0, 569.0), s.end_through(500.0, 600.0), s.end_through(10.0, 90.0)
        (869.0, 800.0, 90.0)
        """
        t, left = float(t_ref), float(end) - float(t_ref)
        if left < 0.0 or not math.isfinite(left):
            return float(end)
        for stop, restart in self.intervals:
            assert stop is not None
            restart = self.now if restart is None else restart
            if restart <= t:
                continue
            if stop >= t + left:
                break
            left -= max(0.0, stop - t)
            t = restart
        return t + left
