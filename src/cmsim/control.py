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
    An RTD soft sensor predicts the API fraction at the blender outlet from the feeders'
    load-cell flows: the API flow ``a`` and the total flow pass, chunk by chunk, through a
    :class:`~cmsim.unitops.ContinuousBlender` of the blender RTD ``h`` at the line blender's
    current impeller speed (the line's own streaming stage filters, tank masses kept across a
    speed change), ``w_hat = (h * a) / (h * total)``; a PI on the predicted error
    (tuned from the RTD alone, no sensor delay) corrects the API set point before the NIR can
    see the deviation. Its output adds to the feedback output.

Timing: :class:`Supervisor` acts at every multiple of its period ``T`` (a whole number of
ticks); run the engine with ``control_period_s = T`` so that every action tick is a chunk
boundary. The action at tick ``kc`` uses data of ticks ``< kc`` only and sets the set points
for ticks ``>= kc``, so results do not depend on other chunk boundaries.

NIR input of ``nir_feedback``: the loop reads the readings of the plant's NIR instrument (the
model of docs/monitor.md#nir-measurement-model, :class:`cmsim.monitor.sensors.NIRSensor` run by
:class:`cmsim.monitor.plant.PlantRecorder`) through :class:`NIRSource`: at action tick ``kc``
the input is the last valid reading reported at a time ``<= kc dt`` (sample and hold; a dropout
holds the previous reading; before the first reading the PI holds its output). With a PAT
monitor on the line (a ``[pat]`` table) these are the monitor's own readings (its ``readings``
attribute); without one, :func:`attach_control` puts the plant's NIR instrument on the line by
itself (:class:`PlantNIR`): the ``[pat]`` probe when the scenario has one, otherwise a probe at
the blender outlet sampled at the control ticks, with the ``latency``, ``integration_time`` and
``noise_sd`` of ``[control.nir_feedback]``.

:class:`SetPointRecorder` records every feeder's set point and true discharge per tick (for the
``setpoint.<feeder>`` / ``flow.<feeder>`` columns of the time series).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cmsim import _validate as v
from cmsim.errors import ParameterError, SimulationError
from cmsim.rtd import Series

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


class NIRSource:
    """Sample-and-hold view of an NIR instrument's readings for a controller.

    Parameters
    ----------
    instrument : object
        Anything with a ``readings`` mapping of growing per-chunk lists ``t`` (reading times
        [s]) and ``nir`` (readings, API mass fraction [-], NaN = dropout): the PAT monitor, or
        :class:`PlantNIR`. It must run before the controller in ``line.observers`` so that
        every reading reported by a control time is available.

    Notes
    -----
    :meth:`latest` returns the last valid reading reported at a time ``<= t``; NaN readings
    (dropouts) hold the previous value; NaN before the first valid reading. New readings are
    taken incrementally from the lists.
    """

    def __init__(self, instrument: Any) -> None:
        store = getattr(instrument, "readings", None)
        if not (isinstance(store, Mapping) and isinstance(store.get("t"), list)
                and isinstance(store.get("nir"), list)):
            raise ParameterError("instrument", type(instrument).__name__,
                                 "must have a readings mapping of lists 't' and 'nir'")
        self.instrument = instrument
        self._store = store
        self._taken = 0
        self._pend_t = np.empty(0)
        self._pend_y = np.empty(0)
        self.value = math.nan
        self.value_time = math.nan

    def latest(self, t: float) -> float:
        """Held NIR reading at time ``t`` [s]: API mass fraction [-] (NaN if none yet)."""
        ts_list, y_list = self._store["t"], self._store["nir"]
        n_new = min(len(ts_list), len(y_list))
        if n_new > self._taken:
            self._pend_t = np.concatenate([self._pend_t, *ts_list[self._taken:n_new]])
            self._pend_y = np.concatenate([self._pend_y, *y_list[self._taken:n_new]])
            self._taken = n_new
        n = int(np.searchsorted(self._pend_t, t + 1e-9, side="right"))
        if n:
            ty, yy = self._pend_t[:n], self._pend_y[:n]
            ok = np.flatnonzero(np.isfinite(yy))
            if ok.size:
                self.value = float(yy[ok[-1]])
                self.value_time = float(ty[ok[-1]])
            self._pend_t, self._pend_y = self._pend_t[n:], self._pend_y[n:]
        return self.value


