"""Line-state estimator: the monitor's own copy of the line, corrected by the NIR.

The estimator runs the line's own unit operations (:class:`~cmsim.unitops.ContinuousBlender`
and :class:`~cmsim.unitops.TabletPress`, the same stage filters as the simulated line) on the
flows the plant knows, so a blender speed change keeps the stage masses and a press stop
freezes the press exactly as in the line. Its channels are one per API lot generation, the
rest of the blend, and (behind the NIR probe) two bookkeeping channels that carry the NIR
correction and its variance through the stages downstream of the probe.

Inputs (:class:`~cmsim.monitor.plant.SignalChunk` only):

* feeder flows ``u = setpoint * running + d``: the commanded flow is known without lag; the
  load cells' weighings add what the feeder delivered beyond the command: at every weighing
  ``d`` becomes the mass the model still owes (weighed discharge minus the model's cumulative
  input) spread over the next weighing interval, so the model's cumulative input equals the
  weighed discharge one interval later (no least-squares lag, and weighing noise does not
  accumulate);
* the API lot generation and its share (hopper bookkeeping);
* blender speed and press running state, applied at the chunk start as in the line;
* NIR predictions at the probe.

State corrected by the NIR (fractions of the target content):

* ``eps``: model error of the content at the probe, a first-order Gauss-Markov process
  (variance ``model_sd**2``, correlation time ``model_tau``), from feeder noise the load cells
  cannot resolve and from load-cell noise;
* ``a``: relative potency error of the newest API lot, a constant with variance
  ``lot_sd**2`` when the lot first appears (0 for the initial lot). It acts through the share
  of that lot in the material, so the estimator knows *which* material carries the risk.

A reading at ``t`` averages the probe over ``[t - latency - T_int, t - latency]``; it updates
the state at the window centre (a delayed measurement) with variance ``nir_sd**2`` and is used
only for gate ticks decided after ``t``. The standardised innovation ``z`` of every reading
feeds a two-sided CUSUM (and optionally a Shewhart rule); a signal means the model no longer
explains the data, and the variance of ``eps`` is raised by ``fault_sd**2`` so the filter
re-converges at once and the gate sees the uncertainty.

Output per gate tick ``k`` (decided at ``k dt - G dt + dt``, ``G = 1 + ceil(gate_delay/dt)``):
the content estimate ``c_k`` and its standard deviation ``s_k`` (fractions of target), with
``s_k**2 = (sqrt(var_eps) + |h_k| sqrt(var_a))**2 + (u * MRT * dc/dt)**2``; the first term
bounds the correlated NIR-correction errors, the second is the timing error of an RTD whose
residence times are known to ``+- u``. Also the same estimate without ``eps`` (load cells,
lot potencies and the RTDs only; ``model_sd`` in place of ``sqrt(var_eps)``): the content if
the NIR, not the blend, is what changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from cmsim.errors import ParameterError
from cmsim.monitor.plant import SignalChunk
from cmsim.rtd import autocorrelation, full_convolve

__all__ = ["EstimatorSettings", "GateEstimate", "LineSpec", "LineStateEstimator",
           "input_responses", "model_error_sd"]


@dataclass(frozen=True)
class LineSpec:
    """What the monitor knows of the line's equipment (its characterisation).

    Attributes
    ----------
    dt : float
        Tick [s].
    blender_rtd, transfer_rtd, feed_frame_rtd : RTDModel
        Characterised RTDs (blender at ``blender_speed``).
    blender_speed : float or None
        Reference impeller speed of ``blender_rtd`` [rpm].
    speed_exponent : float
        ``tau ~ rpm**-beta`` [-].
    tablet_mass : float
        Tablet mass [kg].
    probe : {"blender_outlet", "feed_frame"}
        NIR probe location.
    shift : int
        Alignment shift of the gate [ticks] (the line's convention).
    target : float
        Target API mass fraction [-].
    api_feeder : int
        Index of the API feeder among the feeders.
    nominal_flows : tuple of float
        Nominal feeder flows [kg/s].
    steady_start : bool
        The line starts at steady state (else empty).
    n_api_lots : int
        API lot generations the run can see (channels).
    """

    dt: float
    blender_rtd: Any
    blender_speed: float | None
    speed_exponent: float
    transfer_rtd: Any
    feed_frame_rtd: Any
    tablet_mass: float
    probe: str
    shift: int
    target: float
    api_feeder: int
    nominal_flows: tuple[float, ...]
    steady_start: bool
    n_api_lots: int


@dataclass(frozen=True)
class EstimatorSettings:
    """Noise model and detection settings of the estimator (fractions of target unless noted).

    Attributes
    ----------
    nir_sd : float
        Standard deviation of one NIR prediction [-].
    model_sd, model_tau : float
        Stationary standard deviation [-] and correlation time [s] of the model error at the
        probe.
    lot_sd : float
        Standard deviation of a new API lot's relative potency [-].
    fault_sd : float
        Standard deviation added to the model error when the innovation chart signals [-].
    cusum_k, cusum_h : float
        CUSUM reference and decision interval on the standardised innovations [-].
    shewhart_L : float
        Shewhart limit on the standardised innovations (0: off) [-].
    gate_ticks : int
        ``G``: ticks between the decision and the gate tick it decides [-].
    lc_period : float
        Load-cell weighing period [s] (0: no load cells).
    rtd_uncertainty : float
        Relative uncertainty of the residence times [-].
    """

    nir_sd: float
    model_sd: float
    model_tau: float
    lot_sd: float = 0.1
    fault_sd: float = 0.05
    cusum_k: float = 0.5
    cusum_h: float = 5.0
    shewhart_L: float = 0.0  # noqa: N815
    gate_ticks: int = 2
    lc_period: float = 0.0
    rtd_uncertainty: float = 0.0


@dataclass
class GateEstimate:
    """Estimated content at the gate for ticks ``[k0, k1)`` (fractions of target).

    Attributes
    ----------
    content, sd : ndarray
        Estimate and its standard deviation [-] (NaN content where no flow reaches the gate).
    content_model, sd_model : ndarray
        The same without the NIR's model-error correction ``eps`` (load cells, lot potencies
        and the RTDs only), with the stationary model-error SD ``model_sd`` in place of the
        corrected one [-]: the content if the NIR is what is wrong.
    z_t, z : ndarray
        Reading times [s] and standardised innovations [-] of the readings used.
    alarms : list of float
        Reading times of innovation-chart signals [s].
    """

    k0: int
    k1: int
    content: np.ndarray
    sd: np.ndarray
    z_t: np.ndarray
    z: np.ndarray
    alarms: list[float]
    content_model: np.ndarray
    sd_model: np.ndarray


def model_error_sd(rsd: np.ndarray, shares: np.ndarray, api: int, corr_time: np.ndarray,
                   kernel: np.ndarray, dt: float,
                   seen: np.ndarray | None = None) -> float:
    """Standard deviation of the estimator's content error at the probe from flow noise [-].

    Parameters
    ----------
    rsd : ndarray
        Relative flow noise of each feeder [-].
    shares : ndarray
        Nominal mass share of each feeder [-].
    api : int
        Index of the API feeder.
    corr_time : ndarray
        AR(1) correlation time of each feeder's noise [s].
    kernel : ndarray
        Feeder-to-probe bin kernel at ``dt``.
    dt : float
        Tick [s].
    seen : ndarray, optional
        Response of the estimator's flow input to a unit flow impulse at tick 0 (unit sum):
        what the load cells pass on of the noise (None: nothing, all noise is unexplained).

    Notes
    -----
    The content ``c = F_api / sum F`` moves by ``(1 - w) e_api`` for a relative API flow error
    ``e_api`` and by ``-s_f e_f`` for feeder ``f``. The unexplained part of the noise passes
    ``g = kernel * (delta - seen)``; for AR(1) noise ``rho**|l|`` its variance factor is
    ``sum_l rho**|l| r_g(l)`` (``r_g``: autocorrelation of ``g``).
    """
    g = np.asarray(kernel, dtype=np.float64)
    if seen is not None:
        miss = -np.asarray(seen, dtype=np.float64)
        miss[0] += 1.0
        g = full_convolve(g, miss)
    r = autocorrelation(g)
    lags = np.arange(r.size) * dt
    var = 0.0
    for f in range(len(rsd)):
        sens = (1.0 - shares[api]) if f == api else shares[f]
        rho = np.exp(-lags / corr_time[f]) if corr_time[f] > 0 else (lags == 0).astype(float)
        kappa = r[0] + 2.0 * float(np.dot(rho[1:], r[1:]))
        var += (sens * rsd[f]) ** 2 * max(kappa, 0.0)
    return math.sqrt(var)


def input_responses(period: float, dt: float, span: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Responses of the estimator's flow input, from its own mass-tracking kernel.

    Parameters
    ----------
    period : float
        Weighing period [s].
    dt : float
        Tick [s].
    span : int
        Length of the responses [ticks] (default: enough for them to end).

    Returns
    -------
    (ndarray, ndarray)
        Model input per tick after a unit flow impulse at tick 0 [-] (unit sum: the mass is
        passed on, one weighing interval later), and after a 1 kg error in one weighing
        [kg/s per kg] (zero sum: it is taken back at the next weighing).
    """
    pt = max(1, int(round(period / dt)))
    lead = 3 * pt
    n = span or lead + 8 * pt
    out = []
    for kind in ("flow", "weighing"):
        sp = np.ones((1, lead + n))
        true = sp[0].copy()
        if kind == "flow":
            true[lead] += 1.0 / dt  # one kilogram more in tick `lead`
        times = np.arange(pt, lead + n + 1, pt) * dt  # weighings at tick ends
        cum = np.concatenate(([0.0], np.cumsum(true) * dt))
        mass = -cum[np.rint(times / dt).astype(np.int64)][None, :]
        if kind == "weighing":
            mass[0, np.searchsorted(times, lead * dt)] += 1.0
        rows = np.floor(times / dt + 1e-9).astype(np.int64)
        x = np.empty((2, sp.shape[1]))  # the one feeder is the API feeder: its flow is x[0]
        _inflow_kernel(sp, np.ones(sp.shape, dtype=np.bool_), dt, rows, times, mass,
                       np.zeros((1, 7)), 0, np.zeros(sp.shape[1], dtype=np.int64),
                       np.ones(sp.shape[1]), x)
        resp = x[0, lead:] - 1.0
        out.append(resp * dt if kind == "flow" else resp)
    return out[0], out[1]


