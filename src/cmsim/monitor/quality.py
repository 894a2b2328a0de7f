"""Data-quality check of the NIR predictions before the monitor uses them.

A frozen NIR signal (the analyser or its data link stops updating and the last prediction
is repeated) looks like a perfectly steady blend. Fed to the estimator it is worse than no
reading: after a real disturbance seen by the load cells, the repeated value keeps pulling
the estimate back to the old content. A chemometric prediction on a noisy spectrum never
repeats the previous prediction exactly, so a reading identical to the last valid one is
taken as a repeat: it is not used (the estimator, the start-up qualification, the
quantile policy's PAT rule and, on a monitored line, NIR feedback control treat it as a
dropout), and the episode is
logged as an ``alarm`` ``nir_frozen`` until a reading differs again.

Readings exported with few digits (a historian table) can repeat by chance; such a repeat is
then also skipped, which only costs one reading's information.
"""

from __future__ import annotations

import numpy as np

from cmsim.monitor.events import EventKind, MonitorEvent

__all__ = ["FrozenReadings"]


class FrozenReadings:
    """Flat-line check of a reading stream, chunk by chunk.

    Attributes
    ----------
    events : list of MonitorEvent
        ``alarm`` / ``alarm_cleared`` records of the ``nir_frozen`` episodes, drained by the
        monitor.
    """

    def __init__(self) -> None:
        self.events: list[MonitorEvent] = []
        self._last = np.nan  # the last valid reading
        self._frozen = False
        self._n = 0

    def clean(self, t: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The readings ``y`` [-] at times ``t`` [s] with the repeats of the last valid
        reading set to NaN (``y`` itself when there is none).

        Examples
        --------
        >>> q = FrozenReadings()
        >>> q.clean(np.arange(6.0), np.array([0.1, 0.2, 0.2, np.nan, 0.2, 0.3])).tolist()
        [0.1, 0.2, nan, nan, nan, 0.3]
        >>> [(e.time_s, e.kind.value) for e in q.events]
        [(2.0, 'alarm'), (5.0, 'alarm_cleared')]
        """
        if y.size == 0:
            return y
        finite = np.isfinite(y)
        if not finite.any():
            return y
        # the last valid reading before each one (forward fill, seeded by the last chunk)
        idx = np.where(finite, np.arange(y.size), -1)
        np.maximum.accumulate(idx, out=idx)
        before = np.concatenate(([-1], idx[:-1]))
        prev = np.where(before >= 0, y[np.maximum(before, 0)], self._last)
        repeat = finite & (y == prev)
        self._last = float(y[idx[-1]])
        if not repeat.any() and not self._frozen:
            return y
        self._log(t, repeat, finite)
        out = y.copy()
        out[repeat] = np.nan
        return out

    def _log(self, t: np.ndarray, repeat: np.ndarray, finite: np.ndarray) -> None:
        """Episode records: from the first repeat to the first reading that differs."""
        for i in np.flatnonzero(finite).tolist():
            if repeat[i] and not self._frozen:
                self._frozen = True
                self._n += 1
                self.events.append(MonitorEvent(float(t[i]), EventKind.ALARM, {
                    "rule": "nir_frozen", "key": f"nir_frozen#{self._n}",
                    "statistic": "NIR prediction identical to the previous one"}))
            elif not repeat[i] and self._frozen:
                self._frozen = False
                self.events.append(MonitorEvent(float(t[i]), EventKind.ALARM_CLEARED, {
                    "rule": "nir_frozen", "key": f"nir_frozen#{self._n}"}))
