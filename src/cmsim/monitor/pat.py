"""PAT monitor of the line: sensors, monitoring rules, state of control, diversion requests.

:class:`PATMonitor` is a line observer (``line.observers``, ``on_chunk(line, k0, k1)``). After
every chunk it reads what the line produced (recorded internal streams and feeder outflows),
turns it into sensor readings and evaluates the monitoring rules (docs/monitor.md#triggers):

=====================  ==========================================  ====================
rule                   signal                                      window
(docs/monitor.md#diversion-windows)
=====================  ==========================================  ====================
``pat_oos``            NIR reading outside the specification for   PAT: probe-to-gate RTD
                       ``persistence`` consecutive readings
``shewhart``/``ewma``  control chart signal on the NIR readings    none (warning) by
/``cusum``                                                         default; PAT with
                                                                   ``chart_action =
                                                                   "divert"``
``mspc``               Hotelling T^2 or Q of (NIR, load-cell       PAT start, feeder-to-
                       flows) above its limit                      gate end (envelope)
``pat_unavailable``    no valid reading for longer than the grace  PAT
``soft_sensor``        feeder data through the feeder-to-gate RTD  method A
                       predicts content out of limits at the gate
``feeder:<name>``      feeder flow off its current set point by    method B
                       more than ``feeder_deviation`` for
                       ``feeder_persistence`` (or off its nominal
                       flow: ``feeder_reference = "nominal"``)
``start_up``           line started empty: divert until the state  from 0
                       of control is reached
``shut_down``          every feeder stopped (total set point 0 or  feed stop + line
                       total feed ~0): divert until the end, or    t_alpha (method B
                       until the restart's start-up completes      start, no margin)
=====================  ==========================================  ====================

Every trigger becomes a request to the :class:`~cmsim.monitor.diversion.DiversionManager`; an
alarm that stays active keeps extending its window (never shortening it). The plan is written
into ``line.divert_plan``.

SPC charts are warnings, specification violations divert
-------------------------------------------------------
Chart limits (docs/monitor.md#control-charts) are set from ``chart_sigma`` (default: the NIR
noise), i.e. for
independent readings. Real NIR readings behind a blender also carry the RTD-filtered feeder
variability, which is strongly autocorrelated, so the charts' in-control run length is much
shorter than the textbook ARL0 (8 h of the noisy baseline: ~420 chart signals, 83 % of the
tablets diverted as conforming waste when each signal diverted). As a process engineer would
run it, a chart signal is therefore logged (``spc_signal``) and takes the line out of the state
of control docs/monitor.md#state-of-control: "no active SPC alarm"), but does not divert;
diversion follows the
specification rule, the soft sensor, the equipment triggers and MSPC. ``chart_action =
"divert"`` restores chart-driven diversion (set ``chart_sigma`` from in-control data then).

Set points and the feeder trigger
---------------------------------
The feeder trigger compares each feeder's flow with its *current* set point (read from the
feeder at every chunk): an intended set-point move (operator, ratio or NIR controller,
``feeder_step``) is not a feeder fault. Its effect on the API content is judged by the soft
sensor (method A) and the NIR probe.

Current RTD and RTD uncertainty
-------------------------------
The feeder-to-gate RTD is rebuilt from the blender's current model whenever the blender speed
changes (``line.nodes["blender"].unit.model``; models, kernels and quantiles cached per
parameter set), and windows and the soft sensor use the current one. With
``rtd_uncertainty = u > 0`` every RTD is an envelope of the models with all residence times
scaled by ``1 - u``, ``1`` and ``1 + u`` (:func:`~cmsim.monitor.windows.rtd_envelope`): method B
and PAT windows take the smallest low and the largest high quantile over the envelope,
method A the union of the out-of-limit intervals predicted by every model.

Causality and chunk invariance
------------------------------
A NIR reading at ``t_m`` only uses material that passed the probe before ``t_m - latency``
(:class:`~cmsim.monitor.sensors.NIRSensor`); a feeder tick ``k`` is known at ``(k+1) dt``; a
decision at time ``t`` only changes gate ticks from ``ceil((t + gate_delay)/dt)`` on. Readings,
random numbers, alarms and decisions are functions of the sample index only, so processing the
run in any chunks gives the same plan (tested).

Time stamps of recorded streams: row ``j`` of a stream behind ``S`` bin-kernel stages is the
outflow at ``(j + 1/2 + S/2) dt`` (the line module's convention); the probe signal is handed to
the NIR sensor on that grid. The soft sensor uses the mid-point kernel
``w[j] = F((j+1/2) dt) - F((j-1/2) dt)`` (tick average in, tick average out; mean exactly the
RTD mean) and time-stamps predicted gate tick ``k`` at ``(k + 1/2) dt``.

Pure numpy (scipy only through :mod:`cmsim.monitor.mspc` when MSPC is enabled).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from cmsim._validate import non_negative, positive
from cmsim.errors import ParameterError
from cmsim.monitor.charts import CUSUMChart, EWMAChart, ShewhartChart
from cmsim.monitor.diversion import DiversionManager
from cmsim.monitor.sensors import LoadCellBank, LoadCellSignal, NIRSensor, TabletWeightSignal
from cmsim.monitor.soft_sensor import RTDSoftSensor
from cmsim.monitor.state import StartupQualifier
from cmsim.monitor.windows import (
    DiversionWindow,
    cached_quantile,
    cached_series,
    pat_window,
    quantile_window,
    rtd_envelope,
)
from cmsim.rtd.models import RTDModel

__all__ = ["MonitorConfig", "PATMonitor", "RunTracker", "line_models"]


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------


@dataclass
class MonitorConfig:
    """Settings of the PAT monitor and the diversion (SI units; defaults:
    docs/process.md#pat-and-specifications).

    Attributes
    ----------
    pat : bool
        Use the NIR probe (False: no NIR, PAT rules off).
    location : {"blender_outlet", "feed_frame"}
        NIR probe position.
    sample_period, latency, integration_time : float
        NIR timing [s].
    noise_sd, bias, drift_per_s : float
        NIR error model [mass fraction], [mass fraction], [mass fraction / s].
    dropout_probability : float
        Probability of a missing reading [-].
    limits : (float, float)
        Action limits on the API content as fractions of target [-].
    persistence : int
        Consecutive out-of-limit readings that trigger (``k``) [-].
    clear_readings : int
        Consecutive in-limit readings that clear a PAT alarm [-].
    pat_grace : float
        Longest tolerated time without a valid reading [s]; then ``pat_unavailable``.
    chart_sigma : float
        Standard deviation of one reading for the charts [fraction of target]; 0 takes
        ``noise_sd / target``; charts are off when this is 0.
    shewhart, ewma, cusum : bool
        Enable each chart on the NIR readings (as fraction of target).
    chart_action : {"warn", "divert"}
        What a chart signal does: ``"warn"`` logs an ``spc_signal`` and takes the line out of
        the state of control; ``"divert"`` also opens a PAT diversion window.
    shewhart_L, ewma_lambda, ewma_L, cusum_k, cusum_h : float
        Chart parameters (sigma units).
    mspc : bool
        PCA monitoring (T^2 and Q) of (NIR, load-cell flows).
    mspc_training : (float, float)
        Training interval of the PCA model [s] (in-control operation of this run).
    mspc_alpha : float
        False-alarm probability of the T^2/Q limits [-].
    soft_sensor : bool
        RTD soft sensor (method A).
    feeder_trigger : bool
        Feeder deviation / stop trigger (method B). Applies to the API feeder and to every
        feeder whose share of the nominal flow is at least the half-width of the limits (a
        smaller feeder cannot move the API content out of limits even when it stops).
    feeder_deviation : float
        Relative deviation of a feeder's flow from its reference flow that counts [-].
    feeder_reference : {"set_point", "nominal"}
        Reference of the feeder trigger: the feeder's current set point (default) or the
        scenario's nominal flow.
    feeder_persistence : float
        Time the deviation must last to trigger [s].
    alpha : float
        RTD quantile level of method B and PAT windows [-].
    margin : float
        Margin at both ends of every window [s].
    rtd_uncertainty : float
        Relative +- uncertainty of all residence times [-], in [0, 1) (envelope of credible
        models; 0: nominal RTD only).
    start_up : bool
        Divert from the start until the state of control is reached (line started empty).
    start_up_quantile : float
        Line RTD quantile that must have passed since feeding began [-] (0.999: F >= 0.999).
    load_cell_period, load_cell_noise, load_cell_window : float
        Load-cell sampling [s], weighing noise [kg], flow-estimate window [s]; period 0: off.
    tablet_weight_period, tablet_weight_rsd : float
        Tablet-weight sampling [s] (0: off) and tablet-to-tablet RSD [-].
    """

    pat: bool = True
    location: str = "blender_outlet"
    sample_period: float = 2.0
    latency: float = 2.0
    integration_time: float = 1.0
    noise_sd: float = 0.0
    bias: float = 0.0
    drift_per_s: float = 0.0
    dropout_probability: float = 0.0
    limits: tuple[float, float] = (0.95, 1.05)
    persistence: int = 3
    clear_readings: int = 3
    pat_grace: float = 10.0
    chart_sigma: float = 0.0
    shewhart: bool = False
    shewhart_L: float = 3.0  # noqa: N815
    ewma: bool = False
    ewma_lambda: float = 0.2
    ewma_L: float = 2.86  # noqa: N815
    cusum: bool = False
    cusum_k: float = 0.5
    cusum_h: float = 5.0
    chart_action: str = "warn"
    mspc: bool = False
    mspc_training: tuple[float, float] = (0.0, 0.0)
    mspc_alpha: float = 0.001
    soft_sensor: bool = True
    feeder_trigger: bool = True
    feeder_deviation: float = 0.2
    feeder_persistence: float = 1.0
    feeder_reference: str = "set_point"
    alpha: float = 0.005
    margin: float = 2.0
    rtd_uncertainty: float = 0.0
    start_up: bool = False
    start_up_quantile: float = 0.999
    load_cell_period: float = 1.0
    load_cell_noise: float = 0.0
    load_cell_window: float = 10.0
    tablet_weight_period: float = 10.0
    tablet_weight_rsd: float = 0.0

    def __post_init__(self) -> None:
        if self.location not in ("blender_outlet", "feed_frame"):
            raise ParameterError("location", self.location,
                                 "must be 'blender_outlet' or 'feed_frame'")
        if self.chart_action not in ("warn", "divert"):
            raise ParameterError("chart_action", self.chart_action,
                                 "must be 'warn' or 'divert'")
        if self.feeder_reference not in ("set_point", "nominal"):
            raise ParameterError("feeder_reference", self.feeder_reference,
                                 "must be 'set_point' or 'nominal'")
        if not 0.0 <= self.rtd_uncertainty < 1.0:
            raise ParameterError("rtd_uncertainty", self.rtd_uncertainty, "must be in [0, 1)")
        positive("sample_period", self.sample_period)
        for name in ("latency", "integration_time", "noise_sd", "pat_grace", "chart_sigma",
                     "feeder_deviation", "feeder_persistence", "margin", "load_cell_period",
                     "load_cell_noise", "tablet_weight_period", "tablet_weight_rsd"):
            non_negative(name, getattr(self, name))
        for name in ("persistence", "clear_readings"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ParameterError(name, v, "must be an integer >= 1")
        lo, hi = (float(x) for x in self.limits)
        if not lo < 1.0 < hi:
            raise ParameterError("limits", self.limits, "must be (lo, hi) with lo < 1 < hi")
        if not 0.0 < self.alpha < 0.5:
            raise ParameterError("alpha", self.alpha, "must be in (0, 0.5)")
        if not 0.5 < self.start_up_quantile < 1.0:
            raise ParameterError("start_up_quantile", self.start_up_quantile,
                                 "must be in (0.5, 1)")
        if self.mspc:
            a, b = (float(x) for x in self.mspc_training)
            if not b > a >= 0.0:
                raise ParameterError("mspc_training", self.mspc_training,
                                     "must be (start, end) [s] with 0 <= start < end")
            if not self.pat:
                raise ParameterError("mspc", True, "needs the NIR probe (pat = True)")


# ---------------------------------------------------------------------------------------------
# alarm state machine over a stream of good/bad samples (vectorised over runs)
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _next_bad(bad, words, i):  # pragma: no cover - compiled
    """Index of the first ``bad`` sample at or after ``i`` (``bad.size`` if none); ``words``:
    the first ``8 * words.size`` flags read as 64-bit words (runs of good samples are skipped
    eight at a time)."""
    n = bad.size
    while i < n and i & 7:
        if bad[i]:
            return i
        i += 1
    w = i >> 3
    while w < words.size and words[w] == 0:
        w += 1
    i = max(i, w << 3)
    while i < n:
        if bad[i]:
            return i
        i += 1
    return n


@njit(cache=True)
def _track_kernel(bad, words, times, k_on, k_off, state, kinds, index, tref, k0, dt, i0
                  ):  # pragma: no cover
    """Per-sample alarm state machine from sample ``i0`` on; state = [open, bad_run, good_run,
    first_bad, last_bad]. Sample times: ``times`` or, when it is empty, the grid
    ``(k0 + i) dt``. Stops after the event that fills ``kinds``; returns (events, next i).
    ``words``: ``bad`` as 64-bit words (see :func:`_next_bad`): while the alarm is closed, a
    good sample only resets the bad run, so runs of them are skipped in one step."""
    grid = times.size == 0
    cap = kinds.size
    is_open = state[0] != 0.0
    nb = int(state[1])
    ng = int(state[2])
    first = state[3]
    last = state[4]
    n_out = 0
    i = i0
    while i < bad.size and n_out < cap:
        if not is_open and not bad[i]:
            nb = 0
            i = _next_bad(bad, words, i + 1)
            continue
        if bad[i]:
            ti = (k0 + i) * dt if grid else times[i]
            if nb == 0:
                first = ti
            last = ti
            nb += 1
            ng = 0
            if not is_open and nb >= k_on:
                is_open = True
                kinds[n_out] = 1
                index[n_out] = i
                tref[n_out] = first
                n_out += 1
        else:
            nb = 0
            if is_open:
                ng += 1
                if ng >= k_off:
                    is_open = False
                    ng = 0
                    kinds[n_out] = 0
                    index[n_out] = i
                    tref[n_out] = last
                    n_out += 1
        i += 1
    state[0] = 1.0 if is_open else 0.0
    state[1] = min(nb, 1 << 30)
    state[2] = ng
    state[3] = first
    state[4] = last
    return n_out, i


#: Ticks per block of the probe-fraction pass (its row sums stay in the L1 cache).
_PROBE_BLOCK = 1024


@njit(cache=True)
def _probe_fraction(rec, k0, k1, api_rows, last, out):  # pragma: no cover - compiled
    """``out[k] = sum(rec[api_rows, k]) / sum(rec[:, k])`` for ticks ``k0..k1-1`` (rows summed
    in order); ticks with a total <= 1e-12 repeat the previous value (``last`` before the
    first). Returns the last value.

    In blocks of ticks, the row sums are accumulated row by row (vectorised; per tick the
    same additions in the same order as a loop over the rows), then divided.
    """
    n_rows = rec.shape[0]
    tot = np.empty(_PROBE_BLOCK)
    for b0 in range(k0, k1, _PROBE_BLOCK):
        b1 = min(b0 + _PROBE_BLOCK, k1)
        m = b1 - b0
        o = out[b0 - k0:b1 - k0]
        for j in range(m):
            tot[j] = 0.0
            o[j] = 0.0
        for r in range(n_rows):
            row = rec[r, b0:b1]
            for j in range(m):
                tot[j] += row[j]
        for r in api_rows:
            row = rec[r, b0:b1]
            for j in range(m):
                o[j] += row[j]
        for j in range(m):
            if tot[j] > 1e-12:
                last = o[j] / tot[j]
            o[j] = last
    return last


@njit(cache=True)
def _deviates(f, ref, dev, out):  # pragma: no cover - compiled
    """``|f / ref - 1| > dev`` (``ref > 0``) or ``f > 0`` (``ref <= 0``), elementwise."""
    for k in range(f.size):
        out[k] = abs(f[k] / ref - 1.0) > dev if ref > 0 else f[k] > 0


@njit(cache=True)
def _all_stopped(flows, eps, out):  # pragma: no cover - compiled
    """``out[k]``: the sum of the rows of ``flows`` (a tuple of 1-D rows) at tick ``k`` is at
    most ``eps``."""
    n_rows = len(flows)
    for k in range(out.size):
        tot = 0.0
        for r in range(n_rows):
            tot += flows[r][k]
        out[k] = tot <= eps


@njit(cache=True)
def _split_feed(flows, is_api, feed):  # pragma: no cover - compiled
    """``feed[0]``: sum of the API feeders' rows; ``feed[1]``: all rows minus ``feed[0]``
    (``flows``: a tuple of 1-D rows)."""
    n_rows = len(flows)
    for k in range(feed.shape[1]):
        api = 0.0
        tot = 0.0
        for r in range(n_rows):
            x = flows[r][k]
            tot += x
            if is_api[r]:
                api += x
        feed[0, k] = api
        feed[1, k] = tot - api


@njit(cache=True)
def _outside(x, lo, hi, bad):  # pragma: no cover - compiled
    """``bad = (x < lo) | (x > hi)`` elementwise (NaN never), in one pass."""
    for k in range(x.size):
        bad[k] = x[k] < lo or x[k] > hi


@njit(cache=True)
def _envelope_flags(env, lo, hi, content, bad):  # pragma: no cover - compiled
    """Per column: ``bad`` if any row lies outside ``[lo, hi]`` (NaN never), ``content`` the
    row farthest from 1 (NaN counts as 1; the first of equals)."""
    rows, n = env.shape
    for k in range(n):
        b = False
        best = -1.0
        arg = 0
        for r in range(rows):
            x = env[r, k]
            if x < lo or x > hi:
                b = True
            d = abs(x - 1.0) if x == x else 0.0
            if d > best:
                best = d
                arg = r
        bad[k] = b
        content[k] = env[arg, k]


class RunTracker:
    """Open/close an alarm on ``k_on`` consecutive bad samples, clear on ``k_off`` good ones.

    Parameters
    ----------
    k_on, k_off : int
        Persistence to open and to clear [samples], >= 1.

    Notes
    -----
    :meth:`update` takes chunks of a sample stream; the result depends only on the stream, not
    on the chunking. The state machine runs in a compiled loop over the samples (a few ns per
    sample); only the openings and clearings come back to Python.
    """

    def __init__(self, k_on: int = 1, k_off: int = 1) -> None:
        self.k_on, self.k_off = int(k_on), int(k_off)
        if self.k_on < 1 or self.k_off < 1:
            raise ParameterError("k_on/k_off", (k_on, k_off), "must be >= 1")
        self._state = np.zeros(5)

    @property
    def open(self) -> bool:
        """Whether the alarm is open."""
        return bool(self._state[0])

    def update_arrays(self, times: np.ndarray, bad: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Process a chunk; return ``(is_open_event, index, t_ref)`` arrays (see :meth:`update`)."""
        return self._run(np.ascontiguousarray(times, dtype=np.float64), bad, 0, 0.0)

    def _run(self, t: np.ndarray, bad: np.ndarray, k0: int, dt: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = np.ascontiguousarray(bad, dtype=np.bool_)
        words = b[:b.size - b.size % 8].view(np.uint64)  # flags eight at a time
        # events are few: small buffers, refilled until the chunk is done
        cap = 64
        parts = []
        i = 0
        while True:
            kinds = np.empty(cap, np.int8)
            index = np.empty(cap, np.int64)
            tref = np.empty(cap, np.float64)
            m, i = _track_kernel(b, words, t, self.k_on, self.k_off, self._state, kinds,
                                 index, tref, k0, dt, i)
            parts.append((kinds[:m], index[:m], tref[:m]))
            if i >= b.size:
                break
        if len(parts) == 1:
            kinds, index, tref = parts[0]
        else:
            kinds, index, tref = (np.concatenate(x) for x in zip(*parts, strict=True))
        return kinds.astype(bool), index, tref

    def update_grid(self, k0: int, dt: float, bad: np.ndarray
                    ) -> list[tuple[str, int, float]]:
        """:meth:`update` for samples at the grid times ``(k0 + i) dt`` [s] (no time array)."""
        kinds, index, tref = self._run(np.empty(0), bad, int(k0), float(dt))
        return [("open" if k else "close", i, t) for k, i, t in
                zip(kinds.tolist(), index.tolist(), tref.tolist(), strict=True)]

    def update(self, times: np.ndarray, bad: np.ndarray) -> list[tuple[str, int, float]]:
        """Process a chunk; return ``(kind, index, t_first)`` for each opening and clearing.

        ``kind`` is ``"open"`` (index of the sample that opens; ``t_first`` the time of the
        first bad sample of that run) or ``"close"`` (index of the sample that clears;
        ``t_first`` the time of the last bad sample before it).
        """
        kinds, index, tref = self.update_arrays(times, bad)
        return [("open" if k else "close", i, t) for k, i, t in
                zip(kinds.tolist(), index.tolist(), tref.tolist(), strict=True)]


# ---------------------------------------------------------------------------------------------
# the monitor
# ---------------------------------------------------------------------------------------------


@dataclass
class _Rule:
    name: str
    tracker: RunTracker
    kind: str  # "pat", "mspc", "feeder", "soft"
    instance: int = 0
    t_first: float = 0.0
    t_decision: float = 0.0
    key: str = ""
    info: dict[str, Any] = field(default_factory=dict)


class PATMonitor:
    """Line observer: PAT sensors, monitoring rules, state of control and diversion.

    Parameters
    ----------
    config : MonitorConfig
        Settings.
    line : cmsim.line.Line
        The line (at tick 0); the monitor records the streams it needs and registers nothing
        itself (append it to ``line.observers``); the probe reads the line's per-chunk stream
        (:meth:`cmsim.line.Line.watch`), not a record of the run.
    feeders : sequence of (str, str, float)
        ``(name, material, nominal mass flow [kg/s])`` per feeder (node ``feeder.<name>``).
    api_material : str
        Name of the API.
    target_api_fraction : float
        Target API mass fraction [-].
    feeder_to_gate, probe_to_gate : RTDModel
        RTDs used for the windows (feeder to diverter; probe to diverter).
    gate_delay : float
        Gate actuation delay [s].
    tablet_mass : float
        Nominal tablet mass [kg].
    rng : mapping of str to numpy.random.Generator
        Named streams ``pat.nir``, ``pat.load_cell.<name>``, ``pat.tablet_weight``.
    upstream_stages : int
        Number of bin-kernel stages in front of the probe (time stamps of the probe signal).
    steady_start : bool
        The line starts at steady state (soft-sensor history primed with nominal flows).
    drive_gate : bool
        Write the diversion plan into ``line.divert_plan`` (False: monitor only).

    Attributes
    ----------
    manager : DiversionManager
        The diversion plan and its requests.
    readings : dict
        ``t``, ``nir`` (API mass fraction, NaN = missing) and ``nir_true`` (noise-free window
        average) as growing lists of arrays; see :meth:`signals`.
    events : list of dict
        Monitor events ``{time_s, type, source, data}`` (alarms, diversions, state changes).
    """

    name = "monitor"

    def __init__(self, config: MonitorConfig, line: Any, feeders: Sequence[tuple[str, str, float]],
                 api_material: str, target_api_fraction: float, feeder_to_gate: RTDModel,
                 probe_to_gate: RTDModel, gate_delay: float, tablet_mass: float,
                 rng: Mapping[str, np.random.Generator], *, upstream_stages: int = 1,
                 steady_start: bool = True, drive_gate: bool = True) -> None:
        self.config = c = config
        self.drive_gate = bool(drive_gate)
        self.dt = float(line.dt)
        self.n_ticks = int(line.n_ticks)
        self.cmap = line.channel_map
        self.api_material = str(api_material)
        self.api_rows = np.asarray(self.cmap.material_rows(api_material))
        self.target = positive("target_api_fraction", target_api_fraction)
        self.feeder_to_gate = feeder_to_gate
        self.probe_to_gate = probe_to_gate
        self.tablet_mass = positive("tablet_mass", tablet_mass)
        self.manager = DiversionManager(self.n_ticks, self.dt, gate_delay)
        self.events: list[dict[str, Any]] = []
        self.feeders = [(str(n), str(m), float(f)) for n, m, f in feeders]
        # feeder flows from the feeders' own records (the line records them anyway; a record of
        # the mixed stream would cost a copy per chunk): the rows of the feeder's material when
        # every feeder has its own (the same values as those rows of the mixed stream), else
        # the sum of all rows
        mats = [m for _, m, _ in self.feeders]
        unique = len(set(mats)) == len(mats)
        self._feed = {n: (line.record(f"feeder.{n}.out"),
                          np.asarray(self.cmap.material_rows(m)) if unique else slice(None))
                      for n, m, _ in self.feeders}
        self._api_feeders = np.array([m == self.api_material for _, m, _ in self.feeders])
        lo, hi = c.limits
        self.limits = (float(lo), float(hi))
        self.margins = (float(c.margin), float(c.margin))
        # the blender (current RTD after speed changes) and what lies between it and the gate
        nodes = getattr(line, "nodes", None) or {}
        self._blender = getattr(nodes.get("blender"), "unit", None)
        press = getattr(nodes.get("press"), "unit", None)
        bm = getattr(self._blender, "model", None)
        self._blender_key = None if bm is None else _key(bm)
        self._downstream = None
        if bm is not None and press is not None:
            self._downstream = (press.transfer.model, press.feed_frame.model)
        self._set_models(feeder_to_gate, probe_to_gate)
        self.rules: list[_Rule] = []
        # --- NIR probe
        self._probe = None
        if c.pat:
            port = "blender.out" if c.location == "blender_outlet" else "press.out"
            line.watch(port)  # per-chunk view of the stream, no per-tick record of the run
            self._probe = port
            self._probe_offset = (0.5 + 0.5 * upstream_stages) * self.dt
            lag = c.latency + c.integration_time
            first = self._probe_offset + lag
            start = math.ceil(first / c.sample_period - 1e-9) * c.sample_period
            self.nir = NIRSensor(c.sample_period, c.noise_sd, c.latency, c.integration_time,
                                 c.bias, c.drift_per_s, c.dropout_probability,
                                 rng=rng["pat.nir"], start=start)
            self._last_w = self.target
            self.rules.append(_Rule("pat_oos", RunTracker(c.persistence, c.clear_readings),
                                    "pat"))
            grace_n = max(1, int(math.floor(c.pat_grace / c.sample_period)) + 1)
            self.rules.append(_Rule("pat_unavailable", RunTracker(grace_n, c.clear_readings),
                                    "pat"))
            sigma = c.chart_sigma or c.noise_sd / self.target
            self.charts: dict[str, Any] = {}
            if sigma > 0:
                if c.shewhart:
                    self.charts["shewhart"] = ShewhartChart(1.0, sigma, c.shewhart_L)
                if c.ewma:
                    self.charts["ewma"] = EWMAChart(1.0, sigma, c.ewma_lambda, c.ewma_L)
                if c.cusum:
                    self.charts["cusum"] = CUSUMChart(1.0, sigma, c.cusum_k, c.cusum_h)
            kind = "pat" if c.chart_action == "divert" else "spc"
            for name in self.charts:
                self.rules.append(_Rule(name, RunTracker(1, c.clear_readings), kind))
        # --- load cells, tablet weight
        #: names of the feeders with a load cell (all of them when load cells are on)
        self.load_cell_names: list[str] = []
        self.load_cells: dict[str, LoadCellSignal] = {}  # one per feeder (general clock)
        self._lc_bank: LoadCellBank | None = None  # all feeders at once (clock on the ticks)
        if c.load_cell_period > 0:
            self.load_cell_names = [n for n, _, _ in self.feeders]
            window = max(c.load_cell_window, 2 * c.load_cell_period)
            ratio = c.load_cell_period / self.dt
            if abs(ratio - round(ratio)) <= 1e-9 and round(ratio) >= 1:
                self._lc_bank = LoadCellBank(
                    c.load_cell_period, c.load_cell_noise, window, self.dt,
                    [rng[f"pat.load_cell.{n}"] for n in self.load_cell_names])
            else:
                for n in self.load_cell_names:
                    self.load_cells[n] = LoadCellSignal(c.load_cell_period, c.load_cell_noise,
                                                        window, rng=rng[f"pat.load_cell.{n}"])
        self._net = {n: 0.0 for n, _, _ in self.feeders}
        self._lc_recent: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.tablet_weight = None
        if c.tablet_weight_period > 0:
            self.tablet_weight = TabletWeightSignal(c.tablet_weight_period, c.tablet_weight_rsd,
                                                    rng=rng["pat.tablet_weight"])
        # --- MSPC
        self._mspc = None
        self._mspc_train: list[np.ndarray] = []
        #: MSPC variables: the NIR content and each feeder's load-cell flow
        self.mspc_variables = ["nir"] + [f"load_cell.{n}" for n in self.load_cell_names]
        if c.mspc:
            self.rules.append(_Rule("mspc", RunTracker(1, c.clear_readings), "mspc"))
        # --- soft sensor
        self._soft: RTDSoftSensor | None = None
        if c.soft_sensor:
            api_nom = sum(f for _, m, f in self.feeders if m == api_material)
            tot_nom = sum(f for _, _, f in self.feeders)
            self._soft = RTDSoftSensor(
                self._feed_env, self.dt, target_fraction=self.target, tail=1e-12,
                initial_flows=[api_nom, tot_nom - api_nom] if steady_start else None,
                timing="tick_average", empty_flow=1e-3 * tot_nom)
            self._tot_nominal = tot_nom
            self._soft_prev: tuple[float, float] | None = None
            self.rules.append(_Rule("soft_sensor", RunTracker(1, 1), "soft"))
        # --- feeder triggers
        if c.feeder_trigger:
            k_on = max(1, int(math.ceil(c.feeder_persistence / self.dt - 1e-9)))
            tot = sum(f for _, _, f in self.feeders)
            half_width = min(1.0 - self.limits[0], self.limits[1] - 1.0)
            for n, m, f in self.feeders:
                # a feeder whose complete stop cannot move the API content by the half-width
                # of the limits (e.g. a 0.5 % lubricant) is not a content risk: not monitored
                if f > 0 and (m == self.api_material or f / tot >= half_width):
                    unit = getattr(nodes.get(f"feeder.{n}"), "unit", None)
                    self.rules.append(_Rule(f"feeder:{n}", RunTracker(k_on, 1), "feeder",
                                            info={"feeder": n, "nominal": f, "unit": unit}))
        # --- start-up, shut-down and state of control
        #: phase of operation: ``"start_up"``, ``"run"`` or ``"shut_down"``
        #: (docs/monitor.md#start-up-and-shut-down)
        self.phase = "start_up" if c.start_up else "run"
        self._startup_time = max(cached_quantile(m, c.start_up_quantile) for m in self._feed_env)
        # start-up qualifiers by start-up generation (0: the start of the run; one per restart)
        self._gen = 0
        self._qualifiers = {0: StartupQualifier(self._startup_time,
                                                c.clear_readings if c.pat else 0)}
        self._phase_start = 0.0  # start of the current phase's diversion window [s]
        self._phase_decision = 0.0  # decision time of that window [s]
        # feed stops: all feeders stopped (total set point 0 or total feed ~0), tracked per
        # tick; a stop enters the shut-down state at stop + t_alpha, a restart a new start-up
        tot_all = sum(f for _, _, f in self.feeders)
        self._feeder_units = [getattr(nodes.get(f"feeder.{n}"), "unit", None)
                              for n, _, _ in self.feeders]
        self._stop_eps = 1e-9 * tot_all
        self._stop_tracker = RunTracker(1, 1) if tot_all > 0 else None
        self._stops: dict[int, dict[str, float]] = {}
        self._stopped = False  # as of the marks applied so far
        self._stop_id = 0
        self.state_changes: list[tuple[float, bool]] = []
        self._in_control = self.phase == "run"
        # alarm openings (+1) and clearings (-1) at their decision times, not yet applied to
        # the state of control; the open alarms by rule
        self._marks: list[tuple[float, int, str]] = []
        self._open_rules: dict[str, int] = {}
        self._sig: dict[str, list[np.ndarray]] = {"t": [], "nir": [], "nir_true": [],
                                                   "soft_t": [], "soft": []}
        #: NIR readings as growing lists of per-chunk arrays (the same lists as the signals)
        self.readings: dict[str, list[np.ndarray]] = {k: self._sig[k]
                                                      for k in ("t", "nir", "nir_true")}

    @property
    def in_startup(self) -> bool:
        """Whether the line is in a start-up (from empty or after a restart) [-]."""
        return self.phase == "start_up"

    @property
    def _qualifier(self) -> StartupQualifier:
        return self._qualifiers[self._gen]

    # ------------------------------------------------------------------ helpers
    def _log(self, t: float, type_: str, data: dict[str, Any]) -> None:
        self.events.append({"time_s": float(t), "type": type_, "source": self.name,
                            "data": data})

    def _request(self, rule: _Rule, window: DiversionWindow, decision_s: float,
                 data: dict[str, Any] | None = None) -> None:
        # An open alarm extends its window continuously from the moment it opened, so every
        # extension is clipped at the opening decision (no gap between opening and clearing).
        del decision_s
        self.manager.request(window, rule.t_decision, key=rule.key,
                             extra={"opened_s": rule.t_decision, **(data or {})})

    def _close(self, rule: _Rule, decision_s: float) -> None:
        self._marks.append((float(decision_s), -1, rule.name))
        self._log(decision_s, "alarm_cleared", {"rule": rule.name, "key": rule.key})

    def _open(self, rule: _Rule, t_first: float, decision_s: float, raw: dict[str, Any]) -> None:
        rule.instance += 1
        rule.key = f"{rule.name}#{rule.instance}"
        rule.t_first = t_first
        rule.t_decision = decision_s
        self._marks.append((float(decision_s), 1, rule.name))
        self._log(decision_s, "alarm", {"rule": rule.name, "key": rule.key,
                                        "first_time_s": t_first, **raw})

    # ------------------------------------------------------------------ RTD models
    def _set_models(self, feeder_to_gate: RTDModel, probe_to_gate: RTDModel) -> None:
        """Use these RTDs (envelopes, quantiles and audit parameters cached per parameter set)."""
        c = self.config
        self.feeder_to_gate = feeder_to_gate
        self.probe_to_gate = probe_to_gate
        self._feed_env, self._q_feed = _envelope(feeder_to_gate, c.rtd_uncertainty, c.alpha)
        self._probe_env, self._q_probe = _envelope(probe_to_gate, c.rtd_uncertainty, c.alpha)
        self._probe_params = tuple(dict(m.params) for m in self._probe_env)
        self._feed_params = tuple(dict(m.params) for m in self._feed_env)

    def _refresh_models(self, t: float) -> None:
        """Rebuild the RTDs after a blender speed change (the blender's current model); the
        change took effect at ``t`` [s], the start of the chunk."""
        if self._blender is None or self._downstream is None:
            return
        model = self._blender.model
        key = _key(model)
        if key == self._blender_key:  # same parameters: nothing changed
            return
        self._blender_key = key
        feed = cached_series(model, *self._downstream)
        # the probe-to-gate RTD lies downstream of the blender at either probe location
        self._set_models(feed, self.probe_to_gate)
        if self._soft is not None:
            self._soft.set_models(self._feed_env)
        self._log(t, "rtd_model_changed", {"feeder_to_gate": dict(feed.params),
                                           "mean_residence_time_s": float(feed.mean)})

    # ------------------------------------------------------------------ windows per rule kind
    def _pat_window(self, rule: _Rule, t_clear: float) -> DiversionWindow:
        """:func:`~cmsim.monitor.windows.pat_window` over the probe-to-gate envelope."""
        c = self.config
        return pat_window(rule.t_first, max(t_clear, rule.t_first), c.sample_period,
                          self._probe_env, c.alpha, latency=c.latency + c.integration_time,
                          margin_start=self.margins[0], margin_end=self.margins[1],
                          trigger=rule.name, decision_s=rule.t_decision)

    def _mspc_window(self, rule: _Rule, t_clear: float) -> DiversionWindow:
        """PAT window, extended to the feeder-to-gate high quantile (a process-variable
        alarm may stem from the feeders)."""
        c = self.config
        w = self._pat_window(rule, t_clear)
        end = t_clear + self._q_feed[1] + self.margins[1]
        return DiversionWindow(w.start_s, max(w.end_s, end), rule.name, "PAT+B", w.margins,
                               c.alpha, self._probe_params + self._feed_params,
                               details=dict(w.details))

    def _feeder_window(self, rule: _Rule, t_end: float) -> DiversionWindow:
        """Method B: :func:`~cmsim.monitor.windows.quantile_window` over the envelope."""
        return quantile_window(rule.t_first, max(t_end, rule.t_first), self._feed_env,
                               self.config.alpha, self.margins[0], self.margins[1],
                               trigger=rule.name)

    # ------------------------------------------------------------------ observer
    def on_chunk(self, line: Any, k0: int, k1: int) -> None:
        """Process the chunk ``[k0, k1)`` the line just computed (see module docstring)."""
        if k1 <= k0:
            return
        self._refresh_models(k0 * self.dt)
        # feeder flows: views of the records' rows where a feeder's flow is one row (no
        # copies), else sums; also as a tuple of rows for the compiled passes
        flows = []
        for rec, rows in self._feed.values():
            if not isinstance(rows, slice) and rows.size == 1:
                flows.append(rec[rows[0], k0:k1])
            else:
                flows.append(rec[rows, k0:k1].sum(axis=0))
        self._flow_rows = tuple(flows)
        self._flows = dict(zip(self._feed, flows, strict=True))
        ts_nir = y = None
        if self._probe is not None:
            ts_nir, y = self._nir_chunk(line.chunk_stream(self._probe), k0, k1)
        for rule in self.rules:
            if rule.kind == "feeder":
                self._feeder_rule(rule, k0, k1)
        if self.config.soft_sensor:
            self._soft_chunk(k0, k1)
        self._load_cells(k0, k1)
        if ts_nir is not None:
            self._pat_rules(ts_nir, y)
        self._feed_stops(k0, k1)
        self._state(k0, k1, ts_nir, y)
        changed = self.manager.pop_changed()
        if changed is not None and self.drive_gate:
            a, b = changed
            line.divert_plan[a:b] |= self.manager.plan[a:b]

    # -- NIR
    def _nir_chunk(self, probe: np.ndarray, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
        w = np.empty(k1 - k0)
        # API fraction at the probe; no flow: it keeps seeing the last material (forward fill)
        self._last_w = _probe_fraction(probe, 0, k1 - k0, self.api_rows, self._last_w, w)
        t = np.arange(k0, k1, dtype=np.float64)
        t *= self.dt
        t += self._probe_offset
        ts, yv, true = self.nir.measure(t, w, return_noise_free=True)
        self._sig["t"].append(ts)
        self._sig["nir"].append(yv)
        self._sig["nir_true"].append(true)
        return ts, yv

    def _pat_rules(self, ts: np.ndarray, y: np.ndarray) -> None:
        if ts.size == 0:
            return
        content = y / self.target
        valid = np.isfinite(content)
        all_valid = bool(valid.all())
        t_valid = ts if all_valid else ts[valid]  # no copies without missing readings
        lo, hi = self.limits
        for rule in self.rules:
            if rule.kind == "spc":
                alarm = self.charts[rule.name].run(content)
                self._spc(rule, t_valid, alarm if all_valid else alarm[valid])
                continue
            if rule.kind not in ("pat", "mspc"):
                continue
            if rule.name == "pat_unavailable":
                t_r, bad = ts, ~valid
            elif rule.name == "pat_oos":
                t_r = t_valid
                cv = content if all_valid else content[valid]
                bad = (cv < lo) | (cv > hi)
            elif rule.name == "mspc":
                t_r, bad = self._mspc_chunk(ts, content)
            else:
                chart = self.charts[rule.name]
                alarm = chart.run(content)
                t_r, bad = t_valid, (alarm if all_valid else alarm[valid])
            self._drive(rule, t_r, bad, lambda r, t: (self._mspc_window(r, t)
                                                      if r.kind == "mspc"
                                                      else self._pat_window(r, t)),
                        last_time=float(ts[-1]))

    def _spc(self, rule: _Rule, t: np.ndarray, bad: np.ndarray) -> None:
        """Chart signals as warnings: the chart's alarm flags go into the signals
        (``spc.<rule>`` on the ``spc_t`` readings), each new signal is logged
        (``spc_signal``); nothing is requested."""
        opened, idx, tref = rule.tracker.update_arrays(t, bad)
        self._sig.setdefault(f"spc.{rule.name}", []).append(bad)
        if rule.name == next(iter(self.charts)):
            self._sig.setdefault("spc_t", []).append(t)
        name = rule.name
        self._marks += [(float(t[i]), 1 if o else -1, name)
                        for o, i in zip(opened.tolist(), idx.tolist(), strict=True)]
        for i, tr in zip(idx[opened].tolist(), tref[opened].tolist(), strict=True):
            rule.instance += 1
            self.events.append({"time_s": float(t[i]), "type": "spc_signal",
                                "source": self.name,
                                "data": {"rule": name, "key": f"{name}#{rule.instance}",
                                         "first_time_s": tr}})

    def _drive(self, rule: _Rule, t: np.ndarray, bad: np.ndarray, make, *,
               last_time: float) -> None:
        """Run the tracker over readings; request/extend windows (decided at reading times)."""
        for kind, i, tref in rule.tracker.update(t, bad):
            tdec = float(t[i])
            if kind == "open":
                raw: dict[str, Any] = {"limits": list(self.limits)}
                if rule.kind == "mspc":
                    raw.update(self._mspc_record(i))
                self._open(rule, tref, tdec, raw)
                self._request(rule, make(rule, tdec), tdec)
            else:
                self._request(rule, make(rule, tdec), tdec)
                self._close(rule, tdec)
        if rule.tracker.open:
            self._request(rule, make(rule, last_time), last_time)

    # -- feeders (method B)
    def _feeder_rule(self, rule: _Rule, k0: int, k1: int) -> None:
        n = rule.info["feeder"]
        f = self._flows[n]
        ref = rule.info["nominal"]
        unit = rule.info["unit"]
        if self.config.feeder_reference == "set_point" and unit is not None:
            ref = float(unit.mass_flow)  # set point in force during this chunk
        bad = np.empty(f.size, dtype=np.bool_)
        _deviates(f, float(ref), self.config.feeder_deviation, bad)
        # samples at the tick starts k dt; each is known at its end (decision_lag = dt)
        for kind, i, tref in rule.tracker.update_grid(k0, self.dt, bad):
            tdec = (k0 + i) * self.dt + self.dt
            if kind == "open":
                self._open(rule, tref, tdec, {"feeder": n, "flow_kg_s": float(f[i]),
                                              "nominal_kg_s": rule.info["nominal"],
                                              "reference_kg_s": ref,
                                              "deviation_limit": self.config.feeder_deviation})
                self._request(rule, self._feeder_window(rule, tdec), tdec)
            else:  # first good tick i: the disturbance ended at its start
                self._request(rule, self._feeder_window(rule, float((k0 + i) * self.dt)), tdec)
                self._close(rule, tdec)
        if rule.tracker.open:
            tnow = k1 * self.dt
            self._request(rule, self._feeder_window(rule, tnow), tnow)

    # -- soft sensor (method A)
    def _soft_chunk(self, k0: int, k1: int) -> None:
        feed = np.empty((2, k1 - k0))
        _split_feed(self._flow_rows, self._api_feeders, feed)  # components: API, the rest
        assert self._soft is not None
        t, env = self._soft.step(feed)
        env = env.reshape(-1, t.size)
        # gate tick k (time (k + 1/2) dt) is known once feed tick k - d0 is complete
        n_keep = int(np.searchsorted(t, self.n_ticks * self.dt))  # t is increasing
        if n_keep < t.size:
            t, env = t[:n_keep], env[:, :n_keep]
        if t.size == 0:
            return
        lo, hi = self.limits
        # bad: union of the OOS intervals over the envelope; reported content: the envelope
        # member farthest from target (nominal when u = 0)
        bad = np.empty(t.size, dtype=np.bool_)
        if env.shape[0] == 1:  # one model: its prediction is the content (no copy)
            content = env[0]
            _outside(content, lo, hi, bad)
        else:
            content = np.empty(t.size)
            _envelope_flags(env, lo, hi, content, bad)
        self._sig["soft_t"].append(t)
        self._sig["soft"].append(content)
        rule = next(r for r in self.rules if r.kind == "soft")
        prev = self._soft_prev
        lead = (self._soft.lead_ticks - 1) * self.dt  # tick k predicted at (k - d0 + 1) dt
        for kind, i, _tref in rule.tracker.update(t, bad):
            tdec = float(t[i]) - 0.5 * self.dt - lead
            tprev, cprev = (float(t[i - 1]), float(content[i - 1])) if i > 0 else \
                (prev if prev is not None else (float(t[i]), float(content[i])))
            tc = _crossing(tprev, cprev, float(t[i]), float(content[i]), lo, hi)
            if kind == "open":
                self._open(rule, tc, tdec, {"predicted_content": float(content[i])})
                rule.info["oos_start"] = tc
                win = self._soft_window(rule, float(t[i]))
            else:
                win = self._soft_window(rule, tc)
                self._close(rule, tdec)
            self._request(rule, win, tdec)
        if rule.tracker.open:
            tnow = float(t[-1]) - 0.5 * self.dt - lead
            self._request(rule, self._soft_window(rule, float(t[-1])), tnow)
        self._soft_prev = (float(t[-1]), float(content[-1]))

    def _soft_window(self, rule: _Rule, t_end: float) -> DiversionWindow:
        ms, me = self.margins
        a = rule.info["oos_start"]
        return DiversionWindow(a - ms, max(t_end, a) + me, rule.name, "A", self.margins,
                               rtd_params=self._feed_params,
                               details={"limits": list(self.limits), "oos_start_s": a,
                                        "oos_end_s": max(t_end, a),
                                        "rtd_uncertainty": self.config.rtd_uncertainty})

    # -- load cells, tablet weight, MSPC
    def _load_cells(self, k0: int, k1: int) -> None:
        if self._lc_bank is not None:
            ts, flow = self._lc_bank.measure(self._flow_rows, return_mass=False)
            for i, n in enumerate(self.load_cell_names):
                self._lc_signal(n, ts, flow[i])
        # the hopper weight is piecewise linear between tick ends: a sampler interpolating it
        # only needs the grid points around its sample times (same readings, far fewer points)
        for n, lc in self.load_cells.items():
            net = self._net[n] - np.cumsum(self._flows[n]) * self.dt  # refills excluded
            self._net[n] = float(net[-1])
            keep = _grid_bracketing(k1 - k0, (k0 + 1) * self.dt, self.dt, lc.start,
                               lc.sample_period)
            ts, _, flow = lc.measure((k0 + 1 + keep) * self.dt, net[keep])
            self._lc_signal(n, ts, flow)
        if self.tablet_weight is not None:
            tw = self.tablet_weight
            keep = _grid_bracketing(k1 - k0, k0 * self.dt + 0.5 * self.dt, self.dt, tw.start,
                               tw.sample_period)
            ts, wts = tw.measure((k0 + keep) * self.dt + 0.5 * self.dt,
                                 np.full(keep.size, self.tablet_mass))
            self._sig.setdefault("tablet_weight_t", []).append(ts)
            self._sig.setdefault("tablet_weight", []).append(wts)

    def _lc_signal(self, n: str, ts: np.ndarray, flow: np.ndarray) -> None:
        self._sig.setdefault(f"load_cell_t.{n}", []).append(ts)
        self._sig.setdefault(f"load_cell.{n}", []).append(flow)
        if self.config.mspc:  # the MSPC interpolates the flows at the NIR reading times
            pt, pf = self._lc_recent.get(n, (np.empty(0), np.empty(0)))
            self._lc_recent[n] = (np.concatenate((pt[-1:], ts)), np.concatenate((pf[-1:], flow)))

    def _mspc_chunk(self, ts: np.ndarray, content: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from cmsim.monitor.mspc import PCAMonitor  # noqa: PLC0415

        cols = [content]
        for n in self.load_cell_names:
            lt, lf = self._lc_recent.get(n, (np.empty(0), np.empty(0)))
            cols.append(np.interp(ts, lt, lf) if lt.size else np.full(ts.shape, np.nan))
        x = np.column_stack(cols)
        ok = np.all(np.isfinite(x), axis=1)
        a, b = self.config.mspc_training
        if self._mspc is None:
            sel = ok & (ts >= a) & (ts < b)
            self._mspc_train.append(x[sel])
            if ts[-1] >= b:
                train = np.concatenate(self._mspc_train)
                # 90 % of the variance, but at least one residual direction so that Q (SPE)
                # is defined (nearly independent variables would otherwise keep them all)
                self._mspc = PCAMonitor().fit(train)
                p = train.shape[1]
                if self._mspc.n_components_ >= p > 1:
                    self._mspc = PCAMonitor(n_components=p - 1).fit(train)
                self._mspc_limits = (self._mspc.t2_limit(self.config.mspc_alpha),
                                     self._mspc.q_limit(self.config.mspc_alpha))
                self._log(float(ts[-1]), "mspc_trained", {"n_observations": int(len(train))})
            post = ok & (ts >= b)
        else:
            post = ok
        if self._mspc is None or not post.any():
            return ts[:0], np.zeros(0, bool)
        xs = x[post]
        t2 = self._mspc.t2(xs)
        q = self._mspc.q(xs)
        self._mspc_last = (xs, t2, q)
        return ts[post], (t2 > self._mspc_limits[0]) | (q > self._mspc_limits[1])

    def _mspc_record(self, i: int) -> dict[str, Any]:
        """Audit data of an MSPC alarm at observation ``i`` of the last chunk: statistics,
        limits, the variable contributions to T^2 and Q and the largest contributor."""
        xs, t2, q = self._mspc_last
        assert self._mspc is not None
        x = xs[i:i + 1]
        ct2 = self._mspc.t2_contributions(x)[0]
        cq = self._mspc.q_contributions(x)[0]
        names = self.mspc_variables
        return {"t2": float(t2[i]), "q": float(q[i]), "t2_limit": self._mspc_limits[0],
                "q_limit": self._mspc_limits[1], "variables": list(names),
                "t2_contributions": dict(zip(names, map(float, ct2), strict=True)),
                "q_contributions": dict(zip(names, map(float, cq), strict=True)),
                # of the statistic farther above its limit (relative)
                "largest_contribution": names[int(np.argmax(
                    np.abs(cq) if q[i] / self._mspc_limits[1] > t2[i] / self._mspc_limits[0]
                    else np.abs(ct2)))]}

    # -- feed stops docs/monitor.md#start-up-and-shut-down: shut-down, pause and restart)
    def _feed_stops(self, k0: int, k1: int) -> None:
        """Detect ticks with every feeder stopped (total set point 0, or total feed at most
        ``1e-9`` of the nominal total: stops, steps to 0, starvation); a run of such ticks is a
        feed stop, the first tick after it a restart. Each becomes a phase mark at its
        decision time (the end of the tick), the stop also a shut-down mark at
        ``stop + t_alpha`` (line RTD, the current model, smallest over the envelope)."""
        tr = self._stop_tracker
        if tr is None:
            return
        n = k1 - k0
        units = self._feeder_units
        if all(u is not None for u in units) and \
                sum(float(u.mass_flow) for u in units) <= 0.0:
            stopped = np.ones(n, dtype=np.bool_)
        else:
            stopped = np.empty(n, dtype=np.bool_)
            _all_stopped(self._flow_rows, self._stop_eps, stopped)
        c = self.config
        for kind, i, tref in tr.update_grid(k0, self.dt, stopped):
            tdec = (k0 + i + 1) * self.dt
            if kind == "open":
                sid = len(self._stops) + 1
                q = self._q_feed[0]
                self._stops[sid] = {"stop_s": float(tref), "decision_s": tdec, "t_alpha_s": q}
                self._marks.append((tdec, 0, f"stop:{sid}"))
                self._marks.append((float(tref) + q, 0, f"shut_down:{sid}"))
                self._log(tdec, "feed_stop", {"stop_s": float(tref), "t_alpha_s": q,
                                              "alpha": c.alpha,
                                              "shut_down_s": float(tref) + q})
            else:
                g = len(self._qualifiers)
                restart = (k0 + i) * self.dt
                settle = max(cached_quantile(m, c.start_up_quantile) for m in self._feed_env)
                self._qualifiers[g] = StartupQualifier(restart + settle,
                                                       c.clear_readings if c.pat else 0)
                self._marks.append((tdec, 0, f"restart:{g}"))
                self._log(tdec, "feed_restart", {"restart_s": restart,
                                                 "settled_s": restart + settle})

    def _phase_window(self, end_s: float) -> None:
        """Request (extend) the diversion window of the current start-up / shut-down phase
        through ``end_s`` [s] at the diverter."""
        if self.phase == "start_up":
            g = self._gen
            win = DiversionWindow(self._phase_start, max(end_s, self._phase_start),
                                  "start_up", "startup",
                                  details={} if g == 0 else {"restart": g})
            self.manager.request(win, self._phase_decision,
                                 key="start_up" if g == 0 else f"start_up#{g}")
        elif self.phase == "shut_down":
            st = self._stops[self._stop_id]
            win = DiversionWindow(self._phase_start, max(end_s, self._phase_start), "shut_down",
                                  "B", (0.0, 0.0), self.config.alpha, self._feed_params,
                                  details={"feed_stop_s": st["stop_s"],
                                           "t_alpha_s": st["t_alpha_s"],
                                           "rule": "feed stop + t_alpha until the line is "
                                                   "empty or feeding restarts"})
            self.manager.request(win, st["decision_s"], key=f"shut_down#{self._stop_id}")

    def _phase_mark(self, t: float, name: str) -> None:
        """Apply a feed stop, shut-down or restart mark at ``t`` [s]."""
        kind, _, num = name.partition(":")
        i = int(num)
        gd = self.manager.gate_delay
        if kind == "stop":
            self._stopped = True
            self._stop_id = i
            return
        if kind == "shut_down":
            if not (self._stopped and self._stop_id == i) or t >= self.n_ticks * self.dt:
                return  # feeding resumed before t_alpha, or after the end of the run
            if self.phase == "start_up":  # the start-up window runs into the shut-down one
                self._phase_window(t + gd)
            was = self._in_control
            self.phase = "shut_down"
            self._phase_start = t
            self._in_control = False
            self._phase_window(t)
            st = self._stops[i]
            self._log(t, "state_of_control", {"in_control": False, "state": "shut_down",
                                              "reason": "feed stopped",
                                              "feed_stop_s": st["stop_s"],
                                              "t_alpha_s": st["t_alpha_s"]})
            if was:
                self.state_changes.append((t, False))
            return
        # restart: the running phase's window ends here; a new start-up begins
        self._stopped = False
        if self.phase != "run":
            self._phase_window(t + gd)
        was = self._in_control
        self.phase = "start_up"
        self._gen = i
        self._phase_start = t + gd
        self._phase_decision = t
        self._in_control = False
        self._log(t, "state_of_control", {"in_control": False, "state": "start_up",
                                          "reason": "feeding resumed",
                                          "settled_s": self._qualifier.settled_s})
        if was:
            self.state_changes.append((t, False))

    # -- state of control (docs/monitor.md#start-up-and-shut-down)
    def _state(self, k0: int, k1: int, ts: np.ndarray | None, y: np.ndarray | None) -> None:
        """State of control from the alarm openings/clearings and the feed stops/restarts in
        time order (chunk invariant).

        Every later alarm decision is at or after ``k1 dt`` (feeder and soft-sensor decisions
        lie in later ticks, later NIR readings are later), so the marks up to ``k1 dt`` are
        final and are applied in time order (openings first, then phase marks, then
        clearings at equal times); a start-up ends at the first time at or after its
        qualifier's ready time with no alarm open and the feed running.
        """
        del k0
        tnow = k1 * self.dt
        horizon = math.inf if k1 >= self.n_ticks else tnow
        if ts is not None and ts.size:
            # only a start-up still to come or under way consults its qualifier: not those of
            # earlier generations, nor generation 0 of a run that starts in control
            first = max(self._gen, 0 if self.config.start_up else 1)
            pending = [q for g, q in self._qualifiers.items()
                       if g >= first and not math.isfinite(q.ready_s)]
            if pending:
                content = y / self.target
                lo, hi = self.limits
                ok = np.isfinite(content) & (content >= lo) & (content <= hi)
                for q in pending:
                    q.update(ts, ok)
        self._marks.sort(key=lambda m: (m[0], -m[1]))
        n_due = 0
        for t, delta, name in self._marks:
            if t > horizon:
                break
            n_due += 1
            ready = self._qualifier.ready_s
            if self.in_startup and not self._stopped and t > ready and not self._open_rules:
                self._startup_done(ready)
            if delta == 0:
                self._phase_mark(t, name)
                continue
            n = self._open_rules.get(name, 0) + delta
            if n > 0:
                self._open_rules[name] = n
            else:
                self._open_rules.pop(name, None)
            if self.in_startup:
                if not self._open_rules and not self._stopped and t >= self._qualifier.ready_s:
                    self._startup_done(t)
            elif self.phase == "run" and self._in_control == bool(self._open_rules):
                self._in_control = not self._open_rules
                self.state_changes.append((t, self._in_control))
                self._log(t, "state_of_control", {"in_control": self._in_control,
                                                  "open_alarms": sorted(self._open_rules)})
        del self._marks[:n_due]
        ready = self._qualifier.ready_s
        if self.in_startup and not self._stopped and ready <= horizon and not self._open_rules:
            self._startup_done(ready)
        # divert through the end of this chunk (decided now) while starting up / shut down
        self._phase_window(tnow + self.manager.gate_delay)

    def _startup_done(self, t_ok: float) -> None:
        g = self._gen
        win = DiversionWindow(self._phase_start, max(t_ok + self.manager.gate_delay,
                                                     self._phase_start),
                              "start_up", "startup",
                              details={"state_of_control_s": t_ok,
                                       **({} if g == 0 else {"restart": g})})
        self.manager.request(win, self._phase_decision,
                             key="start_up" if g == 0 else f"start_up#{g}")
        self.phase = "run"
        self._in_control = True
        self._log(t_ok, "state_of_control", {"in_control": True,
                                             "reason": "start-up complete"})
        self.state_changes.append((t_ok, True))

    # ------------------------------------------------------------------ results
    def signals(self) -> dict[str, np.ndarray]:
        """Recorded signals as arrays: ``t``/``nir``/``nir_true`` (NIR), ``soft_t``/``soft``
        (soft-sensor content at the gate, fraction of target; the envelope member farthest
        from target with ``rtd_uncertainty``), ``spc_t``/``spc.<chart>`` (chart alarm flags
        per valid reading, warnings), load cells, tablet weight."""
        # one chunk: its array itself (never written after it was recorded)
        return {k: (np.concatenate(v) if len(v) > 1 else v[0] if v else np.empty(0))
                for k, v in self._sig.items()}

    def diversion_events(self, gate_flow: np.ndarray, diverted: np.ndarray) -> list[dict]:
        """Diversion events with tablets and mass counted on the actual gate positions
        (empty when the monitor does not drive the gate)."""
        if not self.drive_gate:
            return []
        return self.manager.events(gate_flow, self.tablet_mass, diverted)


def _bracketing(t: np.ndarray, start: float, period: float) -> np.ndarray:
    """Indices of the points of the uniform grid ``t`` a sampler at ``start + j period`` needs
    (:func:`_grid_bracketing` of that grid)."""
    n = t.size
    if n < 2:
        return np.arange(n)
    return _grid_bracketing(n, float(t[0]), float(t[1] - t[0]), start, period)


def _grid_bracketing(n: int, t0: float, step: float, start: float, period: float
                     ) -> np.ndarray:
    """Indices of the points of the uniform grid ``t0 + i step`` (``i < n``) a sampler at
    ``start + j period`` needs.

    When every sample time lies on a grid point (``period`` a multiple of the grid step and
    ``start`` on the grid), those points and the last one suffice: linear interpolation on
    them gives the same readings as on the whole grid, and the sampler sees the same horizon.
    Otherwise all points.
    """
    if n < 2:
        return np.arange(n)
    m = period / step
    off = (start - t0) / step
    if abs(m - round(m)) > 1e-9 or abs(off - round(off)) > 1e-9 or round(m) < 2:
        return np.arange(n)
    m, off = int(round(m)), int(round(off))
    i0 = off % m  # first grid index at a sample time
    idx = np.arange(i0, n, m)
    if idx.size == 0 or idx[-1] != n - 1:
        idx = np.append(idx, n - 1)
    return idx


def _crossing(t0: float, c0: float, t1: float, c1: float, lo: float, hi: float) -> float:
    """Time where the straight line from (t0, c0) to (t1, c1) leaves/enters [lo, hi]."""
    if not (math.isfinite(c0) and math.isfinite(c1)) or t1 == t0:
        return t1 if not math.isfinite(c0) else t0
    out0 = c0 < lo or c0 > hi
    lim = (lo if c1 < lo else hi) if not out0 else (lo if c0 < lo else hi)
    if c1 == c0:
        return t0
    frac = (c0 - lim) / (c0 - c1)
    return float(t0 + min(max(frac, 0.0), 1.0) * (t1 - t0))


_ENVELOPES: dict[tuple, tuple[tuple[RTDModel, ...], tuple[float, float]]] = {}


def _key(model: RTDModel) -> tuple:
    return (type(model).__name__, repr(model.params))


def _envelope(model: RTDModel, uncertainty: float, alpha: float
              ) -> tuple[tuple[RTDModel, ...], tuple[float, float]]:
    """Envelope models and ``(min t_alpha, max t_(1-alpha))`` over it, cached per parameter set."""
    key = (*_key(model), float(uncertainty), float(alpha))
    hit = _ENVELOPES.get(key)
    if hit is None:
        env = rtd_envelope(model, uncertainty)
        q = (min(cached_quantile(m, alpha) for m in env),
             max(cached_quantile(m, 1.0 - alpha) for m in env))
        hit = (env, q)
        if len(_ENVELOPES) < 256:
            _ENVELOPES[key] = hit
    return hit


def line_models(scenario: Any, models: Any = None) -> tuple[RTDModel, RTDModel]:
    """Feeder-to-gate and probe-to-gate RTDs of a scenario.

    Parameters
    ----------
    scenario : cmsim.config.Scenario
        Validated scenario.
    models : object, optional
        Its residence-time models already built (attributes ``blender``, ``transfer``,
        ``feed_frame``; e.g. :class:`cmsim.assembly.LineModels`); built when not given.

    Returns
    -------
    (RTDModel, RTDModel)
        ``Series(blender, transfer, feed frame)`` and the probe-to-gate RTD for the scenario's
        PAT location (``Series(transfer, feed frame)`` at the blender outlet; the feed-frame
        RTD for a probe in the feed frame, whose contents leave through it). Series are
        cached per parameter set (the same object for the same parameters).
    """
    if models is not None:
        b, tr, ff = models.blender, models.transfer, models.feed_frame
    else:
        b = scenario.blender.rtd.build()
        tr = scenario.press.transfer_rtd.build()
        ff = scenario.press.feed_frame_rtd.build()
    loc = scenario.pat.location if scenario.pat is not None else "blender_outlet"
    probe = cached_series(tr, ff) if loc == "blender_outlet" else ff
    return cached_series(b, tr, ff), probe