def _dead_time(models: Any) -> float:
    """Time before any material can pass the series of ``models`` [s] (sum of the times at
    which each survival function leaves 1)."""
    from cmsim.monitor.windows import cached_quantile  # noqa: PLC0415

    return float(sum(cached_quantile(m, 1e-12) for m in models))


#: weighings of a feeder at rest whose mean settles the model's book (then it is left alone)
REST_WEIGHINGS = 5


# --------------------------------------------------------------------------- NIR update
#: the estimator's state vector ``st``: model error eps and potency error a of the newest lot,
#: their covariance P00, P01, P11, the probe tick of the last update (epoch), the two CUSUM
#: sums, the newest lot generation, whether an update was made
(ST_EPS, ST_A, ST_P00, ST_P01, ST_P11, ST_EPOCH, ST_CUSUM_HI, ST_CUSUM_LO, ST_GEN,
 ST_HAVE_EPOCH) = range(10)


@njit(cache=True)
def _kf_chunk(k0, inv_target, min_flow, src, pot, gen, nir_use, nir_j, nir_y, ring, st, phi,
              q_ss, r_var, lot_var, fault_var, ck, ch, shew, p00_out, p11_out, pot_out,
              cur_out, z_out, alarm_out):  # pragma: no cover - compiled
    """The NIR update of one chunk. ``src`` rows: the API lots and the rest of the blend at
    the probe [kg/s] (read), then the model error times the flow and its variance times the
    flow (written: what rides with the material from the probe on). The state ``st`` is
    kept in local variables during the chunk."""
    eps, a, p00, p01, p11 = st[ST_EPS], st[ST_A], st[ST_P00], st[ST_P01], st[ST_P11]
    epoch, cu_hi, cu_lo = st[ST_EPOCH], st[ST_CUSUM_HI], st[ST_CUSUM_LO]
    lot_gen, have_epoch = st[ST_GEN], st[ST_HAVE_EPOCH]
    n_lots = pot.size
    n = src.shape[1]
    size = ring.shape[1]
    i = 0
    n_read = nir_use.size
    last_k, last_epoch, last_f = -2, -1.0, 1.0
    # phi**d for the last exponent of each kind (readings come at a regular spacing and lag)
    gap_d, gap_f, lag_d, lag_f = -1.0, 1.0, -1.0, 1.0
    slot = k0 % size
    for m in range(n):
        k = k0 + m
        g = gen[m]
        tot_m = src[0, m]  # the flow at the probe, summed in row order
        for c in range(1, n_lots + 1):
            tot_m += src[c, m]
        if g > lot_gen:  # a newer lot: freeze the estimate of the previous one
            pot[int(lot_gen)] = 1.0 + a
            lot_gen = g
            a = 0.0
            p01 = 0.0
            p11 = lot_var
        cur = int(lot_gen)
        c0 = 0.0
        h = 0.0
        if tot_m > 0.0:
            scale = inv_target / tot_m
            for lot in range(n_lots):
                if lot == cur:
                    h = src[lot, m] * scale
                    c0 += h
                else:
                    c0 += pot[lot] * src[lot, m] * scale
        ring[0, slot] = c0
        ring[1, slot] = h
        ring[2, slot] = cur
        ring[3, slot] = tot_m
        slot = slot + 1 if slot + 1 < size else 0
        while i < n_read and nir_use[i] <= k:
            j = nir_j[i]
            y = nir_y[i]
            s = j % size
            # a reading of a (nearly) empty stream says nothing about the blend
            if j > k or j <= k - size or ring[3, s] <= min_flow or math.isnan(y):
                i += 1
                continue
            if have_epoch == 0.0:
                epoch = j
                have_epoch = 1.0
            d = max(j - epoch, 0.0)
            if d != gap_d:
                gap_d, gap_f = d, phi ** d
            f = gap_f
            eps *= f
            p00 = f * f * p00 + q_ss * (1.0 - f * f)
            p01 *= f
            epoch = max(epoch, j)
            hj = ring[1, s] if int(ring[2, s]) == cur else 0.0
            pred = ring[0, s] + eps + a * hj
            sv = p00 + 2.0 * hj * p01 + hj * hj * p11 + r_var
            z = (y - pred) / math.sqrt(sv)
            z_out[i] = z
            cu_hi = max(0.0, cu_hi + z - ck)
            cu_lo = max(0.0, cu_lo - z - ck)
            p00_now = p00
            if cu_hi > ch or cu_lo > ch or (shew > 0.0 and abs(z) > shew):
                alarm_out[i] = True
                cu_hi = 0.0
                cu_lo = 0.0
                p00_now += fault_var
                sv += fault_var
            e = y - pred
            k1 = (p00_now + hj * p01) / sv
            k2 = (p01 + hj * p11) / sv
            eps += k1 * e
            a += k2 * e
            # P - K H P with H = [1, hj]
            hp0 = p00_now + hj * p01
            hp1 = p01 + hj * p11
            p00 = p00_now - k1 * hp0
            p01 = p01 - k1 * hp1
            p11 = p11 - k2 * hp1
            i += 1
        # decay since the epoch, phi**(k - epoch), kept by multiplication between updates
        if have_epoch == 0.0 or k <= epoch:
            f = 1.0
        elif last_k == k - 1 and last_epoch == epoch:
            f = last_f * phi
        else:
            d = k - epoch
            if d != lag_d:
                lag_d, lag_f = d, phi ** d
            f = lag_f
        last_k, last_epoch, last_f = k, epoch, f
        p00_k = f * f * p00 + q_ss * (1.0 - f * f)
        src[n_lots + 1, m] = f * eps * tot_m
        src[n_lots + 2, m] = p00_k * tot_m
        p00_out[m] = p00_k
        p11_out[m] = p11
        cur_out[m] = cur
        for lot in range(n_lots):
            pot_out[lot, m] = pot[lot]
        pot_out[cur, m] = 1.0 + a
    st[ST_EPS], st[ST_A], st[ST_P00], st[ST_P01], st[ST_P11] = eps, a, p00, p01, p11
    st[ST_EPOCH], st[ST_CUSUM_HI], st[ST_CUSUM_LO] = epoch, cu_hi, cu_lo
    st[ST_GEN], st[ST_HAVE_EPOCH] = lot_gen, have_epoch
    return i


