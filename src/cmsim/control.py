"""Control strategies of the line (docs/control.md#feeder-gravimetric-pi-loop): pure numpy,
plugged in as observers.

Strategies (any combination, selected by the scenario's ``[control]`` table):

``feeder_pi``
    The feeders' gravimetric loop is a real PI on the screw speed with a load-cell flow
    estimate (:meth:`cmsim.unitops.LossInWeightFeeder.set_control`) instead of the ideal loop.
    It lives inside the feeder kernel (it acts every feeder tick).
``ratio``
    Follower (excipient, lubricant) set points track the **measured** flow of a master feeder
    (default the API feeder): ``sp_i = r_i * m_master / c`` with the nominal ratios ``r_i`` and
    the composition trim ``c`` of the loops below, so composition is kept when the master
    wobbles (throughput then varies).
``nir_feedback``
    A PI on the relative error of the NIR reading of the API fraction at the probe (blender
    outlet by default) acts on the API set point (``sp_api = base * c``) or, together with
    ``ratio``, on the ratio (followers scaled by ``1 / c``). Default tuning: SIMC/IMC rules
    (:func:`simc_pi`) for a first-order-plus-dead-time model matched to the moments of the
    blender RTD (:func:`fopdt_from_rtd`) plus the sensor delays. The output is clamped and the
    velocity form keeps the clamp in the state (anti-windup).
``feedforward``
    An RTD soft sensor predicts the API fraction at the blender outlet from the feeders' load-cell
    flows convolved with the blender RTD kernel, ``w_hat = (h * a) / (h * total)``; a PI on the
    predicted error (tuned from the RTD alone, no sensor delay) corrects the API set point before
    the NIR can see the deviation. Its output adds to the feedback output.

Timing: :class:`Supervisor` acts at every multiple of its period ``T`` (a whole number of
ticks); run the engine with ``control_period_s = T`` so that every action tick is a chunk
boundary. The action at tick ``kc`` uses data of ticks ``< kc`` only and sets the set points
for ticks ``>= kc``, so results do not depend on other chunk boundaries.

NIR input of ``nir_feedback``: when the scenario has a ``[pat]`` table the loop reads the **PAT
monitor's NIR readings** (:class:`cmsim.monitor.pat.PATMonitor`, the same readings the monitor
records, with its sample times, latency, noise, bias, drift and dropouts): at action tick ``kc``
the input is the last valid reading reported at a time ``<= kc dt`` (sample and hold; a dropout
holds the previous reading; before the first reading the PI holds its output). Only without a
``[pat]`` table does the loop use its own measurement model: reading at ``t`` = mean of the true
API fraction of the probe stream (``line.records``, ``"blender.out"`` or ``"press.out"`` for the
feed frame) over the ticks in ``[t - latency - integration_time, t - latency)``, plus Gaussian
noise (absolute mass fraction), the model of docs/monitor.md#nir-measurement-model.

:class:`SetPointRecorder` records every feeder's set point and true discharge per tick (for the
``setpoint.<feeder>`` / ``flow.<feeder>`` columns of the time series).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmsim import _validate as v
from cmsim.errors import ParameterError, SimulationError

__all__ = [
    "STRATEGIES",
    "PIController",
    "SetPointRecorder",
    "Supervisor",
    "attach_control",
    "fopdt_from_rtd",
    "simc_pi",
]

#: Strategy names accepted in ``[control] strategy``.
STRATEGIES = ("feeder_pi", "ratio", "nir_feedback", "feedforward")


# --------------------------------------------------------------------------- tuning


def fopdt_from_rtd(rtd: Any, extra_dead_time: float = 0.0) -> tuple[float, float]:
    """First-order-plus-dead-time model matched to the first two moments of an RTD.

    Parameters
    ----------
    rtd : cmsim.rtd.RTDModel
        Any object with ``mean`` [s] and ``variance`` [s^2].
    extra_dead_time : float
        Dead time added to the model (sensor latency, estimator delays) [s].

    Returns
    -------
    (dead_time, time_constant) : tuple of float
        ``tau = sqrt(variance)``, ``theta = max(mean - tau, 0) + extra`` [s]; the FOPDT
        ``exp(-theta s) / (tau s + 1)`` has the RTD's mean and variance (when ``mean >= tau``).

    Examples
    --------
    >>> from cmsim.rtd import CSTR
    >>> fopdt_from_rtd(CSTR(60.0))
    (0.0, 60.0)
    """
    extra = v.non_negative("extra_dead_time", extra_dead_time)
    mean = float(rtd.mean)
    var = float(rtd.variance)
    tau = math.sqrt(max(var, 0.0))
    return max(mean - tau, 0.0) + extra, tau


def simc_pi(process_gain: float, time_constant: float, dead_time: float,
            closed_loop_time: float | None = None) -> tuple[float, float]:
    """SIMC (Skogestad IMC) PI settings for a first-order-plus-dead-time process.

    Parameters
    ----------
    process_gain : float
        Steady-state gain ``K`` [output unit / input unit], > 0.
    time_constant : float
        ``tau`` [s], > 0.
    dead_time : float
        ``theta`` [s], >= 0 (``theta + tau_c`` must be > 0).
    closed_loop_time : float, optional
        Desired closed-loop time constant ``tau_c`` [s]; default ``theta`` ("tight" tuning),
        or ``tau / 4`` for a process without dead time.

    Returns
    -------
    (kc, ti) : tuple of float
        ``Kc = tau / (K (tau_c + theta))`` [output unit / input unit] and
        ``Ti = min(tau, 4 (tau_c + theta))`` [s].

    Examples
    --------
    >>> simc_pi(1.0, 30.0, 10.0)
    (1.5, 30.0)
    """
    k = v.positive("process_gain", process_gain)
    tau = v.positive("time_constant", time_constant)
    theta = v.non_negative("dead_time", dead_time)
    if closed_loop_time is None:
        tc = theta if theta > 0 else tau / 4.0
    else:
        tc = v.positive("closed_loop_time", closed_loop_time)
    if tc + theta <= 0.0:
        raise ParameterError("closed_loop_time", closed_loop_time,
                             "tau_c + dead_time must be > 0")
    return tau / (k * (tc + theta)), min(tau, 4.0 * (tc + theta))


# --------------------------------------------------------------------------- PI


class PIController:
    """Velocity-form PI with a clamped output (no integral wind-up).

    ``u_k = clamp(u_{k-1} + Kc ((e_k - e_{k-1}) + T / Ti e_k), lo, hi)``; storing the clamped
    value is the anti-windup: after saturation the output leaves the limit as soon as the error
    changes sign.

    Parameters
    ----------
    gain : float
        ``Kc`` [output unit / error unit], > 0.
    integral_time : float
        ``Ti`` [s], > 0.
    period : float
        ``T`` [s], > 0.
    limits : (float, float)
        Output limits ``(lo, hi)``, ``lo < hi`` [output unit].
    u0 : float
        Initial output [output unit].
    """

    def __init__(self, gain: float, integral_time: float, period: float,
                 limits: tuple[float, float] = (-math.inf, math.inf), u0: float = 0.0) -> None:
        self.gain = v.positive("gain", gain)
        self.integral_time = v.positive("integral_time", integral_time)
        self.period = v.positive("period", period)
        lo, hi = (float(x) for x in limits)
        if not lo < hi:
            raise ParameterError("limits", limits, "must be (lo, hi) with lo < hi")
        self.limits = (lo, hi)
        self.u = float(min(max(u0, lo), hi))
        self.e_prev = 0.0
        self.saturated = False

    def update(self, error: float) -> float:
        """One control period: return the new output [output unit].

        A NaN error (missing measurement) holds the output.
        """
        e = float(error)
        if math.isnan(e):
            return self.u
        du = self.gain * ((e - self.e_prev) + self.period / self.integral_time * e)
        u = self.u + du
        lo, hi = self.limits
        self.saturated = not lo <= u <= hi
        self.u = min(max(u, lo), hi)
        self.e_prev = e
        return self.u


# --------------------------------------------------------------------------- supervisor


@dataclass(frozen=True)
class NIRSettings:
    """Measurement model of the NIR feedback loop (docs/monitor.md#nir-measurement-model).

    Attributes
    ----------
    port : str
        Recorded stream of the probe (``"blender.out"`` or ``"press.out"``).
    latency : float
        Reading delay [s].
    integration_time : float
        Averaging window [s].
    noise_sd : float
        Reading noise, absolute mass fraction [-].
    """

    port: str = "blender.out"
    latency: float = 2.0
    integration_time: float = 1.0
    noise_sd: float = 0.0


class MonitorNIRSource:
    """Sample-and-hold view of a PAT monitor's NIR readings for a controller.

    Parameters
    ----------
    monitor : cmsim.monitor.pat.PATMonitor
        The monitor (with its NIR probe). It must run before the controller in
        ``line.observers`` so that every reading reported by a control time is available.

    Notes
    -----
    :meth:`latest` returns the last valid reading (API mass fraction [-]) reported at a time
    ``<= t``; NaN readings (dropouts) hold the previous value; NaN before the first valid
    reading. The readings are taken incrementally from the monitor's growing reading lists
    (``readings`` or ``_sig`` with keys ``t``/``nir``; otherwise :meth:`PATMonitor.signals`).
    """

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self._taken = 0
        self._pend_t = np.empty(0)
        self._pend_y = np.empty(0)
        self.value = math.nan
        self.value_time = math.nan

    def _new_readings(self) -> tuple[np.ndarray, np.ndarray]:
        store = getattr(self.monitor, "readings", None)
        if not isinstance(store, Mapping):
            store = getattr(self.monitor, "_sig", None)
        if isinstance(store, Mapping) and isinstance(store.get("t"), list) \
                and isinstance(store.get("nir"), list):
            ts_list, y_list = store["t"], store["nir"]
            n = min(len(ts_list), len(y_list))
            new_t, new_y = ts_list[self._taken:n], y_list[self._taken:n]
            self._taken = n
            if not new_t:
                return np.empty(0), np.empty(0)
            return (np.concatenate([np.asarray(a, dtype=np.float64) for a in new_t]),
                    np.concatenate([np.asarray(a, dtype=np.float64) for a in new_y]))
        sig = self.monitor.signals()  # fallback: full arrays, keep what is new
        t = np.asarray(sig.get("t", np.empty(0)), dtype=np.float64)
        y = np.asarray(sig.get("nir", np.empty(0)), dtype=np.float64)
        new_t, new_y = t[self._taken:], y[self._taken:]
        self._taken = t.size
        return new_t, new_y

    def latest(self, t: float) -> float:
        """Held NIR reading at time ``t`` [s]: API mass fraction [-] (NaN if none yet)."""
        nt, ny = self._new_readings()
        if nt.size:
            self._pend_t = np.concatenate((self._pend_t, nt))
            self._pend_y = np.concatenate((self._pend_y, ny))
        n = int(np.searchsorted(self._pend_t, t + 1e-9, side="right"))
        if n:
            ty, yy = self._pend_t[:n], self._pend_y[:n]
            ok = np.flatnonzero(np.isfinite(yy))
            if ok.size:
                self.value = float(yy[ok[-1]])
                self.value_time = float(ty[ok[-1]])
            self._pend_t, self._pend_y = self._pend_t[n:], self._pend_y[n:]
        return self.value


class SetPointRecorder:
    """Line observer recording each feeder's set point and true discharge per tick.

    Put it first in ``line.observers`` (:meth:`attach`): observers run after each chunk and a
    controller may change set points there for the *next* ticks, so the recorder must read the
    set point the chunk just used before anyone changes it. Set points change only between
    chunks, so one read per chunk is exact.

    Parameters
    ----------
    line : cmsim.line.Line
        The line at tick 0 (feeders as nodes ``feeder.<name>``).

    Attributes
    ----------
    set_point : dict of str to ndarray
        Set point per tick [kg/s] (the feeder's commanded flow, also while it is stopped).
    flow : dict of str to ndarray
        True discharge per tick [kg/s] (tick average, all lots).
    """

    name = "setpoints"

    def __init__(self, line: Any) -> None:
        if line.k != 0:
            raise ParameterError("line", line.k, "the set-point recorder must start at tick 0")
        self.feeders = _feeder_units(line)
        n = int(line.n_ticks)
        self.set_point = {f: np.zeros(n) for f in self.feeders}
        self.flow = {f: np.zeros(n) for f in self.feeders}
        self._rec = {f: line.record(f"feeder.{f}.out") for f in self.feeders}

    @classmethod
    def attach(cls, line: Any) -> SetPointRecorder:
        """Create a recorder and insert it first in ``line.observers``."""
        rec = cls(line)
        line.observers.insert(0, rec)
        return rec

    def on_chunk(self, line: Any, k0: int, k1: int) -> None:
        """Record ticks ``[k0, k1)``."""
        for name, unit in self.feeders.items():
            self.set_point[name][k0:k1] = unit.mass_flow
            self.flow[name][k0:k1] = self._rec[name][:, k0:k1].sum(axis=0)


class Supervisor:
    """Ratio, NIR-feedback and RTD-feedforward control acting every ``period`` [s].

    Parameters
    ----------
    feeders : mapping of str to LossInWeightFeeder
        The line's feeders by name.
    api_feeder : str
        Name of the API feeder.
    dt : float
        Tick length [s].
    period : float
        Control period [s] (a whole number of ticks).
    target_fraction : float
        Target API mass fraction [-].
    ratio : bool
        Enable ratio control.
    master : str, optional
        Ratio master feeder (default ``api_feeder``).
    followers : sequence of str, optional
        Ratio followers (default every other feeder).
    nir : PIController, optional
        NIR-feedback PI (output: relative correction ``c - 1`` [-]).
    nir_settings : NIRSettings, optional
        Own NIR measurement model (with ``nir`` and no ``nir_source``).
    nir_source : MonitorNIRSource, optional
        Read the PAT monitor's NIR readings instead of the own model (with ``nir``).
    feedforward : PIController, optional
        Feedforward PI on the RTD-predicted fraction.
    kernel : ndarray, optional
        Blender RTD bin kernel at ``dt`` (with ``feedforward``).
    rng : numpy.random.Generator, optional
        Source of the NIR noise (required when ``nir_settings.noise_sd > 0``).
    correction_limits : (float, float)
        Limits of the total relative correction ``c - 1`` [-].
    """

    name = "control"

    def __init__(self, feeders: Mapping[str, Any], api_feeder: str, dt: float, period: float,
                 target_fraction: float, *, ratio: bool = False, master: str | None = None,
                 followers: Sequence[str] | None = None, nir: PIController | None = None,
                 nir_settings: NIRSettings | None = None,
                 nir_source: MonitorNIRSource | None = None,
                 feedforward: PIController | None = None, kernel: np.ndarray | None = None,
                 rng: np.random.Generator | None = None,
                 correction_limits: tuple[float, float] = (-0.5, 1.0)) -> None:
        self.feeders = dict(feeders)
        if api_feeder not in self.feeders:
            raise ParameterError("api_feeder", api_feeder,
                                 f"must be one of the feeders {list(self.feeders)}")
        self.api = api_feeder
        self.dt = v.positive("dt", dt)
        n_per = round(v.positive("period", period) / self.dt)
        if n_per < 1 or abs(n_per * self.dt - period) > 1e-9 * max(1.0, period):
            raise ParameterError("period", period,
                                 f"must be a whole number (>= 1) of ticks (dt = {self.dt} s)")
        self.period_ticks = n_per
        self.period_s = n_per * self.dt
        self.target = v.probability("target_fraction", target_fraction)
        self.ratio = bool(ratio)
        self.master = api_feeder if master is None else master
        if self.master not in self.feeders:
            raise ParameterError("master", master, f"must be one of {list(self.feeders)}")
        if followers is None:
            followers = [n for n in self.feeders if n != self.master]
        for f in followers:
            if f not in self.feeders or f == self.master:
                raise ParameterError("followers", f, f"must name feeders other than the master "
                                     f"{self.master!r}: {list(self.feeders)}")
        self.followers = list(followers)
        self.nir = nir
        self.nir_settings = nir_settings or NIRSettings()
        self.ff = feedforward
        self.kernel = None if kernel is None else np.asarray(kernel, dtype=np.float64)
        if self.ff is not None and self.kernel is None:
            raise ParameterError("kernel", None, "the feedforward needs the blender RTD kernel")
        self.nir_source = nir_source
        if self.nir is not None and nir_source is None and self.nir_settings.noise_sd > 0 \
                and rng is None:
            raise ParameterError("rng", None, "a numpy Generator is required for NIR noise")
        self.rng = rng
        lo, hi = correction_limits
        if not lo < 0.0 < hi:
            raise ParameterError("correction_limits", correction_limits, "need lo < 0 < hi")
        self.correction_limits = (float(lo), float(hi))
        self.nominal = {n: f.mass_flow for n, f in self.feeders.items()}
        self.ratios = {n: self.nominal[n] / self.nominal[self.master] for n in self.followers}
        self._written: dict[str, float] = {}
        self._base: dict[str, float] = dict(self.nominal)
        self.correction = 1.0
        self.events: list[dict[str, Any]] = []
        self._hist: dict[str, list[float]] = {k: [] for k in (
            "time_s", "nir_reading", "predicted_fraction", "correction", "api_set_point")}
        self._api_rows: np.ndarray | None = None
        # own NIR: the last ``_nir_keep`` ticks of the port's stream (every reading window
        # reaches at most latency + integration time back), from tick ``_nir_buf_k0``
        st = self.nir_settings
        self._nir_keep = int(math.ceil((st.latency + st.integration_time) / self.dt)) + 2
        self._nir_buf: np.ndarray | None = None
        self._nir_buf_k0 = 0

    # -- hook ------------------------------------------------------------------------------
    def prepare(self, line: Any) -> None:
        """Enable the stream watches and load cells the strategies need (call at tick 0)."""
        self._nir_buf = None
        self._nir_buf_k0 = 0
        if self.nir is not None and self.nir_source is None:
            # per-chunk views of the stream (no record of the run), see _keep_nir
            line.watch(self.nir_settings.port)
        self._api_rows = np.asarray(line.channel_map.material_rows(
            line.channel_map.api_material))
        need_cell = [self.master] if self.ratio else []
        if self.ff is not None:
            need_cell = list(self.feeders)
        for name in need_cell:
            f = self.feeders[name]
            if f.load_cell_window == 0.0:
                f.enable_load_cell()

    def on_chunk(self, line: Any, k0: int, k1: int) -> None:
        """Act at every control tick in ``(k0, k1]`` (see the module docstring)."""
        own_nir = self.nir is not None and self.nir_source is None
        if own_nir:  # the kept ticks, then this chunk of the NIR port's stream
            chunk = line.chunk_stream(self.nir_settings.port)
            self._nir_buf = chunk if self._nir_buf is None else \
                np.concatenate((self._nir_buf, chunk), axis=1)
            self._nir_buf_k0 = k1 - self._nir_buf.shape[1]
        p = self.period_ticks
        first = (k0 // p + 1) * p
        for kc in range(first, k1 + 1, p):
            self._act(line, kc)
        if own_nir:  # keep a copy of the last ticks (the line reuses its chunk views)
            self._nir_buf = np.array(self._nir_buf[:, -self._nir_keep:])
            self._nir_buf_k0 = k1 - self._nir_buf.shape[1]

    # -- measurements ----------------------------------------------------------------------
    def _nir_reading(self, line: Any, kc: int) -> float:
        if self.nir_source is not None:
            return self.nir_source.latest(kc * self.dt)
        s = self.nir_settings
        b = min(kc, round(kc - s.latency / self.dt))
        a = round(kc - (s.latency + s.integration_time) / self.dt)
        a = min(a, b - 1)
        if a < 0:
            return math.nan
        rec, off = self._nir_buf, self._nir_buf_k0
        if rec is None or a < off:
            raise SimulationError(f"NIR window [{a}, {b}) not in the kept ticks from {off}")
        a, b = a - off, b - off
        api = rec[self._api_rows, a:b].sum(axis=0)
        tot = rec[:, a:b].sum(axis=0)
        ok = tot > 0
        if not ok.any():
            return math.nan
        y = float(np.mean(api[ok] / tot[ok]))
        if s.noise_sd > 0:
            y += s.noise_sd * float(self.rng.standard_normal())
        return y

    def _measured(self, name: str, kc: int) -> float:
        m = self.feeders[name].measured_flow
        return float(m[kc - 1]) if kc >= 1 and m.size >= kc else self.nominal[name]

    def _predicted(self, kc: int) -> float:
        w = self.kernel
        n = w.size
        api = np.zeros(n)
        tot = np.zeros(n)
        for name, f in self.feeders.items():
            m = f.measured_flow[:kc]
            seg = m[max(0, kc - n):][::-1]  # most recent first
            full = np.empty(n)
            full[:seg.size] = seg
            full[seg.size:] = seg[-1] if seg.size else self.nominal[name]  # steady before 0
            tot += full
            if name == self.api:
                api += full
        den = float(w @ tot)
        return float(w @ api) / den if den > 0 else math.nan

    # -- action ----------------------------------------------------------------------------
    def _base_of(self, name: str) -> float:
        f = self.feeders[name]
        written = self._written.get(name)
        if written is not None and f.mass_flow != written:
            # a scheduled disturbance changed the set point: that is the new base
            self._base[name] = f.mass_flow / (self.correction if name == self.api
                                              and not self.ratio else 1.0)
        return self._base[name]

    def _write(self, name: str, sp: float) -> None:
        f = self.feeders[name]
        if f.running:
            f.set_mass_flow(max(sp, 0.0))
        self._written[name] = f.mass_flow

    def _act(self, line: Any, kc: int) -> None:
        u = 0.0
        y = pred = math.nan
        if self.nir is not None:
            y = self._nir_reading(line, kc)
            u += self.nir.update((self.target - y) / self.target)
        if self.ff is not None:
            pred = self._predicted(kc)
            u += self.ff.update((self.target - pred) / self.target)
        lo, hi = self.correction_limits
        c = 1.0 + min(max(u, lo), hi)
        if self.ratio:
            # the master keeps its own set point; followers track its measured flow, the API
            # scaled by c and the others by 1 / c (composition trim of the NIR/feedforward)
            self.correction = c
            m = self._measured(self.master, kc)
            for name in self.followers:
                trim = c if name == self.api else 1.0 / c
                self._write(name, self.ratios[name] * m * trim)
        elif self.nir is not None or self.ff is not None:
            base = self._base_of(self.api)
            self.correction = c
            self._write(self.api, base * c)
        h = self._hist
        h["time_s"].append(kc * self.dt)
        h["nir_reading"].append(y)
        h["predicted_fraction"].append(pred)
        h["correction"].append(self.correction)
        h["api_set_point"].append(self.feeders[self.api].mass_flow)

    @property
    def history(self) -> dict[str, np.ndarray]:
        """Per control action: ``time_s`` [s], ``nir_reading`` [-], ``predicted_fraction``
        [-], ``correction`` (multiplier ``c`` [-]) and ``api_set_point`` [kg/s]."""
        return {k: np.asarray(val, dtype=np.float64) for k, val in self._hist.items()}


# --------------------------------------------------------------------------- from a scenario


def _feeder_units(line: Any) -> dict[str, Any]:
    return {name.split(".", 1)[1]: node.unit for name, node in line.nodes.items()
            if name.startswith("feeder.")}


def attach_control(line: Any, scenario: Any, rng: np.random.Generator | None = None, *,
                   monitor: Any = None, models: Any = None) -> Supervisor | None:
    """Configure the strategies of ``scenario.control`` on a freshly built line.

    Sets up the feeders' PI loops (``feeder_pi``) and appends a :class:`Supervisor` to
    ``line.observers`` for ``ratio`` / ``nir_feedback`` / ``feedforward``.

    Parameters
    ----------
    line : cmsim.line.Line
        The line at tick 0 (feeders as nodes ``feeder.<name>``, a ``blender`` stage).
    scenario : cmsim.config.Scenario
        Validated scenario; nothing happens when ``scenario.control`` is None.
    rng : numpy.random.Generator, optional
        Source of the NIR measurement noise of the own model (no ``monitor``).
    monitor : cmsim.monitor.pat.PATMonitor, optional
        PAT monitor with an NIR probe, already in ``line.observers``: ``nir_feedback`` then
        reads its NIR readings (and is tuned for its latency, integration time and sample
        period); ``[control.nir_feedback]`` must not then set its own ``latency``,
        ``integration_time`` or ``noise_sd``.
    models : cmsim.assembly.LineModels, optional
        The scenario's residence-time models, already built (``blender``, ``line``); built
        from the scenario when not given.

    Returns
    -------
    Supervisor or None
        The supervisor (run the engine with ``control_period_s = supervisor.period_s``), or
        None when no supervisory strategy is selected.
    """
    ctl = getattr(scenario, "control", None)
    if ctl is None:
        return None
    if line.k != 0:
        raise ParameterError("line", line.k, "control must be attached at tick 0")
    strategies = list(ctl.strategy)
    feeders = _feeder_units(line)
    if "feeder_pi" in strategies:
        fp = ctl.feeder_pi
        names = list(feeders) if fp.feeders is None else list(fp.feeders)
        for name in names:
            feeders[name].set_control(
                "pi", gain=fp.gain, integral_time=fp.integral_time, period=fp.period,
                window=fp.window, load_cell_noise=fp.load_cell_noise,
                nominal_speed=fp.nominal_speed, max_speed=fp.max_speed,
                adapt_time=fp.adapt_time)
    supervisory = [s for s in strategies if s != "feeder_pi"]
    if not supervisory:
        return None
    for f in feeders.values():
        if f.load_cell_window == 0.0 and ("ratio" in supervisory or "feedforward" in
                                          supervisory):
            f.enable_load_cell(ctl.load_cell_noise, ctl.load_cell_window)
    api_name = scenario.api_feeder.name
    dt = line.dt
    period = float(ctl.period)
    target = float(scenario.target_api_fraction)
    blender_rtd = models.blender if models is not None else scenario.blender.rtd.build()
    gain_rel = 1.0 - target  # d(ln w) / d(ln sp_api) at the nominal composition
    lim = float(ctl.output_limit)
    nir = ff = None
    settings = None
    source = None
    if "nir_feedback" in supervisory:
        nf = ctl.nir_feedback
        pat = getattr(scenario, "pat", None)
        hold = 0.0
        if monitor is not None:
            if pat is None:
                raise ParameterError("monitor", monitor,
                                     "needs a scenario with a [pat] table (the NIR probe)")
            if monitor not in line.observers:
                raise ParameterError("monitor", monitor, "must be in line.observers before "
                                     "the controller is attached (it runs first)")
            for fname in ("latency", "integration_time", "noise_sd"):
                if getattr(nf, fname) is not None:
                    raise ParameterError(
                        f"control.nir_feedback.{fname}", getattr(nf, fname),
                        "must not be set with a [pat] table: the feedback reads the PAT "
                        f"monitor's NIR readings (set pat.{fname} instead)")
            source = MonitorNIRSource(monitor)
            hold = 0.5 * float(pat.sample_period)
        latency = nf.latency if nf.latency is not None else (pat.latency if pat else 2.0)
        integ = (nf.integration_time if nf.integration_time is not None
                 else (pat.integration_time if pat else 1.0))
        noise = nf.noise_sd if nf.noise_sd is not None else (pat.noise_sd if pat else 0.0)
        location = pat.location if pat else "blender_outlet"
        port = "blender.out" if location == "blender_outlet" else "press.out"
        rtd = blender_rtd
        if port == "press.out" and models is not None:
            rtd = models.line
        elif port == "press.out":
            from cmsim.rtd import Series  # noqa: PLC0415

            rtd = Series(blender_rtd, scenario.press.transfer_rtd.build(),
                         scenario.press.feed_frame_rtd.build())
        theta, tau = fopdt_from_rtd(rtd, latency + 0.5 * integ + 0.5 * period + hold)
        kc, ti = simc_pi(gain_rel, tau, theta, nf.closed_loop_time)
        nir = PIController(nf.gain if nf.gain is not None else kc,
                           nf.integral_time if nf.integral_time is not None else ti, period,
                           (-lim, lim))
        settings = NIRSettings(port=port, latency=latency, integration_time=integ,
                               noise_sd=noise)
    kernel = None
    if "feedforward" in supervisory:
        fw = ctl.feedforward
        window = max(f.load_cell_window for f in feeders.values())
        theta, tau = fopdt_from_rtd(blender_rtd, 0.5 * window + 0.5 * period)
        kc, ti = simc_pi(gain_rel, tau, theta, fw.closed_loop_time)
        ff = PIController(fw.gain if fw.gain is not None else kc,
                          fw.integral_time if fw.integral_time is not None else ti, period,
                          (-lim, lim))
        kernel = blender_rtd.kernel(dt)
    ratio = ctl.ratio if "ratio" in supervisory else None
    sup = Supervisor(feeders, api_name, dt, period, target, ratio=ratio is not None,
                     master=None if ratio is None else ratio.master,
                     followers=None if ratio is None else ratio.followers, nir=nir,
                     nir_settings=settings, nir_source=source, feedforward=ff,
                     kernel=kernel, rng=rng,
                     correction_limits=(-lim, lim))
    sup.prepare(line)
    line.observers.append(sup)
    return sup
