"""Diversion policies: which gate ticks to divert, from the estimator's view of the line.

* :class:`RiskPolicy` (``"risk"``): divert a gate tick when the probability that its content
  is outside the limits exceeds ``max_risk``.
* :class:`QuantilePolicy` (``"quantile"``): ICH Q13-style windows. A deviation of a feeder
  flow (the loss-in-weight controller's estimate) from its nominal value or its set point
  (``feeder_reference``) opens an RTD-quantile window (method B, feeder-to-gate RTD); NIR
  readings outside the limits for ``persistence`` readings, or a signal of the innovation
  chart, open a PAT window (probe-to-gate RTD, back-projected by the NIR latency). Windows use
  the current RTDs (after speed changes) and are never shortened.

Under both policies a signal of a control chart on the innovations with
``chart_action = "divert"`` (``chart_alarms``, :mod:`cmsim.monitor.rules`) opens the same
PAT window as a model-mismatch signal opens under the quantile policy
(:meth:`AlarmWindows.signal`).

Both see the same :class:`~cmsim.monitor.estimator.GateEstimate` and plant signals, so the
two can be compared on the same signals (``cmsim replay --set diversion.policy=quantile``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cmsim.monitor.diversion import DiversionManager
from cmsim.monitor.events import Alarm, EventKind, MonitorEvent, WindowKind
from cmsim.monitor.press_stops import PressStops
from cmsim.monitor.tracker import RunTracker
from cmsim.monitor.windows import pat_window, quantile_window

__all__ = ["AlarmWindows", "QuantilePolicy", "QuantileSettings", "RiskPolicy",
           "WindowSettings"]


@dataclass(frozen=True)
class WindowSettings:
    """Settings of the windows alarms open (SI units).

    Attributes
    ----------
    alpha : float
        Quantile level of the windows [-].
    margin : float
        Margin at both ends of every window [s].
    clear_readings : int
        NIR sample periods a one-off signal (model mismatch, control chart) keeps its window
        open after the signalling reading [-].
    sample_period, lag : float
        NIR sample period and latency + integration time [s].
    """

    alpha: float
    margin: float
    clear_readings: int
    sample_period: float
    lag: float


class AlarmWindows:
    """Diversion windows opened, extended and closed by alarms (both policies).

    Parameters
    ----------
    settings : WindowSettings
        Window settings.
    n_ticks, dt, gate_delay : int, float, float
        Run length [ticks], tick [s], gate actuation delay [s].
    """

    def __init__(self, settings: WindowSettings, n_ticks: int, dt: float,
                 gate_delay: float) -> None:
        self.s = settings
        self.manager = DiversionManager(n_ticks, dt, gate_delay)
        #: ``alarm`` / ``alarm_cleared`` records of the alarms opened and closed, drained by
        #: the monitor
        self.events: list[MonitorEvent] = []
        self._open: dict[str, Alarm] = {}
        #: closed alarms with the end of their evidence [s] and the RTDs of their window
        self._closed: list[tuple[Alarm, float, tuple[Any, Any]]] = []
        self._n = 0
        self.press = PressStops()

    def _window(self, alarm: Alarm, t_last: float, models: tuple[Any, Any]) -> Any:
        s = self.s
        t_first = alarm.first_s
        t_ref = max(t_last, t_first)
        if alarm.window is WindowKind.FEEDER_TO_GATE:
            w = quantile_window(t_first, t_ref, models[0], s.alpha, s.margin, s.margin,
                                trigger=alarm.trigger)
        else:
            w = pat_window(t_first, t_ref, s.sample_period, models[1], s.alpha,
                           latency=s.lag, margin_start=s.margin, margin_end=s.margin,
                           trigger=alarm.trigger, decision_s=alarm.decided_s)
        if not self.press.intervals:
            return w
        end = self.press.end_through(t_ref, w.end_s)
        if end == w.end_s:
            return w
        return replace(w, end_s=end, details={**w.details, "press_stopped_s": end - w.end_s})

    def open(self, trigger: str, window: WindowKind, t_first: float, decided: float, *,
             log: bool = True) -> Alarm:
        """Open an alarm of ``trigger`` decided at ``decided`` [s] whose evidence began at
        ``t_first`` [s]; its window is placed by the RTD of ``window``."""
        self._n += 1
        alarm = Alarm(f"{trigger}#{self._n}", trigger, window, t_first, decided)
        self._open[alarm.key] = alarm
        if log:
            self.events.append(MonitorEvent(decided, EventKind.ALARM, {
                "rule": trigger, "key": alarm.key, "first_time_s": t_first}))
        return alarm

    def extend(self, alarm: Alarm, t_now: float, models: tuple[Any, Any]) -> None:
        """Request the window of the open ``alarm`` up to ``t_now`` [s]."""
        self.manager.request(self._window(alarm, t_now, models), alarm.decided_s,
                             key=alarm.key)

    def close(self, alarm: Alarm, t_now: float, models: tuple[Any, Any], *,
              cleared: float | None = None, log: bool = True) -> None:
        """Extend the window of ``alarm`` to ``t_now`` [s] and close it (cleared at
        ``cleared`` [s], default ``t_now``)."""
        self.extend(alarm, t_now, models)
        del self._open[alarm.key]
        self._closed.append((alarm, t_now, models))
        if log:
            self.events.append(MonitorEvent(t_now if cleared is None else cleared,
                                            EventKind.ALARM_CLEARED,
                                            {"rule": alarm.trigger, "key": alarm.key}))

    def open_alarm(self, trigger: str) -> Alarm:
        """The open alarm of ``trigger``."""
        return next(a for a in self._open.values() if a.trigger == trigger)

    def signal(self, trigger: str, t: float, models: tuple[Any, Any]) -> None:
        """A one-off signal at reading time ``t`` [s]: a PAT window from the material read at
        ``t`` to ``clear_readings`` sample periods later (the monitor logs the signal)."""
        alarm = self.open(trigger, WindowKind.PROBE_TO_GATE, t, t, log=False)
        self.close(alarm, t + self.s.clear_readings * self.s.sample_period, models, log=False)

    def extend_open(self, t_end: float, models: tuple[Any, Any]) -> None:
        """Extend every open alarm's window to ``t_end`` [s]."""
        for alarm in self._open.values():
            self.extend(alarm, t_end, models)

    def observe_press(self, t0: float, t1: float, running: bool) -> None:
        """Take the press state of the signal chunk ``[t0, t1)`` [s]; at a restart, carry
        the windows of closed alarms that reach into the stop through it
        (:mod:`cmsim.monitor.press_stops`; open alarms are extended every chunk).

        The requests keep their alarms' decision times: a window moved by a stop diverts the
        same material as before, which was inside the press (or its stop buffer) when the
        turret stopped and is held there until the restart.
        """
        stop = self.press.observe(t0, t1, running)
        if stop is None:
            return
        for alarm, t_last, models in self._closed:
            if self.manager.requests[alarm.key].window.end_s > stop[0]:
                self.manager.request(self._window(alarm, t_last, models), alarm.decided_s,
                                     key=alarm.key)


