"""Diversion policies: which gate ticks to divert, from the estimator's view of the line.

* :class:`RiskPolicy` (``"risk"``): divert a gate tick when the probability that its content
  is outside the limits exceeds ``max_risk``.
* :class:`QuantilePolicy` (``"quantile"``): ICH Q13-style windows. A deviation of a feeder
  flow (the loss-in-weight controller's estimate) from its nominal value opens an
  RTD-quantile window (method B, feeder-to-gate RTD); NIR readings outside the limits for
  ``persistence`` readings, or a signal of the innovation chart, open a PAT window
  (probe-to-gate RTD, back-projected by the NIR latency). Windows use the current RTDs (after
  speed changes) and are never shortened.

Both see the same :class:`~cmsim.monitor.estimator.GateEstimate` and plant signals, so the
two can be compared on the same signals (``cmsim replay --set diversion.policy=quantile``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmsim.monitor.diversion import DiversionManager
from cmsim.monitor.pat import RunTracker
from cmsim.monitor.windows import pat_window, quantile_window

__all__ = ["QuantilePolicy", "QuantileSettings", "RiskPolicy"]


class RiskPolicy:
    """Divert where the risk exceeds ``max_risk`` [-]."""

    name = "risk"

    def __init__(self, max_risk: float) -> None:
        self.max_risk = float(max_risk)

    def decide(self, k0: int, risk: np.ndarray, **_: Any) -> np.ndarray:
        """Gate ticks ``[k0, k0 + n)`` to divert."""
        return risk > self.max_risk


@dataclass(frozen=True)
class QuantileSettings:
    """Settings of the quantile policy (SI units).

    Attributes
    ----------
    alpha : float
        Quantile level of the windows [-].
    margin : float
        Margin at both ends of every window [s].
    feeder_deviation : float
        Relative deviation of a feeder flow from nominal that opens a window [-].
    feeder_persistence : float
        How long the deviation must last [s].
    monitored : tuple of int
        Feeders watched (the API and those whose stop could move the content out of limits).
    persistence, clear_readings : int
        NIR readings outside / inside the limits to open / clear a PAT alarm.
    sample_period, lag : float
        NIR sample period and latency + integration time [s].
    """

    alpha: float
    margin: float
    feeder_deviation: float
    feeder_persistence: float
    monitored: tuple[int, ...]
    persistence: int
    clear_readings: int
    sample_period: float
    lag: float


class QuantilePolicy:
    """ICH Q13-style RTD-quantile and PAT windows (see the module docstring).

    Parameters
    ----------
    settings : QuantileSettings
        Window settings.
    n_ticks, dt, gate_delay : int, float, float
        Run length [ticks], tick [s], gate actuation delay [s].
    nominal : ndarray
        Nominal feeder flows [kg/s].
    limits : (float, float)
        Content limits, fractions of target [-].
    target : float
        Target API mass fraction [-].
    """

    name = "quantile"
    #: reads the feeders' flow estimates (the risk policy does not)
    needs_flows = True

    def __init__(self, settings: QuantileSettings, n_ticks: int, dt: float, gate_delay: float,
                 nominal: np.ndarray, limits: tuple[float, float], target: float) -> None:
        self.s = s = settings
        self.dt = float(dt)
        self.manager = DiversionManager(n_ticks, dt, gate_delay)
        self.nominal = np.asarray(nominal, dtype=np.float64)
        self.limits, self.target = limits, float(target)
        k_on = max(1, int(math.ceil(s.feeder_persistence / dt - 1e-9)))
        self._feeders = {f: RunTracker(k_on, 1) for f in s.monitored}
        self._pat = RunTracker(s.persistence, s.clear_readings)
        self._open: dict[str, tuple[str, float, float]] = {}  # key -> (kind, t_first, decided)
        self._n = 0

    def _window(self, kind: str, t_first: float, t_last: float, decided: float,
                models: tuple[Any, Any], trigger: str) -> Any:
        s = self.s
        if kind == "B":
            return quantile_window(t_first, max(t_last, t_first), models[0], s.alpha,
                                   s.margin, s.margin, trigger=trigger)
        return pat_window(t_first, max(t_last, t_first), s.sample_period, models[1], s.alpha,
                          latency=s.lag, margin_start=s.margin, margin_end=s.margin,
                          trigger=trigger, decision_s=decided)

    def _request(self, key: str, t_now: float, models: tuple[Any, Any]) -> None:
        kind, t_first, decided = self._open[key]
        trigger = key.split("#")[0]
        self.manager.request(self._window(kind, t_first, t_now, decided, models, trigger),
                             decided, key=key)

    def _open_alarm(self, trigger: str, kind: str, t_first: float, decided: float) -> str:
        self._n += 1
        key = f"{trigger}#{self._n}"
        self._open[key] = (kind, t_first, decided)
        return key

    def decide(self, k0: int, risk: np.ndarray, *, flows: np.ndarray, nir_t: np.ndarray,
               nir_y: np.ndarray, alarms: list[float], models: tuple[Any, Any],
               **_: Any) -> np.ndarray:
        """Request/extend windows from this chunk's signals; return the plan of its ticks.

        Parameters
        ----------
        k0 : int
            First tick of the chunk.
        risk : ndarray
            Unused by this policy (same interface as :class:`RiskPolicy`).
        flows : ndarray, shape (n_feeders, n)
            The feeders' flow estimates per tick (the loss-in-weight controllers' slopes,
            held) [kg/s].
        nir_t, nir_y : ndarray
            NIR reading times [s] and mass fractions [-].
        alarms : list of float
            Innovation-chart signal times [s].
        models : (RTDModel, RTDModel)
            Current feeder-to-gate and probe-to-gate RTDs.
        """
        n = risk.size
        dt = self.dt
        for f, tracker in self._feeders.items():
            bad = np.abs(flows[f] / self.nominal[f] - 1.0) > self.s.feeder_deviation
            for kind, i, tref in tracker.update_grid(k0, dt, bad):
                t_dec = (k0 + i + 1) * dt
                if kind == "open":
                    self._open_alarm(f"feeder:{f}", "B", tref, t_dec)
                else:
                    key = next(k for k in self._open if k.startswith(f"feeder:{f}#"))
                    self._request(key, tref + dt, models)
                    del self._open[key]
        if nir_t.size:
            lo, hi = self.limits
            c = nir_y / self.target
            with np.errstate(invalid="ignore"):
                bad = np.isfinite(c) & ((c < lo) | (c > hi))
            for kind, i, tref in self._pat.update(nir_t, bad):
                if kind == "open":
                    self._open_alarm("pat_oos", "PAT", tref, float(nir_t[i]))
                else:
                    key = next(k for k in self._open if k.startswith("pat_oos#"))
                    self._request(key, float(nir_t[i]), models)
                    del self._open[key]
        for t in alarms:
            key = self._open_alarm("model_mismatch", "PAT", t, t)
            self._request(key, t + self.s.clear_readings * self.s.sample_period, models)
            del self._open[key]
        t_end = (k0 + n) * dt
        for key in self._open:
            self._request(key, t_end, models)
        return self.manager.plan[k0:k0 + n]
