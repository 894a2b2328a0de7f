"""The PAT monitor: plant signals in, gate decisions and an audit trail out.

:class:`LineMonitor` only delegates, chunk by chunk:

1. :class:`~cmsim.monitor.plant.PlantRecorder` turns the line into plant signals (when the
   monitor runs on a simulated line; ``cmsim replay`` feeds recorded chunks instead);
2. :class:`~cmsim.monitor.estimator.LineStateEstimator` estimates the content of every gate
   tick and its uncertainty from those signals;
3. :func:`~cmsim.monitor.risk.content_risk` turns that into the risk of each tick;
4. :class:`~cmsim.monitor.phases.PhaseRules` forces diversion during start-up and shut-down;
5. the control charts on the estimator's innovations (:mod:`cmsim.monitor.rules`, when the
   scenario switches any on) log their signals, which take the line out of the state of
   control and, with ``chart_action = "divert"``, go to the policy;
6. the policy (:mod:`cmsim.monitor.policies`) decides the other ticks;
7. the plan of the chunk goes to the gate.

The monitor never reads a true flow or content: its inputs are the signal chunks.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from cmsim.monitor.estimator import LineStateEstimator
from cmsim.monitor.events import EventKind, MonitorEvent
from cmsim.monitor.phases import PhaseRules
from cmsim.monitor.plant import HeldControllerFlows, PlantRecorder, SignalChunk
from cmsim.monitor.quality import FrozenReadings
from cmsim.monitor.records import diversion_records
from cmsim.monitor.risk import content_risk
from cmsim.monitor.rules import SPCRules
from cmsim.monitor.windows import cached_series, rtd_envelope

__all__ = ["LineMonitor"]


class LineMonitor:
    """PAT monitor and diversion (see the module docstring).

    Parameters
    ----------
    estimator : LineStateEstimator
        The line-state estimator.
    phases : PhaseRules
        Start-up / shut-down rules.
    policy : RiskPolicy or QuantilePolicy
        Diversion policy.
    n_ticks : int
        Length of the run [ticks].
    limits : (float, float)
        Content limits, fractions of target [-].
    plant : PlantRecorder, optional
        The plant's instruments (when observing a simulated line).
    drive_gate : bool
        Write the plan into ``line.divert_plan`` (False: monitor only).
    sample_period : float
        NIR sample period [s] (how long a model-mismatch or chart signal keeps the line out
        of control: ``clear_readings`` periods).
    rules : SPCRules, optional
        Control charts on the innovations (none: no chart is on).
    pat_grace : float
        Longest time without a valid NIR reading before the line is out of the state of
        control [s].
    frozen_check : bool
        Take an exact repeat of the last valid NIR reading as a frozen signal and skip it
        (:mod:`cmsim.monitor.quality`; off for an instrument specified without noise).
    """

    name = "monitor"

    def __init__(self, estimator: LineStateEstimator, phases: PhaseRules, policy: Any,
                 n_ticks: int, limits: tuple[float, float], *,
                 plant: PlantRecorder | None = None, drive_gate: bool = True,
                 sample_period: float = 2.0, rules: SPCRules | None = None,
                 pat_grace: float = np.inf, frozen_check: bool = True) -> None:
        self.estimator = estimator
        self.phases = phases
        self.policy = policy
        self.plant = plant
        self.rules = rules
        self.pat_grace = float(pat_grace)
        self.drive_gate = bool(drive_gate)
        self.limits = (float(limits[0]), float(limits[1]))
        self.dt = estimator.dt
        n = int(n_ticks)
        self.plan = np.zeros(n, dtype=bool)
        self.forced = np.zeros(n, dtype=bool)
        self.content = np.full(n, np.nan)
        self.sd = np.full(n, np.nan)
        self.content_model = np.full(n, np.nan)
        self.sd_model = np.full(n, np.nan)
        self.risk = np.zeros(n)
        #: what the monitor logged, in order (:attr:`events` gives the event-log records)
        self.log: list[MonitorEvent] = []
        #: times of the signals that take the line out of control for a while [s]
        self._signal_t: dict[str, list[float]] = {"no_model_mismatch": [],
                                                  "no_spc_signal": []}
        #: NIR readings as growing per-chunk lists (``t``, ``nir``), read by NIR feedback control
        self.readings: dict[str, list[np.ndarray]] = {"t": [], "nir": []}
        self._z: dict[str, list[np.ndarray]] = {"t": [], "z": []}
        self._models_key: Any = None
        self._phase_logged = 0
        #: how long a model-mismatch or chart signal keeps the line out of control [s]
        self._signal_hold_s = max(phases.k, 1) * float(sample_period)
        self._held_flows = HeldControllerFlows(self.dt)
        self._frozen = FrozenReadings() if frozen_check else None
        self._models: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------ observer
    def on_chunk(self, line: Any, k0: int, k1: int) -> None:
        """Line observer: read the plant, decide the chunk, set the gate."""
        if k1 <= k0 or self.plant is None:
            return
        self.process(self.plant.on_chunk(line, k0, k1))
        if self.drive_gate:
            line.divert_plan[k0:k1] |= self.plan[k0:k1]

    def process(self, ch: SignalChunk) -> None:
        """Decide the gate ticks of one chunk of plant signals."""
        k0, k1 = ch.k0, ch.k1
        if self._frozen is not None:  # repeats of a frozen NIR are not used
            nir = self._frozen.clean(ch.nir_t, ch.nir)
            if nir is not ch.nir:
                ch = replace(ch, nir=nir)
            self.log += self._frozen.events
            self._frozen.events.clear()
        est = self.estimator.step(ch)
        lo, hi = self.limits
        # the larger risk of the two explanations of a disagreement between the NIR and the
        # load cells: the content moved (NIR-corrected estimate) or the NIR is wrong
        risk = np.maximum(content_risk(est.content, est.sd, lo, hi),
                          content_risk(est.content_model, est.sd_model, lo, hi))
        forced = self.phases.update(k0, (ch.setpoint * ch.running).sum(axis=0), ch.nir_t,
                                    ch.nir)
        self.log += self.phases.events[self._phase_logged:]  # start-up, feed stops
        self._phase_logged = len(self.phases.events)
        flows = self._held_flows(ch) if getattr(self.policy, "needs_flows", False) else None
        charts = self._chart_signals(ch, est)
        windows = getattr(self.policy, "windows", None)
        if windows is not None:  # windows are carried through press stops
            windows.observe_press(k0 * self.dt, k1 * self.dt, ch.press_running)
        divert = self.policy.decide(k0, risk, flows=flows, setpoint=ch.setpoint,
                                    nir_t=ch.nir_t, nir_y=ch.nir, alarms=est.alarms,
                                    models=self.models(),
                                    chart_alarms=charts if self.rules and self.rules.divert
                                    else ())
        self.plan[k0:k1] = divert | forced
        self.forced[k0:k1] = forced
        self.content[k0:k1] = est.content
        self.sd[k0:k1] = est.sd
        self.content_model[k0:k1] = est.content_model
        self.sd_model[k0:k1] = est.sd_model
        self.risk[k0:k1] = risk
        self.readings["t"].append(ch.nir_t)
        self.readings["nir"].append(ch.nir)
        self._z["t"].append(est.z_t)
        self._z["z"].append(est.z)
        for t in est.alarms:  # out of control for the hold of a signal, then cleared
            key = f"model_mismatch#{len(self._signal_t['no_model_mismatch']) + 1}"
            self._signal_t["no_model_mismatch"].append(t)
            self.log.append(MonitorEvent(t, EventKind.ALARM, {
                "rule": "model_mismatch", "key": key,
                "statistic": "CUSUM of standardised innovations"}))
            self.log.append(MonitorEvent(t + self._signal_hold_s, EventKind.ALARM_CLEARED,
                                         {"rule": "model_mismatch", "key": key}))
        if windows is not None and windows.events:
            self.log += windows.events
            windows.events.clear()

    def _chart_signals(self, ch: SignalChunk, est: Any) -> list[tuple[float, str]]:
        """Run the control charts on the chunk's innovations; log their signals."""
        if self.rules is None:
            return []
        signals = self.rules.step(ch, est)
        for s in signals:
            self.log.append(MonitorEvent(s.time_s, EventKind.SPC_SIGNAL, {
                "rule": s.rule, "action": self.rules.action, **s.data}))
        self._signal_t["no_spc_signal"] += [s.time_s for s in signals]
        self.log += self.rules.records
        self.rules.records.clear()
        return [(s.time_s, s.rule) for s in signals]

    def models(self) -> tuple[Any, Any]:
        """Current feeder-to-gate and probe-to-gate RTDs (after speed changes; envelopes
        with ``rtd_uncertainty``)."""
        est = self.estimator
        key = est.blender.speed  # the only thing that changes the RTDs during a run
        if self._models is None or key != self._models_key:
            blender = est.blender.model
            spec = est.spec
            down = cached_series(spec.transfer_rtd, spec.feed_frame_rtd)
            probe = down if est.at_probe else spec.feed_frame_rtd
            line = cached_series(blender, spec.transfer_rtd, spec.feed_frame_rtd)
            u = est.settings.rtd_uncertainty
            # windows cover the RTDs with every residence time scaled by 1 -+ u
            self._models = (rtd_envelope(line, u), rtd_envelope(probe, u)) if u > 0 else \
                (line, probe)
            self._models_key = key
        assert self._models is not None
        return self._models

    # ------------------------------------------------------------------ results
    @property
    def events(self) -> list[dict[str, Any]]:
        """The event-log records of :attr:`log` (``{time_s, type, source, data}``)."""
        return [e.record(self.name) for e in self.log]

    def signals(self) -> dict[str, np.ndarray]:
        """Monitor signals: NIR readings (``t``, ``nir``, ``nir_true``), the gate estimate
        (``soft_t``: gate tick times [s], ``soft``: content, ``est_sd``: its standard
        deviation, fractions of target), the same without the NIR's model-error correction
        (``soft_model``, ``est_sd_model``), ``risk`` [-] (the larger of the two estimates'
        probabilities of a content outside the limits) and the standardised innovations
        (``z_t`` [s], ``z`` [-])."""
        def cat(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.empty(0)

        out = {"t": cat(self.readings["t"]), "nir": cat(self.readings["nir"]),
               "z_t": cat(self._z["t"]), "z": cat(self._z["z"])}
        if self.plant is not None and self.plant.nir_true:
            out["nir_true"] = cat(self.plant.nir_true)
        n = self.content.size
        out["soft_t"] = (np.arange(n) + 0.5) * self.dt
        out["soft"] = self.content
        out["est_sd"] = self.sd
        out["soft_model"] = self.content_model
        out["est_sd_model"] = self.sd_model
        out["risk"] = self.risk
        return out

    def state_of_control(self) -> Any:
        """State of control per tick (:func:`~cmsim.monitor.state.evaluate_state_of_control`,
        the same start-up qualification and shut-down delay as the diversion):
        in control when the gate accepts, no model-mismatch or control-chart signal is
        recent (within ``clear_readings`` sample periods of NIR) and the last valid NIR
        reading is at most ``pat_grace`` old."""
        from cmsim.monitor.state import evaluate_state_of_control  # noqa: PLC0415

        ph = self.phases
        n = self.plan.size
        t = np.arange(n) * self.dt
        hold = self._signal_hold_s
        conditions = {"no_diversion": ~self.plan}
        for name, times in self._signal_t.items():
            if times:  # model-mismatch / control-chart signals
                quiet = np.ones(n, dtype=bool)
                for ts in times:
                    a = int(np.ceil(ts / self.dt - 1e-9))
                    quiet[a:int(np.ceil((ts + hold) / self.dt - 1e-9))] = False
                conditions[name] = quiet
        stops: list[list[Any]] = []
        cold = ph.starts_cold
        for e in ph.events:
            if e.kind is EventKind.FEED_STOP:
                stops.append([e.time_s, None])
            elif e.kind is EventKind.FEED_RESTART and stops:
                stops[-1][1] = e.time_s
        rt = np.concatenate(self.readings["t"]) if self.readings["t"] else np.empty(0)
        ry = np.concatenate(self.readings["nir"]) if self.readings["nir"] else np.empty(0)
        if ph.k and np.isfinite(self.pat_grace):  # PAT available: a recent valid reading
            last = np.concatenate(([0.0], rt[np.isfinite(ry)]))
            seen = last[np.searchsorted(last, t, side="right") - 1]
            conditions["pat_available"] = t - seen <= self.pat_grace + 1e-9
        lo, hi = ph.limits
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(ry) & (ry / ph.target >= lo) & (ry / ph.target <= hi)
        starts = [0.0]
        if not cold:  # a line started at steady state was qualified before the run
            starts = [-ph.settle_s - (ph.k + 1) * self.dt]
            rt = np.concatenate((-self.dt * np.arange(ph.k, 0, -1), rt))
            ok = np.concatenate((np.ones(ph.k, bool), ok))
        return evaluate_state_of_control(
            t, conditions,
            pat_times=rt if ph.k else None, pat_in_limits=ok if ph.k else None,
            k_consecutive=ph.k, settle_time=ph.settle_s, setpoint_changes=starts,
            feed_stops=[tuple(x) for x in stops], shutdown_delay=ph.t_alpha)

    def state_changes(self) -> list[tuple[float, bool]]:
        """``(time [s], in control)`` at every change of the state of control."""
        soc = self.state_of_control().in_control
        change = np.flatnonzero(np.diff(soc.astype(np.int8))) + 1
        return [(float(k * self.dt), bool(soc[k])) for k in change]

    def expected_escapes(self, tablets: np.ndarray, diverted: np.ndarray) -> float:
        """Sum of the risk over the accepted tablets [-]."""
        acc = ~np.asarray(diverted, dtype=bool)
        return float(np.sum(self.risk[acc] * np.asarray(tablets)[acc]))

    def diversion_events(self, gate_flow: np.ndarray, diverted: np.ndarray,
                         tablet_mass: float) -> list[dict[str, Any]]:
        """One record per run of diverted ticks (:func:`~cmsim.monitor.records.diversion_records`;
        empty when the monitor does not drive the gate)."""
        if not self.drive_gate:
            return []
        return diversion_records(self, gate_flow, diverted, tablet_mass)