class PlantNIR:
    """Line observer: the plant's NIR instrument on a line without a PAT monitor.

    It runs a :class:`cmsim.monitor.plant.PlantRecorder` (the monitor's model of the plant's
    instruments) that holds only the NIR probe and keeps its readings as the monitor does, so
    a :class:`NIRSource` reads either in the same way.

    Parameters
    ----------
    plant : cmsim.monitor.plant.PlantRecorder
        The recorder with the NIR instrument (``plant.nir``), created at tick 0.

    Attributes
    ----------
    readings : dict of str to list of ndarray
        Reading times ``t`` [s] and readings ``nir`` (API mass fraction [-], NaN = dropout),
        one array per chunk.
    """

    name = "plant_nir"

    def __init__(self, plant: Any) -> None:
        if getattr(plant, "nir", None) is None:
            raise ParameterError("plant", plant, "must carry an NIR instrument (nir)")
        self.plant = plant
        self.readings: dict[str, list[np.ndarray]] = {"t": [], "nir": []}

    @property
    def sensor(self) -> Any:
        """The NIR instrument (:class:`cmsim.monitor.sensors.NIRSensor`)."""
        return self.plant.nir

    def on_chunk(self, line: Any, k0: int, k1: int) -> None:
        """Measure ticks ``[k0, k1)`` and keep the readings they complete."""
        ch = self.plant.on_chunk(line, k0, k1)
        self.readings["t"].append(ch.nir_t)
        self.readings["nir"].append(ch.nir)


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
    nir_source : NIRSource, optional
        The NIR readings of the feedback (required with ``nir``).
    feedforward : PIController, optional
        Feedforward PI on the RTD-predicted fraction.
    blender_rtd : cmsim.rtd.RTDModel, optional
        Nominal blender RTD of the soft sensor (required with ``feedforward``).
    blender_speed : (float, float), optional
        Reference impeller speed [rpm] of ``blender_rtd`` and the speed exponent [-]: the soft
        sensor then follows the line blender's speed changes (mass-state, as the line).
    correction_limits : (float, float)
        Limits of the total relative correction ``c - 1`` [-].
    """

    name = "control"

    def __init__(self, feeders: Mapping[str, Any], api_feeder: str, dt: float, period: float,
                 target_fraction: float, *, ratio: bool = False, master: str | None = None,
                 followers: Sequence[str] | None = None, nir: PIController | None = None,
                 nir_source: NIRSource | None = None,
                 feedforward: PIController | None = None, blender_rtd: Any = None,
                 blender_speed: tuple[float, float] | None = None,
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
        if nir is not None and nir_source is None:
            raise ParameterError("nir_source", None, "the NIR feedback needs NIR readings")
        self.nir_source = nir_source
        self.ff = feedforward
        if feedforward is not None and blender_rtd is None:
            raise ParameterError("blender_rtd", None, "the feedforward needs the blender RTD")
        self._ff_blender = None
        if feedforward is not None:
            from cmsim.unitops import ContinuousBlender  # noqa: PLC0415 (numba kernels)

            # the soft sensor: rows (API, total) of the load-cell flows through the blender RTD
            speed, beta = blender_speed if blender_speed is not None else (None, 0.5)
            self._ff_blender = ContinuousBlender(blender_rtd, self.dt, 2, speed=speed,
                                                 speed_exponent=beta)
        self._ff_pred = np.empty(0)  # predicted fraction after each tick of the last chunk
        self._ff_k0 = self._ff_k1 = 0
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

    # -- hook ------------------------------------------------------------------------------
    def prepare(self, line: Any) -> None:
        """Enable the load cells the strategies need (call at tick 0)."""
        need_cell = [self.master] if self.ratio else []
        if self.ff is not None:
            need_cell = list(self.feeders)
        for name in need_cell:
            f = self.feeders[name]
            if f.load_cell_window == 0.0:
                f.enable_load_cell()

    def on_chunk(self, line: Any, k0: int, k1: int) -> None:
        """Act at every control tick in ``(k0, k1]`` (see the module docstring)."""
        if self.ff is not None:
            self._follow_blender_speed(line)
            self._feed_soft_sensor(k0, k1)
        p = self.period_ticks
        first = (k0 // p + 1) * p
        for kc in range(first, k1 + 1, p):
            self._act(line, kc)

    # -- measurements ----------------------------------------------------------------------
    def _follow_blender_speed(self, line: Any) -> None:
        """Run the soft sensor's blender at the line blender's impeller speed of the chunk (an
        equipment signal; the tank masses are kept, as in the line)."""
        speed = getattr(line.nodes["blender"].unit, "speed", None)
        if speed is not None and speed != self._ff_blender.speed:
            self._ff_blender.set_speed(speed)

    def _feed_soft_sensor(self, k0: int, k1: int) -> None:
        """Pass the load-cell flows of ticks ``[k0, k1)`` through the soft sensor's blender."""
        if k0 != self._ff_k1:
            raise SimulationError(f"the feedforward soft sensor has seen ticks up to "
                                  f"{self._ff_k1}, not up to {k0}: attach it at tick 0")
        flows = np.empty((2, k1 - k0))
        flows[1] = 0.0
        for name, f in self.feeders.items():
            m = f.measured_flow[k0:k1]
            flows[1] += m
            if name == self.api:
                flows[0] = m
        if k0 == 0:  # before tick 0 the line ran steadily at the first estimates
            self._ff_blender.reset(flows[:, 0])
        out = self._ff_blender.step(flows)
        self._ff_pred = np.full(k1 - k0, math.nan)
        np.divide(out[0], out[1], out=self._ff_pred, where=out[1] > 0)
        self._ff_k0, self._ff_k1 = k0, k1

    def _predicted(self, kc: int) -> float:
        """Soft-sensor prediction for action tick ``kc``: the outlet after tick ``kc - 1``."""
        return float(self._ff_pred[kc - 1 - self._ff_k0])

    def _measured(self, name: str, kc: int) -> float:
        m = self.feeders[name].measured_flow
        return float(m[kc - 1]) if kc >= 1 and m.size >= kc else self.nominal[name]

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
            y = self.nir_source.latest(kc * self.dt)
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
        Random source of the NIR instrument that ``nir_feedback`` puts on a line without
        ``monitor`` (:class:`PlantNIR`; required when its readings are noisy or drop out).
    monitor : object, optional
        PAT monitor with an NIR probe (a ``readings`` mapping, see :class:`NIRSource`),
        already in ``line.observers``: ``nir_feedback`` then reads its NIR readings (and is
        tuned for its latency, integration time and sample period); ``[control.nir_feedback]``
        must not then set its own ``latency``, ``integration_time`` or ``noise_sd``.
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
    source = None
    if "nir_feedback" in supervisory:
        nf = ctl.nir_feedback
        pat = getattr(scenario, "pat", None)
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
        latency = nf.latency if nf.latency is not None else (pat.latency if pat else 2.0)
        integ = (nf.integration_time if nf.integration_time is not None
                 else (pat.integration_time if pat else 1.0))
        noise = nf.noise_sd if nf.noise_sd is not None else (pat.noise_sd if pat else 0.0)
        if monitor is not None:
            source = NIRSource(monitor)
        else:  # the plant's NIR instrument alone, before the supervisor
            probe = _plant_nir(line, scenario, rng, float(latency), float(integ),
                               float(noise), period)
            line.observers.append(probe)
            source = NIRSource(probe)
        # mean age of the held reading at an action tick: none when sampled at the action ticks
        hold = 0.5 * float(pat.sample_period) if pat is not None else 0.0
        rtd = blender_rtd
        if pat is not None and pat.location == "feed_frame":
            rtd = models.line if models is not None else Series(
                blender_rtd, scenario.press.transfer_rtd.build(),
                scenario.press.feed_frame_rtd.build())
        theta, tau = fopdt_from_rtd(rtd, latency + 0.5 * integ + 0.5 * period + hold)
        kc, ti = simc_pi(gain_rel, tau, theta, nf.closed_loop_time)
        nir = PIController(nf.gain if nf.gain is not None else kc,
                           nf.integral_time if nf.integral_time is not None else ti, period,
                           (-lim, lim))
    if "feedforward" in supervisory:
        fw = ctl.feedforward
        window = max(f.load_cell_window for f in feeders.values())
        theta, tau = fopdt_from_rtd(blender_rtd, 0.5 * window + 0.5 * period)
        kc, ti = simc_pi(gain_rel, tau, theta, fw.closed_loop_time)
        ff = PIController(fw.gain if fw.gain is not None else kc,
                          fw.integral_time if fw.integral_time is not None else ti, period,
                          (-lim, lim))
    ratio = ctl.ratio if "ratio" in supervisory else None
    sup = Supervisor(feeders, api_name, dt, period, target, ratio=ratio is not None,
                     master=None if ratio is None else ratio.master,
                     followers=None if ratio is None else ratio.followers, nir=nir,
                     nir_source=source, feedforward=ff,
                     blender_rtd=blender_rtd if ff is not None else None,
                     blender_speed=(scenario.blender.speed, scenario.blender.speed_exponent)
                     if ff is not None and scenario.blender.speed is not None else None,
                     correction_limits=(-lim, lim))
    sup.prepare(line)
    line.observers.append(sup)
    return sup