class RiskPolicy:
    """Divert where the risk exceeds ``max_risk`` [-], and inside the windows of control-chart
    signals that divert (``windows``; none when no chart diverts).

    A chart signal opens a window rather than raising the estimator's model variance (what
    the in-filter model-mismatch alarm does): that variance is taken back by the Kalman update
    of the very reading that signalled, so it only re-converges the estimate and diverts
    nothing unless the estimate itself leaves the limits, which the risk already covers; a
    chart set to divert is asked to divert the material read around its signal.
    """

    name = "risk"

    def __init__(self, max_risk: float, windows: AlarmWindows | None = None) -> None:
        self.max_risk = float(max_risk)
        self.windows = windows

    @property
    def manager(self) -> DiversionManager | None:
        """The windows' diversion plan and requests (None without windows)."""
        return None if self.windows is None else self.windows.manager

    def decide(self, k0: int, risk: np.ndarray, *,
               chart_alarms: Sequence[tuple[float, str]] = (),
               models: tuple[Any, Any] | None = None, **_: Any) -> np.ndarray:
        """Gate ticks ``[k0, k0 + n)`` to divert (``chart_alarms``: ``(reading time [s],
        rule)`` of the chart signals that divert; ``models``: current feeder-to-gate and
        probe-to-gate RTDs)."""
        divert = risk > self.max_risk
        if self.windows is None:
            return divert
        for t, rule in chart_alarms:
            assert models is not None
            self.windows.signal(rule, t, models)
        return divert | self.windows.manager.plan[k0:k0 + risk.size]


