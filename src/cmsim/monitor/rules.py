"""Control charts and MSPC on the estimator's innovations (docs/monitor.md#control-charts).

The ``[monitor]`` charts (``shewhart``, ``ewma``, ``cusum``, ``mspc``) run on the
line-state estimator's standardised innovations ``z`` (one per NIR reading the estimator
used, :attr:`~cmsim.monitor.estimator.GateEstimate.z`), not on the raw readings. In control,
``z`` is close to white N(0, 1): the estimator explains the RTD-filtered feeder variability
and the lot potency that make raw NIR readings strongly autocorrelated. A chart with target
0 and sigma 1 on ``z`` therefore keeps its textbook in-control average run length (ARL0),
while the same chart on raw readings signals far more often (tests/monitor). A chart signal
means that the readings no longer fit the estimator's model of the line (a sensor fault, an
unmeasured disturbance, a wrong model), not that the content left the limits: that is the
estimate's job.

Every rule is one class behind one interface (:class:`Rule`): ``feed(t, x)`` takes a chunk of
reading times [s] and values and returns the :class:`Signal` of that chunk. A univariate
chart restarts from its target after each signal, as after an investigation, so ``N``
in-control readings give about ``N / ARL0`` signals; the MSPC rule has no memory and signals
at the first reading of every run of readings beyond its limits.

:class:`SPCRules` feeds the rules chunk by chunk from the estimator's output and the plant
signals; :class:`~cmsim.monitor.line_monitor.LineMonitor` logs its signals (``spc_signal``),
takes the line out of the state of control and, with ``chart_action = "divert"``, hands them
to the policy (:mod:`cmsim.monitor.policies`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from cmsim.monitor.charts import CUSUMChart, EWMAChart, ShewhartChart
from cmsim.monitor.estimator import GateEstimate
from cmsim.monitor.events import EventKind, MonitorEvent
from cmsim.monitor.plant import SignalChunk

__all__ = ["ChartRule", "MSPCRule", "Rule", "SPCRules", "Signal", "build_rules"]


@dataclass(frozen=True)
class Signal:
    """One signal of a rule.

    Attributes
    ----------
    time_s : float
        Time of the reading that signalled [s].
    rule : str
        Rule name (``shewhart``, ``ewma``, ``cusum``, ``mspc``).
    data : dict
        Audit data (plain JSON values): the innovation, the statistics and limits.
    """

    time_s: float
    rule: str
    data: dict[str, Any] = field(default_factory=dict)


class Rule(Protocol):
    """A monitoring rule: a chunk of observations in, its signals out."""

    name: str

    def feed(self, t: np.ndarray, x: np.ndarray) -> list[Signal]:
        """Process observations at times ``t`` [s] (``x``: shape (n,) or (n, p)); return the
        signals among them."""
        ...  # pragma: no cover - protocol


class ChartRule:
    """A univariate control chart on standardised innovations, restarted after each signal.

    Parameters
    ----------
    name : str
        Rule name.
    chart : ShewhartChart, EWMAChart or CUSUMChart
        The chart (target 0, sigma 1).
    """

    def __init__(self, name: str, chart: Any) -> None:
        self.name = name
        self.chart = chart

    #: readings run at a time: after a signal only the rest of its block is run again
    block = 512

    def feed(self, t: np.ndarray, x: np.ndarray) -> list[Signal]:
        """Signals among the innovations ``x`` [-] read at ``t`` [s]."""
        out = []
        i = 0
        while i < x.size:
            hits = np.flatnonzero(self.chart.run(x[i:i + self.block]))
            if hits.size == 0:
                i += self.block
                continue
            j = i + int(hits[0])
            out.append(Signal(float(t[j]), self.name, {"innovation": float(x[j])}))
            self.chart.reset()
            i = j + 1
        return out


class MSPCRule:
    """PCA monitoring (Hotelling T^2 and Q) of the innovation and the feeders' flow
    residuals.

    Variables per NIR reading: the standardised innovation and, per feeder, the relative
    deviation of the loss-in-weight controller's flow estimate from its command,
    ``(flow - set point x running) / nominal`` (the latest estimate before the reading).
    Raw NIR readings and raw flows would move with every intended set-point change and carry
    the autocorrelated feeder noise the estimator already explains; the innovation is white
    and the residuals are zero on average whatever the operating point, so a model trained
    on a stretch of this run stays valid after a set-point change. The flow residuals add
    what the innovation alone cannot show: a feeder delivering off its command that the
    blend (and the estimator, which follows the weighings) absorbs.

    Variables that do not vary in the training interval (a noise-free feeder) are left out.
    The model keeps 90 % of the variance but at least one residual direction, so that Q is
    defined.

    Parameters
    ----------
    names : sequence of str
        Variable names (``innovation`` first, then ``flow:<feeder>``).
    training : (float, float)
        Training interval [s] (readings in ``[start, end)``).
    alpha : float
        False-alarm probability of each limit [-].
    """

    name = "mspc"

    def __init__(self, names: list[str], training: tuple[float, float], alpha: float) -> None:
        self.names = list(names)
        self.training = (float(training[0]), float(training[1]))
        self.alpha = float(alpha)
        self.model: Any = None
        self.used: np.ndarray | None = None
        self.limits = (np.inf, np.inf)
        self.record: dict[str, Any] | None = None
        self._train: list[np.ndarray] = []
        self._beyond = False

    def _fit(self) -> None:
        from cmsim.monitor.mspc import PCAMonitor  # noqa: PLC0415

        x = np.concatenate(self._train) if self._train else np.empty((0, len(self.names)))
        used = np.flatnonzero(x.std(axis=0) > 0.0) if len(x) > 2 else np.arange(0)
        self.used = used
        #: what the training found (the ``mspc_trained`` event)
        self.record = {"n_observations": int(len(x)),
                       "variables": [self.names[i] for i in used]}
        if len(x) < 3 or used.size == 0:  # nothing to learn: the rule stays silent
            return
        x = x[:, used]
        model = PCAMonitor().fit(x)
        if model.n_components_ >= used.size > 1:
            model = PCAMonitor(n_components=used.size - 1).fit(x)
        self.model = model
        self.limits = (model.t2_limit(self.alpha), model.q_limit(self.alpha))
        self.record.update(n_components=int(model.n_components_), t2_limit=self.limits[0],
                           q_limit=self.limits[1])

    def feed(self, t: np.ndarray, x: np.ndarray) -> list[Signal]:
        """Signals among the observations ``x`` (shape (n, p)) at ``t`` [s]; the first
        reading at or after the end of the training interval fits the model."""
        out: list[Signal] = []
        ok = np.all(np.isfinite(x), axis=1)
        a, b = self.training
        if self.used is None:
            self._train.append(x[ok & (t >= a) & (t < b)])
            if not (t.size and t[-1] >= b):
                return out
            self._fit()
        if self.model is None:
            return out
        keep = ok & (t >= b)
        tk, xs = t[keep], x[keep][:, self.used]
        if tk.size == 0:
            return out
        t2, q = self.model.t2(xs), self.model.q(xs)
        beyond = (t2 > self.limits[0]) | (q > self.limits[1])
        onset = beyond & ~np.concatenate(([self._beyond], beyond[:-1]))
        self._beyond = bool(beyond[-1])
        for i in np.flatnonzero(onset).tolist():
            out.append(Signal(float(tk[i]), self.name, self._record(xs[i:i + 1], t2[i], q[i])))
        return out

    def _record(self, x: np.ndarray, t2: float, q: float) -> dict[str, Any]:
        """Audit data of a signal: statistics, limits, the variables' contributions to T^2
        and Q and the variable farthest from its training mean (in training sigmas)."""
        assert self.used is not None
        names = [self.names[i] for i in self.used]
        ct2 = self.model.t2_contributions(x)[0]
        cq = self.model.q_contributions(x)[0]
        scaled = (x[0] - self.model.mean_) / self.model.scale_
        return {"t2": float(t2), "q": float(q), "t2_limit": float(self.limits[0]),
                "q_limit": float(self.limits[1]),
                "t2_contributions": dict(zip(names, map(float, ct2), strict=True)),
                "q_contributions": dict(zip(names, map(float, cq), strict=True)),
                # contributions to Q smear over the variables through the residual
                # directions; the standardised deviation names the variable that moved
                "largest_deviation": names[int(np.argmax(np.abs(scaled)))]}


class SPCRules:
    """The monitor's control-chart rules, fed chunk by chunk.

    Parameters
    ----------
    rules : list of Rule
        Univariate charts (fed the innovations) and at most one :class:`MSPCRule`.
    action : {"warn", "divert"}
        What a signal does besides the event and the state of control.
    nominal : sequence of float
        Nominal feeder flows [kg/s] (scale of the flow residuals).
    dt : float
        Tick [s].
    """

    def __init__(self, rules: list[Any], action: str, nominal: Any, dt: float) -> None:
        self.rules = rules
        self.action = action
        self.divert = action == "divert"
        self.nominal = np.asarray(nominal, dtype=np.float64)
        self.dt = float(dt)
        #: the MSPC rule reads the load-cell flow estimates
        self.needs_flows = any(isinstance(r, MSPCRule) for r in rules)
        #: records other than signals (the MSPC training), drained by the monitor
        self.records: list[MonitorEvent] = []
        self._lc_t = np.empty(0)
        self._lc_r = np.empty((self.nominal.size, 0))

    def _flow_residuals(self, ch: SignalChunk, t: np.ndarray) -> np.ndarray:
        """Relative flow residual of every feeder at the times ``t`` [-] (the latest
        load-cell estimate at or before each; NaN before the first)."""
        if ch.lc_flow is not None and ch.lc_t.size:
            rows = np.clip(np.floor(ch.lc_t / self.dt + 1e-9).astype(np.int64) - ch.k0, 0,
                           ch.k1 - ch.k0 - 1)
            cmd = ch.setpoint[:, rows] * ch.running[:, rows]
            r = (ch.lc_flow - cmd) / self.nominal[:, None]
            self._lc_t = np.concatenate((self._lc_t, ch.lc_t))
            self._lc_r = np.concatenate((self._lc_r, r), axis=1)
        idx = np.searchsorted(self._lc_t, t, side="right") - 1
        out = np.full((t.size, self.nominal.size), np.nan)
        if self._lc_t.size:
            out[idx >= 0] = self._lc_r[:, idx[idx >= 0]].T
        if t.size and idx[-1] > 0:  # later readings are later: older estimates are done
            self._lc_t, self._lc_r = self._lc_t[idx[-1]:], self._lc_r[:, idx[-1]:]
        return out

    def step(self, ch: SignalChunk, est: GateEstimate) -> list[Signal]:
        """Signals of the chunk, in time order (other records, e.g. the MSPC training, go to
        :attr:`records`)."""
        out: list[Signal] = []
        for rule in self.rules:
            if isinstance(rule, MSPCRule):
                fitted = rule.used is not None
                x = np.column_stack((est.z, self._flow_residuals(ch, est.z_t)))
                out += rule.feed(est.z_t, x)
                if not fitted and rule.record is not None:
                    self.records.append(MonitorEvent(rule.training[1], EventKind.MSPC_TRAINED,
                                                     rule.record))
            else:
                out += rule.feed(est.z_t, est.z)
        return sorted(out, key=lambda s: s.time_s)


def build_rules(mon: Any, feeders: list[str], nominal: Any, dt: float) -> SPCRules | None:
    """The ``[monitor]`` chart rules (None when none is on).

    Parameters
    ----------
    mon : object
        The scenario's ``[monitor]`` table: ``shewhart``, ``ewma``, ``cusum``, ``mspc`` and
        their settings, ``chart_action``.
    feeders : list of str
        Feeder names.
    nominal : sequence of float
        Nominal feeder flows [kg/s].
    dt : float
        Tick [s].
    """
    rules: list[Any] = []
    if mon.shewhart:
        rules.append(ChartRule("shewhart", ShewhartChart(0.0, 1.0, float(mon.shewhart_L))))
    if mon.ewma:
        rules.append(ChartRule("ewma", EWMAChart(0.0, 1.0, float(mon.ewma_lambda),
                                                 float(mon.ewma_L))))
    if mon.cusum:
        rules.append(ChartRule("cusum", CUSUMChart(0.0, 1.0, float(mon.cusum_k),
                                                   float(mon.cusum_h))))
    if mon.mspc:
        rules.append(MSPCRule(["innovation"] + [f"flow:{f}" for f in feeders],
                              tuple(mon.mspc_training), float(mon.mspc_alpha)))
    if not rules:
        return None
    return SPCRules(rules, str(mon.chart_action), nominal, dt)