class LineStateEstimator:
    """The monitor's model of the line, driven by plant signals and corrected by the NIR.

    Parameters
    ----------
    spec : LineSpec
        The line's characterisation.
    settings : EstimatorSettings
        Noise model and detection settings.
    nir_timing : (float, float) or None
        NIR ``(latency, integration_time)`` [s]; None: no NIR.
    """

    def __init__(self, spec: LineSpec, settings: EstimatorSettings,
                 nir_timing: tuple[float, float] | None) -> None:
        from cmsim.unitops import ContinuousBlender, TabletPress  # noqa: PLC0415

        self.spec = spec
        self.settings = s = settings
        dt = spec.dt
        self.dt = dt
        self.n_lots = max(1, int(spec.n_api_lots))
        nl = self.n_lots
        self.api_feeder = int(spec.api_feeder)
        self.blender = ContinuousBlender(spec.blender_rtd, dt, nl + 1, speed=spec.blender_speed,
                                         speed_exponent=spec.speed_exponent)
        self.at_probe = spec.probe == "blender_outlet"
        extra = 2 if self.at_probe else 0
        self.press = TabletPress(spec.transfer_rtd, spec.feed_frame_rtd, spec.tablet_mass, dt,
                                 nl + 1 + extra)
        nom = np.asarray(spec.nominal_flows, dtype=np.float64)
        if spec.steady_start:
            u = np.zeros(nl + 1)
            u[0] = nom[self.api_feeder]
            u[nl] = nom.sum() - nom[self.api_feeder]
            self.blender.reset(u)
            self.press.reset(np.concatenate((u, np.zeros(extra))))
        self._gate_buf = np.zeros((nl + 1 + 2, spec.shift))
        if spec.steady_start and spec.shift:
            self._gate_buf[0] = nom[self.api_feeder]
            self._gate_buf[nl] = nom.sum() - nom[self.api_feeder]
        self._pot = np.ones(nl)
        # state vector (ST_* indices)
        self._st = np.zeros(10)
        self._st[ST_P00] = s.model_sd ** 2
        self._phi = math.exp(-dt / s.model_tau) if s.model_tau > 0 else 0.0
        self.nir_timing = nir_timing
        stages = self.blender.n_dispersive + (0 if self.at_probe else self.press.n_dispersive)
        self._probe_offset = 0.5 + 0.5 * stages  # probe row j is at (j + offset) dt
        lag = 0.0 if nir_timing is None else nir_timing[0] + 0.5 * nir_timing[1]
        self._ring = np.zeros((4, int(math.ceil(lag / dt)) + 8 * s.gate_ticks + 64))
        self._nir_queue = (np.empty(0), np.empty(0))
        self._weighed = s.lc_period > 0
        # per feeder: measured discharge at the last weighing, model's cumulative input,
        # extra rate, time of the last weighing, commanded mass since it, have-a-weighing
        self._track = np.zeros((len(nom), 7))
        self._pending = (np.empty(0), np.empty((len(nom), 0)))
        self._min_flow = 0.01 * float(nom.sum())  # NIR readings of emptier streams are skipped
        self._mrt = float(spec.blender_rtd.mean + spec.transfer_rtd.mean
                          + spec.feed_frame_rtd.mean)
        self._last_c = math.nan
        self._speed = spec.blender_speed
        # a gate tick k is decided at (k - G + 1) dt but the model's gate output at k uses
        # inputs up to tick k: harmless when G ticks of input cannot reach the gate (plug
        # flow in the line); otherwise the model runs on inputs delayed by G ticks
        line_rtd = (spec.blender_rtd, spec.transfer_rtd, spec.feed_frame_rtd)
        self._delay = 0 if _dead_time(line_rtd) >= s.gate_ticks * dt else s.gate_ticks
        self._in_buf = np.zeros((nl + 1, self._delay))
        if spec.steady_start and self._delay:
            self._in_buf[0] = nom[self.api_feeder]
            self._in_buf[nl] = nom.sum() - nom[self.api_feeder]

    # ----------------------------------------------------------------- inputs
    def _blend_inflow(self, ch: SignalChunk, gen: np.ndarray) -> np.ndarray:
        """Blender inflow channels [kg/s]: the API by lot generation ``gen`` (the newest and
        the one before it, by the hopper's share), then the rest of the blend."""
        n = ch.k1 - ch.k0
        times, mass = self._pending
        if ch.lc_mass is not None and self._weighed and ch.lc_t.size:
            if times.size:
                times = np.concatenate((times, ch.lc_t))
                mass = np.concatenate((mass, ch.lc_mass), axis=1)
            else:
                times, mass = ch.lc_t, ch.lc_mass
        # a weighing is known from the tick its time stamp falls in
        rows = np.floor(times / self.dt + 1e-9).astype(np.int64) - ch.k0
        x = np.empty((self.n_lots + 1, n))
        used = _inflow_kernel(ch.setpoint, ch.running, self.dt, rows, times, mass, self._track,
                              self.api_feeder, gen, ch.api_lot_share, x)
        self._pending = (times[used:], mass[:, used:])
        if self._delay:
            full = np.concatenate((self._in_buf, x), axis=1)
            self._in_buf = full[:, -self._delay:].copy()
            x = full[:, :-self._delay]
        return x

    # ----------------------------------------------------------------- one chunk
    def step(self, ch: SignalChunk) -> GateEstimate:
        """Estimate the gate content for ticks ``[ch.k0, ch.k1)``."""
        s = self.settings
        n = ch.k1 - ch.k0
        nl = self.n_lots
        if np.isfinite(ch.blender_speed) and self._speed is not None and \
                ch.blender_speed != self._speed:
            self.blender.set_speed(ch.blender_speed)
            self._speed = ch.blender_speed
        if ch.press_running and not self.press.running:
            self.press.start()
        elif not ch.press_running and self.press.running:
            self.press.stop()
        gen = ch.api_lot_gen.astype(np.int64)
        if int(gen.max(initial=0)) >= nl:
            raise ParameterError("api_lot_gen", int(gen.max()), f"must be < n_api_lots = {nl}")
        inflow = self._blend_inflow(ch, gen)
        # rows: the API lots and the rest of the blend at the probe, then the NIR correction
        # and its variance times the flow (they ride with the material from the probe on)
        src = np.empty((nl + 3, n))
        if self.at_probe:
            self.blender.step(inflow, out=src[:nl + 1])
        else:
            src[:nl + 1] = self.press.step(self.blender.step(inflow))
        p00 = np.empty(n)
        p11 = np.empty(n)
        pot = np.empty((nl, n))
        cur = np.empty(n, dtype=np.int64)
        nir_use, nir_j, nir_y, nir_t = self._readings(ch)
        z = np.full(nir_t.size, np.nan)
        alarm = np.zeros(nir_t.size, dtype=np.bool_)
        used = _kf_chunk(ch.k0, 1.0 / self.spec.target, self._min_flow, src, self._pot, gen,
                         nir_use, nir_j, nir_y, self._ring, self._st, self._phi,
                         s.model_sd ** 2, s.nir_sd ** 2, s.lot_sd ** 2, s.fault_sd ** 2,
                         s.cusum_k, s.cusum_h, s.shewhart_L, p00, p11, pot, cur, z, alarm)
        self._nir_queue = (nir_t[used:], nir_y[used:])
        del inflow  # freed before the press allocates
        gate = self._align(self.press.step(src, out=src) if self.at_probe else src)
        return self._gate_estimate(ch, gate, pot, p00, p11, cur, z[:used], nir_t[:used],
                                   alarm[:used])

    def _readings(self, ch: SignalChunk) -> tuple[np.ndarray, ...]:
        """Pending readings with the model tick from which each may be used and the probe
        tick of its window centre."""
        qt, qy = self._nir_queue
        y = ch.nir / self.spec.target
        t = np.concatenate((qt, ch.nir_t)) if qt.size else ch.nir_t
        if qy.size:
            y = np.concatenate((qy, y))
        if self.nir_timing is None or t.size == 0:
            e = np.empty(0)
            return e.astype(np.int64), e.astype(np.int64), e, e
        lat, integ = self.nir_timing
        g = self.settings.gate_ticks
        x = t / self.dt  # scratch: ceil(t / dt - 1e-9), then the window centre (probe ticks)
        x -= 1e-9
        use = np.ceil(x, out=x).astype(np.int64)
        use += g - 1
        np.subtract(t, lat, out=x)
        x -= 0.5 * integ
        x /= self.dt
        x -= self._probe_offset
        return use, np.round(x, out=x).astype(np.int64), y, t

    def _align(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The line's integer alignment shift in front of the gate, without a copy of the
        chunk: the gate ticks of the chunk are the columns of ``head`` (held from the chunks
        before) followed by those of ``body`` (the start of ``y``)."""
        sh = self.spec.shift
        n = y.shape[1]
        if sh == 0:
            return y[:, :0], y
        if n >= sh:
            head = self._gate_buf
            self._gate_buf = y[:, n - sh:].copy()
            return head, y[:, :n - sh]
        full = np.concatenate((self._gate_buf, y), axis=1)
        self._gate_buf = full[:, n:]
        return full[:, :n], y[:, :0]

    def _gate_estimate(self, ch: SignalChunk, gate: tuple[np.ndarray, np.ndarray],
                       pot: np.ndarray, p00: np.ndarray, p11: np.ndarray, cur: np.ndarray,
                       z: np.ndarray, zt: np.ndarray, alarm: np.ndarray) -> GateEstimate:
        n = ch.k1 - ch.k0
        content = np.empty(n)
        sd = np.empty(n)
        content_model = np.empty(n)
        sd_model = np.empty(n)
        timing = self.settings.rtd_uncertainty * self._mrt / self.dt
        head, body = gate
        self._last_c = _gate_kernel(head, body, pot, p00, p11, cur,
                                    1.0 / self.spec.target, timing, self._last_c,
                                    self.settings.model_sd, content, sd, content_model,
                                    sd_model)
        keep = np.isfinite(z)
        return GateEstimate(ch.k0, ch.k1, content, sd, zt[keep], z[keep],
                            [float(t) for t in zt[alarm]], content_model, sd_model)


@njit(cache=True)
def _inflow_kernel(sp, running, dt, rows, times, mass, track, api_f, gen, share,
                   x):  # pragma: no cover - compiled
    """Feeder flows from commands and weighings (mass tracking, see the module docstring),
    split into the blender's channels ``x``. ``track[f]``: the model's cumulative input, extra
    rate, time of the last weighing, whether a weighing was seen, whether the feeder ran at
    the last weighing, sum and number of the weighings of the current rest."""
    nf, n = sp.shape
    nl = x.shape[0] - 1
    j = 0
    m = rows.size
    for t in range(n):
        while j < m and rows[j] <= t:
            for f in range(nf):
                w = mass[f, j]
                if math.isnan(w):
                    continue
                c = -w  # discharged since t = 0
                tr = track[f]
                on = running[f, t] and sp[f, t] > 0.0
                span = times[j] - tr[2]
                if span <= 0.0:  # a second weighing at the same time: follow the scale
                    tr[0] = c
                    tr[1] = 0.0
                elif on:
                    # deliver over the next interval what the scale says the model still owes
                    # beyond the command (a deviation shows one weighing interval late)
                    tr[1] = (c - tr[0]) / span
                else:
                    # at rest nothing is fed: every weighing measures the same discharge, so
                    # their running mean settles the model's book ever more precisely (a
                    # single weighing's error would otherwise stay until the restart)
                    if tr[4] > 0.0:
                        tr[5] = 0.0
                        tr[6] = 0.0
                    tr[1] = 0.0
                    if tr[6] < REST_WEIGHINGS:  # a few weighings settle it (noise / sqrt(n))
                        tr[5] += c
                        tr[6] += 1.0
                        tr[1] = (tr[5] / tr[6] - tr[0]) / span
                tr[4] = 1.0 if on else 0.0
                tr[2] = times[j]
                tr[3] = 1.0
            j += 1
        api = 0.0
        rest = 0.0
        for f in range(nf):
            cmd = sp[f, t] if running[f, t] else 0.0
            # a screw at rest delivers nothing; the model only settles its book (a small
            # correction of either sign)
            v = max(cmd + track[f, 1], 0.0) if cmd > 0.0 else track[f, 1]
            track[f, 0] += v * dt
            if f == api_f:
                api = v
            else:
                rest += v
        for c in range(nl + 1):
            x[c, t] = 0.0
        g = gen[t]
        sh = min(max(share[t], 0.0), 1.0)
        if g > 0:
            x[g, t] = api * sh
            x[g - 1, t] += api * (1.0 - sh)
        else:
            x[0, t] = api
        x[nl, t] = rest
    # weighings stamped at the chunk end apply from the next chunk (its first tick on)
    return j


@njit(cache=True)
def _gate_kernel(head, body, pot, p00, p11, cur, inv_target, timing, last_c, model_sd,
                 content, sd, content_model, sd_model):  # pragma: no cover - compiled
    """Content (fractions of target) and its standard deviation per gate tick, with and
    without the NIR's model-error correction; the gate ticks are the columns of ``head``
    then those of ``body``, rows: API lots, rest, model error x flow, model-error variance x
    flow. ``cur[t]``: the newest lot at tick ``t`` (the one whose potency is uncertain)."""
    nl = pot.shape[0]
    n = content.size
    n_head = head.shape[1]
    prev = last_c
    for t in range(n):
        gate = head if t < n_head else body
        col = t if t < n_head else t - n_head
        tot = 0.0
        api = 0.0
        for c in range(nl):
            tot += gate[c, col]
            api += pot[c, t] * gate[c, col]
        tot += gate[nl, col]
        if tot <= 0.0:
            content[t] = math.nan
            sd[t] = math.sqrt(p00[t]) + math.sqrt(p11[t])
            content_model[t] = math.nan
            sd_model[t] = model_sd + math.sqrt(p11[t])
            continue
        cm = api * inv_target / tot
        c = cm + gate[nl + 1, col] / tot
        h = gate[cur[t], col] * inv_target / tot
        var = max(gate[nl + 2, col] / tot, p00[t])
        s = math.sqrt(var) + abs(h) * math.sqrt(p11[t])
        sm = model_sd + abs(h) * math.sqrt(p11[t])
        if timing > 0.0:
            # the slope of the content the RTDs carry (not the NIR correction's steps)
            slope = abs(cm - prev) if not math.isnan(prev) else 0.0
            s = math.sqrt(s * s + (timing * slope) ** 2)
            sm = math.sqrt(sm * sm + (timing * slope) ** 2)
        content[t] = c
        sd[t] = s
        content_model[t] = cm
        sd_model[t] = sm
        prev = cm
    return prev