@dataclass(frozen=True)
class QuantileSettings:
    """Settings of the quantile policy (SI units).

    Attributes
    ----------
    windows : WindowSettings
        Window settings.
    feeder_deviation : float
        Relative deviation of a feeder flow from its reference that opens a window [-].
    feeder_persistence : float
        How long the deviation must last [s].
    monitored : tuple of int
        Feeders watched (the API and those whose stop could move the content out of limits;
        none when the feeder trigger is off).
    persistence : int
        NIR readings outside the limits that open a PAT alarm (``clear_readings`` of
        ``windows`` in-limit readings clear it).
    feeder_reference : {"nominal", "set_point"}
        What a feeder flow is compared with: its nominal flow, or its current set point (a
        commanded change is then no fault; a commanded stop is left to the shut-down rules).
    """

    windows: WindowSettings
    feeder_deviation: float
    feeder_persistence: float
    monitored: tuple[int, ...]
    persistence: int
    feeder_reference: str = "nominal"


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
        self.windows = AlarmWindows(s.windows, n_ticks, dt, gate_delay)
        self.manager = self.windows.manager
        self.nominal = np.asarray(nominal, dtype=np.float64)
        self.limits, self.target = limits, float(target)
        k_on = max(1, int(math.ceil(s.feeder_persistence / dt - 1e-9)))
        self._feeders = {f: RunTracker(k_on, 1) for f in s.monitored}
        self._pat = RunTracker(s.persistence, s.windows.clear_readings)

    def _feeder_bad(self, f: int, flows: np.ndarray, setpoint: np.ndarray | None
                    ) -> np.ndarray:
        """Ticks where feeder ``f``'s flow estimate is off its reference."""
        if self.s.feeder_reference == "set_point" and setpoint is not None:
            ref = setpoint[f]
            return (ref > 0.0) & (np.abs(flows[f] - ref) > self.s.feeder_deviation * ref)
        return np.abs(flows[f] / self.nominal[f] - 1.0) > self.s.feeder_deviation

    def decide(self, k0: int, risk: np.ndarray, *, flows: np.ndarray, nir_t: np.ndarray,
               nir_y: np.ndarray, alarms: list[float], models: tuple[Any, Any],
               chart_alarms: Sequence[tuple[float, str]] = (),
               setpoint: np.ndarray | None = None, **_: Any) -> np.ndarray:
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
            Model-mismatch signal times of the estimator's innovation CUSUM [s].
        models : (RTDModel, RTDModel)
            Current feeder-to-gate and probe-to-gate RTDs.
        chart_alarms : sequence of (float, str)
            ``(reading time [s], rule)`` of the control-chart signals that divert.
        setpoint : ndarray, shape (n_feeders, n), optional
            Commanded feeder flows [kg/s] (the reference with ``feeder_reference =
            "set_point"``).
        """
        n = risk.size
        dt = self.dt
        w = self.windows
        for f, tracker in self._feeders.items():
            for kind, i, tref in tracker.update_grid(k0, dt, self._feeder_bad(f, flows,
                                                                               setpoint)):
                if kind == "open":
                    w.open(f"feeder:{f}", WindowKind.FEEDER_TO_GATE, tref, (k0 + i + 1) * dt)
                else:
                    w.close(w.open_alarm(f"feeder:{f}"), tref + dt, models,
                            cleared=(k0 + i + 1) * dt)
        if nir_t.size:
            lo, hi = self.limits
            c = nir_y / self.target
            with np.errstate(invalid="ignore"):
                bad = np.isfinite(c) & ((c < lo) | (c > hi))
            for kind, i, tref in self._pat.update(nir_t, bad):
                if kind == "open":
                    w.open("pat_oos", WindowKind.PROBE_TO_GATE, tref, float(nir_t[i]))
                else:
                    w.close(w.open_alarm("pat_oos"), float(nir_t[i]), models)
        for t in alarms:
            w.signal("model_mismatch", t, models)
        for t, rule in chart_alarms:
            w.signal(rule, t, models)
        w.extend_open((k0 + n) * dt, models)
        return self.manager.plan[k0:k0 + n]