def _plant_nir(line: Any, scenario: Any, rng: np.random.Generator | None, latency: float,
               integration_time: float, noise_sd: float, period: float) -> PlantNIR:
    """The plant's NIR instrument for a line without a PAT monitor.

    The ``[pat]`` probe when the scenario has one (its sample clock, bias, drift, dropouts and
    ``nir_fault`` disturbances), otherwise a probe at the blender outlet sampled every control
    ``period``; ``latency``, ``integration_time`` [s] and ``noise_sd`` [-] as resolved from
    ``[control.nir_feedback]``. Its noise and dropouts come from ``rng``.
    """
    from cmsim.monitor.plant import PlantRecorder  # noqa: PLC0415
    from cmsim.monitor.setup import lot_potency, nir_instrument, probe_stages  # noqa: PLC0415

    pat = getattr(scenario, "pat", None)
    location = pat.location if pat is not None else "blender_outlet"
    if pat is None:
        sensor = nir_instrument(scenario, line, rng, location, period, noise_sd, latency,
                                integration_time)
    else:
        sensor = nir_instrument(scenario, line, rng, location, float(pat.sample_period),
                                noise_sd, latency, integration_time, bias=float(pat.bias),
                                drift_per_s=float(pat.drift_per_h) / 3600.0,
                                dropout=float(pat.dropout_probability))
    plant = PlantRecorder(line, [f.name for f in scenario.feeders], scenario.api_feeder.name,
                          lot_potency(scenario, line.channel_map.channels), sensor, location,
                          probe_stages(line, location), None)
    return PlantNIR(plant)
