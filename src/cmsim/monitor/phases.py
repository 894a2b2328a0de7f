"""Start-up and shut-down diversion: rules that hold whatever the diversion policy.

ICH Q13 expects transient material to be diverted unless its quality is shown:

* **start-up** (a line started empty, or feeding resumed after a stop): divert until the line
  has settled (``settle_s`` after feeding began: the time by which the chosen quantile of the
  feeder-to-gate RTD has passed) and ``k`` consecutive NIR readings are inside the limits;
* **shut-down**: once every feeder is commanded off (total commanded flow 0), divert from the
  stop plus ``t_alpha`` of the feeder-to-gate RTD until the end of the run or the restart.

Both act on decision times: a gate tick ``k`` is decided at ``(k - G + 1) dt``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmsim.monitor.events import EventKind, MonitorEvent
from cmsim.monitor.state import StartupQualifier

__all__ = ["ForcedInterval", "PhaseRules"]


@dataclass
class ForcedInterval:
    """Gate ticks ``[first, end)`` diverted by a phase rule (``end`` None: still open).

    Attributes
    ----------
    first : int
        First gate tick [-].
    end : int or None
        End tick (exclusive) [-], None while the phase lasts.
    reason : {"start_up", "shut_down"}
        The phase (the trigger named in the diversion records).
    """

    first: int
    end: int | None
    reason: str


class PhaseRules:
    """Forced diversion during start-up and shut-down.

    Parameters
    ----------
    dt : float
        Tick [s].
    gate_ticks : int
        ``G`` [-] (see :mod:`cmsim.monitor.estimator`).
    settle_s : float
        Time from the start of feeding until the line counts as settled [s].
    t_alpha : float
        Early quantile of the feeder-to-gate RTD [s] (start of the shut-down window).
    k_readings : int
        In-limit NIR readings that complete a start-up (0: no NIR).
    limits : (float, float)
        Limits on the content as fractions of target [-].
    target : float
        Target API mass fraction [-] (NIR readings are mass fractions).
    start_up : bool
        The run begins with a start-up.

    Attributes
    ----------
    intervals : list of ForcedInterval
        Forced gate intervals, in order.
    events : list of MonitorEvent
        ``feed_stop``, ``feed_restart``, ``state_of_control`` records.
    """

    def __init__(self, dt: float, gate_ticks: int, settle_s: float, t_alpha: float,
                 k_readings: int, limits: tuple[float, float], target: float,
                 start_up: bool) -> None:
        self.dt, self.g = float(dt), int(gate_ticks)
        self.settle_s, self.t_alpha = float(settle_s), float(t_alpha)
        self.k, self.limits, self.target = int(k_readings), limits, float(target)
        self.intervals: list[ForcedInterval] = []
        self.events: list[MonitorEvent] = []
        self._feeding = True
        self._qual: StartupQualifier | None = None
        if start_up:
            self._begin_start_up(0.0, restart=False)

    @property
    def phase(self) -> str:
        """``"start_up"``, ``"shut_down"``/``"stopped"`` or ``"run"``."""
        if not self._feeding:
            return "stopped"
        return "start_up" if self._qual is not None else "run"

    def _log(self, t: float, kind: EventKind, data: dict[str, Any]) -> None:
        self.events.append(MonitorEvent(float(t), kind, data))

    @property
    def starts_cold(self) -> bool:
        """The run began with a start-up at tick 0 (the line started empty)."""
        return bool(self.intervals) and self.intervals[0].reason == "start_up" and \
            self.intervals[0].first == 0

    def _begin_start_up(self, t: float, *, restart: bool) -> None:
        self._qual = StartupQualifier(t + self.settle_s, self.k)
        self.intervals.append(ForcedInterval(int(math.ceil(t / self.dt - 1e-9)), None,
                                             "start_up"))
        self._log(t, EventKind.STATE_OF_CONTROL, {"in_control": False, "state": "start_up",
                                          "reason": "feeding resumed" if restart else
                                          "line started empty",
                                          "settled_s": t + self.settle_s})

    def _close(self, end_tick: int) -> None:
        last = self.intervals[-1] if self.intervals else None
        if last is not None and last.end is None:
            last.end = max(int(end_tick), last.first)

    def update(self, k0: int, commanded_total: np.ndarray, nir_t: np.ndarray,
               nir_y: np.ndarray) -> np.ndarray:
        """Process ticks ``[k0, k0 + n)``; return the forced-diversion mask of those gate ticks.

        Parameters
        ----------
        k0 : int
            First tick.
        commanded_total : ndarray, shape (n,)
            Sum of set point x running over the feeders [kg/s].
        nir_t, nir_y : ndarray
            NIR readings of the chunk: times [s] and mass fractions [-] (NaN: none).
        """
        n = commanded_total.size
        feeding = commanded_total > 0.0
        prev = np.concatenate(([self._feeding], feeding[:-1]))
        for j in np.flatnonzero(feeding != prev):
            t = (k0 + j) * self.dt
            if not feeding[j]:  # feed stop
                self._feeding = False
                shut = t + self.t_alpha
                self._log(t, EventKind.FEED_STOP, {"stop_s": t, "t_alpha_s": self.t_alpha,
                                           "shut_down_s": shut})
                if self._qual is not None:
                    self._close(k0 + j)
                    self._qual = None
                # from the gate tick containing the shut-down time (ticks cover [k dt, (k+1) dt))
                self.intervals.append(ForcedInterval(int(math.floor(shut / self.dt + 1e-9)),
                                                     None, "shut_down"))
            else:  # restart
                self._feeding = True
                self._log(t, EventKind.FEED_RESTART, {"restart_s": t})
                self._close(k0 + j)
                self._begin_start_up(t, restart=True)
        self._feeding = bool(feeding[-1]) if n else self._feeding
        if self._qual is not None and self._feeding:
            lo, hi = self.limits
            c = nir_y / self.target
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(c) & (c >= lo) & (c <= hi)
            ready = self._qual.update(nir_t, ok)
            if math.isfinite(ready):
                self._close(int(math.ceil(ready / self.dt - 1e-9)) + self.g - 1)
                self._qual = None
                self._log(ready, EventKind.STATE_OF_CONTROL, {"in_control": True,
                                                      "reason": "start-up complete"})
        mask = np.zeros(n, dtype=bool)
        for iv in self.intervals:
            lo_k = max(iv.first, k0) - k0
            hi_k = (n if iv.end is None else min(iv.end, k0 + n) - k0)
            if hi_k > lo_k:
                mask[lo_k:hi_k] = True
        return mask
