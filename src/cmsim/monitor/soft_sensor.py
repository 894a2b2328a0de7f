"""RTD soft sensor: predicted composition at the diverter from feeder flow data.

docs/monitor.md#triggers (trigger 2, method A): each component's feeder mass flow is passed
through the feeder-to-diverter RTD kernel (all components see the same RTD), and the
predicted API mass fraction is the ratio of the filtered flows. Streaming with
:class:`cmsim.rtd.Convolver`, so any chunking gives the one-shot result; several credible
RTD models (the envelope Theta) can be run side by side, giving one prediction row each, the
input :func:`cmsim.monitor.windows.predicted_window` expects.

Time stamps: feeder flows are tick averages (zero-order hold, tick ``k`` covers
``[k dt, (k+1) dt)``); with the bin kernel ``w[j] = F((j+1)dt) - F(j dt)`` output ``k`` is the
exact outflow at time ``(k+1) dt``, which is the time the sensor reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

from cmsim._validate import finite_array, non_negative, positive, probability
from cmsim.errors import ParameterError
from cmsim.rtd.convolution import Convolver
from cmsim.rtd.models import CSTR, PFR, RTDModel, Series, TanksInSeries

__all__ = ["EMPTY_FLOW", "RTDSoftSensor", "midpoint_kernel"]

#: Predicted total flow [kg/s] at or below which the line counts as empty (content NaN).
EMPTY_FLOW = 1e-12


_KERNEL_CACHE: dict[tuple, np.ndarray] = {}


def _cached(key: tuple, build: Any) -> np.ndarray:
    hit = _KERNEL_CACHE.get(key)
    if hit is None:
        hit = np.asarray(build(), dtype=np.float64)
        hit.setflags(write=False)
        if len(_KERNEL_CACHE) < 256:
            _KERNEL_CACHE[key] = hit
    return hit


def midpoint_kernel(model: RTDModel, dt: float, tail: float = 1e-12) -> np.ndarray:
    """Tick-average to tick-average kernel ``w[j] = F((j+1/2)dt) - F((j-1/2)dt)``, ``w[0]=F(dt/2)``.

    Parameters
    ----------
    model : RTDModel
        The RTD.
    dt : float
        Tick [s].
    tail : float
        Cut where ``sf((j+1/2) dt) < tail`` [-].

    Returns
    -------
    ndarray
        Kernel [-] (a fresh copy; kernels are cached per model parameter set); its sum is
        ``1 - sf`` at the cut and its mean is the RTD mean (to the cut).
    """
    d = positive("dt", dt)
    return _midpoint(model, d, float(tail)).copy()


def _midpoint(model: RTDModel, d: float, tail: float) -> np.ndarray:
    def build() -> np.ndarray:
        hi = float(model.quantile(1.0 - min(max(tail, 1e-15), 1e-3)))
        n = int(math.ceil(hi / d)) + 2
        edges = (np.arange(n + 1) - 0.5) * d
        edges[0] = 0.0
        return np.diff(np.asarray(model.cdf(edges), dtype=np.float64))

    return _cached(("mid", repr(model.params), type(model).__name__, d, tail), build)


def _bin(model: RTDModel, d: float, tail: float) -> np.ndarray:
    return _cached(("bin", repr(model.params), type(model).__name__, d, tail),
                   lambda: np.asarray(model.kernel(d, tail)))


# ---------------------------------------------------------------------------------------------
# exact recursive form of the kernels of tank chains (PFR + CSTR + integer tanks-in-series)
# ---------------------------------------------------------------------------------------------

#: Largest number of tanks of a chain run as a state-space recursion (else the FIR path).
_MAX_CHAIN_TANKS = 12


def _chain(model: RTDModel) -> tuple[float, tuple[float, ...]] | None:
    """``(total plug-flow delay [s], tank rates [1/s])`` of a chain of PFR, CSTR and integer
    tanks-in-series stages (in flow order), or None for any other model."""
    stages = model.stages if isinstance(model, Series) else (model,)
    delay = 0.0
    rates: list[float] = []
    for m in stages:
        if isinstance(m, PFR):
            delay += m.delay
        elif isinstance(m, CSTR):
            rates.append(1.0 / m.tau)
        elif isinstance(m, TanksInSeries) and float(m.n).is_integer():
            rates += [1.0 / m.stage_scale] * int(m.n)
        else:
            return None
    if not rates or len(rates) > _MAX_CHAIN_TANKS:
        return None
    return delay, tuple(rates)


_SS_CACHE: dict[tuple, tuple | None] = {}


def _state_space(model: RTDModel, dt: float, offset: float) -> tuple | None:
    """Exact discrete state-space form of the kernel ``w[j] = F((j+c) dt) - F((j+c-1) dt)``
    (``c = offset``: 1/2 mid-point, 1 bin) of a tank chain, cached per parameter set.

    The chain ``dM_i/dt = r_(i-1) M_(i-1) - r_i M_i`` fed at a constant rate over each tick
    (zero-order hold) and read (outflow ``r_N M_N``) at ``(k + theta) dt`` gives
    ``v[i] = G((i+theta) dt) - G((i-1+theta) dt)`` (``G``: the chain's CDF), and
    ``w[j] = v[j - m]`` for the delay ``D``: ``c - D/dt = theta - m``, ``theta`` in (0, 1].
    Returns ``(m, phi, gamma, c_theta, d_theta)`` (``x_(k+1) = phi x_k + gamma u_k``,
    ``y_k = c_theta x_k + d_theta u_k``) or None when the model is not a chain.
    """
    key = (type(model).__name__, repr(model.params), dt, offset)
    if key in _SS_CACHE:
        return _SS_CACHE[key]
    hit = None
    chain = _chain(model)
    if chain is not None:
        from scipy.linalg import expm  # noqa: PLC0415

        delay, rates = chain
        n = len(rates)
        shift = offset - delay / dt
        fl = math.floor(shift)
        theta, m = shift - fl, -fl
        if theta <= 1e-12:  # read at the tick end: v[0] = G(0) = 0 moves to the next tick
            theta, m = 1.0, m + 1
        aug = np.zeros((n + 1, n + 1))
        for i, r in enumerate(rates):
            aug[i, i] = -r
            if i + 1 < n:
                aug[i + 1, i] = r
        aug[0, n] = 1.0  # the feed enters the first tank
        full = expm(aug * dt)
        part = expm(aug * (theta * dt))
        out = np.zeros(n)
        out[-1] = rates[-1]
        phi = np.ascontiguousarray(np.maximum(full[:n, :n], 0.0))
        gamma = np.maximum(full[:n, n], 0.0)
        c_theta = np.maximum(out @ part[:n, :n], 0.0)
        d_theta = max(float(out @ part[:n, n]), 0.0)
        hit = (int(m), phi, gamma, c_theta, d_theta)
    if len(_SS_CACHE) < 256:
        _SS_CACHE[key] = hit
    return hit


@njit(cache=True)
def _ss8(x, y, phi, gamma, c, d, state, x_off, y_off):  # pragma: no cover - compiled
    """Rows of ``x`` through an (up to) 8-state lower-triangular recursion (zero-padded
    ``phi``/``gamma``/``c``; see ``_ss_run``): states in registers, sums as balanced trees
    (short loop-carried latency); input ``x - x_off``, output ``+ y_off`` per row."""
    rows, n = x.shape
    g0, g1, g2, g3 = gamma[0], gamma[1], gamma[2], gamma[3]
    g4, g5, g6, g7 = gamma[4], gamma[5], gamma[6], gamma[7]
    c0, c1, c2, c3, c4, c5, c6, c7 = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
    p00 = phi[0, 0]
    p10, p11 = phi[1, 0], phi[1, 1]
    p20, p21, p22 = phi[2, 0], phi[2, 1], phi[2, 2]
    p30, p31, p32, p33 = phi[3, 0], phi[3, 1], phi[3, 2], phi[3, 3]
    p40, p41, p42, p43, p44 = phi[4, 0], phi[4, 1], phi[4, 2], phi[4, 3], phi[4, 4]
    p50, p51, p52, p53, p54, p55 = phi[5, 0], phi[5, 1], phi[5, 2], phi[5, 3], phi[5, 4], phi[5, 5]
    p60, p61, p62, p63 = phi[6, 0], phi[6, 1], phi[6, 2], phi[6, 3]
    p64, p65, p66 = phi[6, 4], phi[6, 5], phi[6, 6]
    p70, p71, p72, p73 = phi[7, 0], phi[7, 1], phi[7, 2], phi[7, 3]
    p74, p75, p76, p77 = phi[7, 4], phi[7, 5], phi[7, 6], phi[7, 7]
    for r in range(rows):
        xr, yr, st = x[r], y[r], state[r]
        xo, yo = x_off[r], y_off[r]
        s0, s1, s2, s3, s4, s5, s6, s7 = st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7]
        for k in range(n):
            u = xr[k] - xo
            yka = (((d * u + c0 * s0) + (c1 * s1 + c2 * s2)) + c3 * s3)
            ykb = ((c4 * s4 + c5 * s5) + (c6 * s6 + c7 * s7))
            yk = yka + ykb
            yr[k] = yk + yo
            t7a = (((g7 * u + p70 * s0) + (p71 * s1 + p72 * s2)) + p73 * s3)
            t7b = ((p74 * s4 + p75 * s5) + (p76 * s6 + p77 * s7))
            t7 = t7a + t7b
            t6a = ((g6 * u + p60 * s0) + (p61 * s1 + p62 * s2))
            t6b = ((p63 * s3 + p64 * s4) + (p65 * s5 + p66 * s6))
            t6 = t6a + t6b
            t5a = ((g5 * u + p50 * s0) + (p51 * s1 + p52 * s2))
            t5b = ((p53 * s3 + p54 * s4) + p55 * s5)
            t5 = t5a + t5b
            t4a = ((g4 * u + p40 * s0) + p41 * s1)
            t4b = ((p42 * s2 + p43 * s3) + p44 * s4)
            t4 = t4a + t4b
            t3a = ((g3 * u + p30 * s0) + p31 * s1)
            t3b = p32 * s2 + p33 * s3
            t3 = t3a + t3b
            t2 = ((g2 * u + p20 * s0) + (p21 * s1 + p22 * s2))
            t1 = ((g1 * u + p10 * s0) + p11 * s1)
            t0 = g0 * u + p00 * s0
            s0, s1, s2, s3, s4, s5, s6, s7 = t0, t1, t2, t3, t4, t5, t6, t7
        st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7] = s0, s1, s2, s3, s4, s5, s6, s7


@njit(cache=True)
def _ss_run(x, y, phi, gamma, c, d, state, x_off, y_off):  # pragma: no cover - compiled
    """``y[r, k] = c . s_r + d u + y_off[r]``, ``s_r <- phi s_r + gamma u`` with
    ``u = x[r, k] - x_off[r]`` for every row (lower-triangular ``phi``: updated in place from
    the last state down); any state size."""
    rows, n = x.shape
    ns = phi.shape[0]
    for r in range(rows):
        s = state[r]
        xr = x[r]
        yr = y[r]
        xo = x_off[r]
        yo = y_off[r]
        for k in range(n):
            u = xr[k] - xo
            acc = d * u
            for j in range(ns):
                acc += c[j] * s[j]
            yr[k] = acc + yo
            for i in range(ns - 1, -1, -1):
                a = gamma[i] * u
                for j in range(i + 1):
                    a += phi[i, j] * s[j]
                s[i] = a


@njit(cache=True)
def _content(y, api, target, empty, out):  # pragma: no cover - compiled
    """``out[i, k] = y[i, api, k] / sum_c y[i, c, k] / target`` (NaN where the sum <= empty)."""
    n_models, n_comp, m = y.shape
    for i in range(n_models):
        for k in range(m):
            total = 0.0
            for c in range(n_comp):
                total += y[i, c, k]
            out[i, k] = y[i, api, k] / total / target if total > empty else np.nan


@njit(cache=True)
def _cascade8(x, y, a, q, state, x_off, y_off):  # pragma: no cover - compiled
    """Cascade form of a tank-chain kernel: ``y = Q(z^-1) / prod_i (1 - a_i z^-1) u``, up to
    8 first-order sections (``a_i = 0`` pads: identity) and a 9-tap FIR ``q`` on the last
    section's output, all in registers; ``state[r]`` = 8 section states and the last 8
    outputs of the last section (newest first). Input ``x - x_off``, output ``+ y_off``."""
    rows, n = x.shape
    a0, a1, a2, a3 = a[0], a[1], a[2], a[3]
    a4, a5, a6, a7 = a[4], a[5], a[6], a[7]
    q0, q1, q2, q3, q4 = q[0], q[1], q[2], q[3], q[4]
    q5, q6, q7, q8 = q[5], q[6], q[7], q[8]
    for r in range(rows):
        xr, yr, st = x[r], y[r], state[r]
        xo, yo = x_off[r], y_off[r]
        s0, s1, s2, s3 = st[0], st[1], st[2], st[3]
        s4, s5, s6, s7 = st[4], st[5], st[6], st[7]
        h1, h2, h3, h4 = st[8], st[9], st[10], st[11]
        h5, h6, h7, h8 = st[12], st[13], st[14], st[15]
        for k in range(n):
            s0 = a0 * s0 + (xr[k] - xo)
            s1 = a1 * s1 + s0
            s2 = a2 * s2 + s1
            s3 = a3 * s3 + s2
            s4 = a4 * s4 + s3
            s5 = a5 * s5 + s4
            s6 = a6 * s6 + s5
            s7 = a7 * s7 + s6
            f0 = (q0 * s7 + q1 * h1) + (q2 * h2 + q3 * h3)
            f1 = (q4 * h4 + q5 * h5) + (q6 * h6 + (q7 * h7 + q8 * h8))
            yr[k] = (f0 + f1) + yo
            h8, h7, h6, h5, h4, h3, h2, h1 = h7, h6, h5, h4, h3, h2, h1, s7
        st[0], st[1], st[2], st[3] = s0, s1, s2, s3
        st[4], st[5], st[6], st[7] = s4, s5, s6, s7
        st[8], st[9], st[10], st[11] = h1, h2, h3, h4
        st[12], st[13], st[14], st[15] = h5, h6, h7, h8


_CASCADE_CACHE: dict[tuple, tuple | None] = {}


def _cascade(model: RTDModel, dt: float, offset: float, ss: tuple, w: np.ndarray
             ) -> tuple | None:
    """Cascade form ``(a, q)`` (8 sections, 9 taps, zero-padded) of the state-space kernel
    ``ss``, or None: more than 8 tanks, a negative numerator tap (the sum of the taps would
    cancel) or an impulse response off the kernel ``w`` by more than 1e-14. Cached."""
    key = (type(model).__name__, repr(model.params), dt, offset)
    if key in _CASCADE_CACHE:
        return _CASCADE_CACHE[key]
    _, phi, gamma, c, d = ss
    n = phi.shape[0]
    hit = None
    if n <= 8:
        poles = np.exp(-np.asarray(_chain(model)[1]) * dt)  # the diagonal of phi
        # impulse response of the state-space form, then the numerator Q = v * prod(1 - a z^-1)
        length = n + 41
        v = np.empty(length)
        x = gamma.copy()
        v[0] = d
        for k in range(1, length):
            v[k] = c @ x
            x = phi @ x
        den = np.array([1.0])
        for a_i in poles:
            den = np.convolve(den, [1.0, -a_i])
        q = np.convolve(v, den)[:n + 1]
        if q.min() >= 0.0:
            a8 = np.zeros(8)
            a8[:n] = poles
            q9 = np.zeros(9)
            q9[:n + 1] = q
            imp = np.zeros((1, w.size))
            imp[0, 0] = 1.0
            out = np.empty_like(imp)
            zero = np.zeros(1)
            _cascade8(imp, out, a8, q9, np.zeros((1, 16)), zero, zero)
            if np.max(np.abs(out[0] - w)) <= 1e-14:
                hit = (a8, q9)
    if len(_CASCADE_CACHE) < 256:
        _CASCADE_CACHE[key] = hit
    return hit


class _ChainFilter:
    """Streaming exact recursion of a tank-chain kernel (interface of ``Convolver.step``)."""

    def __init__(self, ss: tuple, rows: int, cascade: tuple | None = None) -> None:
        _, phi, gamma, c, self._d = ss
        n = phi.shape[0]
        self._rows = rows
        self._cascade = cascade
        if cascade is not None:  # the fastest exact form (positive numerator, validated)
            self.reset()
            return
        self._run = _ss_run
        if n < 8:  # zero-padded to the 8-state register kernel (padding states stay 0)
            self._run = _ss8
            phi8 = np.zeros((8, 8))
            phi8[:n, :n] = phi
            phi, gamma, c = phi8, np.pad(gamma, (0, 8 - n)), np.pad(c, (0, 8 - n))
        elif n == 8:
            self._run = _ss8
        self._phi, self._gamma, self._c = phi, gamma, c
        self._rows = rows
        self.reset()

    def reset(self) -> None:
        size = 16 if self._cascade is not None else self._phi.shape[0]
        self._state = np.zeros((self._rows, size))

    def step(self, x: np.ndarray, offset: np.ndarray | None = None,
             out: np.ndarray | None = None) -> np.ndarray:
        """Filter a chunk ``(rows, n)``; with ``offset`` (per row) the filter sees
        ``x - offset`` and returns its output plus ``offset`` (deviation form in one pass);
        ``out``: where to write it (rows contiguous)."""
        y = np.empty(x.shape) if out is None else out
        off = np.zeros(self._rows) if offset is None else offset
        if self._cascade is not None:
            _cascade8(np.ascontiguousarray(x), y, self._cascade[0], self._cascade[1],
                      self._state, off, off)
            return y
        self._run(np.ascontiguousarray(x), y, self._phi, self._gamma, self._c, self._d,
                  self._state, off, off)
        return y


class RTDSoftSensor:
    """Predicted API content at the diverter from component feeder flows.

    Parameters
    ----------
    model : RTDModel or sequence of RTDModel
        Feeder-to-diverter RTD; several models give one prediction row each (envelope).
    dt : float
        Tick of the flow data [s], > 0.
    api_index : int
        Row of the API component in the flow chunks.
    n_components : int
        Number of component rows in the flow chunks, >= 1.
    target_fraction : float, optional
        Target API mass fraction; content is reported as fraction of target (1.0 = 100 %
        LC). Default: the API fraction of ``initial_flows`` (required then).
    initial_flows : array_like, shape (n_components,), optional
        Constant flows [kg/s] before time 0: the line starts full at steady state. Without
        it the line starts empty and the content is NaN until material arrives.
    tail : float
        Kernel truncation [-] (see ``RTDModel.kernel``).
    timing : {"point", "tick_average"}
        Output convention (module docstring).
    empty_flow : float
        Predicted total flow [kg/s] at or below which the content is NaN (empty line).

    Attributes
    ----------
    lead_ticks : int
        Outputs known ahead of the input (leading zero taps common to all kernels) [ticks].

    Examples
    --------
    >>> from cmsim import rtd
    >>> s = RTDSoftSensor(rtd.CSTR(30.0), dt=1.0, initial_flows=[2 / 3600, 18 / 3600])
    >>> t, c = s.step(np.tile([[2 / 3600], [18 / 3600]], 5))
    >>> t.tolist(), np.round(c, 12).tolist()
    ([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0])
    """

    def __init__(self, model: RTDModel | Sequence[RTDModel], dt: float, *, api_index: int = 0,
                 n_components: int = 2, target_fraction: float | None = None,
                 initial_flows: Any = None, tail: float = 1e-9,
                 timing: str = "point", empty_flow: float = EMPTY_FLOW) -> None:
        self.dt = positive("dt", dt)
        if timing not in ("point", "tick_average"):
            raise ParameterError("timing", timing, "must be 'point' or 'tick_average'")
        self.timing = timing
        self.empty_flow = non_negative("empty_flow", empty_flow)
        self.tail = probability("tail", tail)
        if isinstance(n_components, bool) or int(n_components) != n_components \
                or n_components < 1:
            raise ParameterError("n_components", n_components, "must be an int >= 1")
        self.n_components = int(n_components)
        if isinstance(api_index, bool) or int(api_index) != api_index \
                or not 0 <= api_index < self.n_components:
            raise ParameterError("api_index", api_index,
                                 f"must be an int in [0, {self.n_components})")
        self.api_index = int(api_index)
        if initial_flows is None:
            self._steady = np.zeros(self.n_components)
        else:
            self._steady = finite_array("initial_flows", initial_flows, ndim=1)
            if self._steady.shape != (self.n_components,) or self._steady.min() < 0:
                raise ParameterError("initial_flows", initial_flows,
                                     f"must be {self.n_components} non-negative flows")
        if target_fraction is None:
            total = self._steady.sum()
            if not total > 0:
                raise ParameterError("target_fraction", None,
                                     "required when initial_flows is not given (or all zero)")
            target_fraction = self._steady[self.api_index] / total
        self.target_fraction = probability("target_fraction", target_fraction)
        self._k = 0          # input ticks processed
        self._next = 0       # next output index to emit
        self._hist = np.zeros((self.n_components, 0))  # recent input deviations
        self._pending: np.ndarray | None = None       # outputs computed at a model change
        self.set_models(model)

    @property
    def ticks(self) -> int:
        """Number of input ticks processed so far."""
        return self._k

    def set_models(self, model: RTDModel | Sequence[RTDModel]) -> None:
        """Use new RTD model(s) from now on (e.g. after a blender speed change).

        The new kernels (cached per parameter set) are applied to the stored input history;
        outputs already returned are not changed (module docstring).

        Parameters
        ----------
        model : RTDModel or sequence of RTDModel
            Feeder-to-diverter RTD(s); the number of rows may change.
        """
        models = [model] if isinstance(model, RTDModel) else list(model)
        if not models or not all(isinstance(m, RTDModel) for m in models):
            raise ParameterError("model", model, "must be an RTD model or a non-empty sequence "
                                                 "of RTD models")
        make = _midpoint if self.timing == "tick_average" else _bin
        kernels = [make(m, self.dt, self.tail) for m in models]
        firsts = [int(np.argmax(w > 1e-15)) if np.any(w > 1e-15) else 0 for w in kernels]
        d0 = min(firsts)
        self.models = tuple(models)
        self.lead_ticks = d0
        self._kernels = [w[d0:] for w in kernels]
        offset = 0.5 if self.timing == "tick_average" else 1.0
        self._filters = []
        for m, w, first in zip(models, self._kernels, firsts, strict=True):
            # a tank chain whose kernel starts where this sensor's outputs start runs as its
            # exact recursion (O(states^2) per tick instead of a long convolution)
            ss = _state_space(m, self.dt, offset)
            if ss is not None and ss[0] == first == d0:
                cas = _cascade(m, self.dt, offset, ss, w)
                self._filters.append(_ChainFilter(ss, self.n_components, cas))
            else:
                self._filters.append(Convolver(w, batch=self.n_components))
        self._hlen = max(self._hlen if hasattr(self, "_hlen") else 0,
                         max(w.size for w in self._kernels))
        self._pending = None
        if self._k > 0:
            # prime the new filters with the history; keep outputs not returned yet
            h = self._hist
            pad = np.zeros((self.n_components, max(0, self._hlen - h.shape[1])))
            h = np.concatenate((pad, h), axis=1)
            first_out = self._k - h.shape[1] + d0
            y = np.stack([f.step(h) for f in self._filters])
            keep = max(0, self._next - first_out)
            self._pending = y[:, :, keep:]
            self._next = max(self._next, first_out + keep)
        self._hist = self._hist[:, -self._hlen:] if self._hlen else self._hist[:, :0]

    def reset(self) -> None:
        """Return to the initial state (tick 0)."""
        for f in self._filters:
            f.reset()
        self._k = 0
        self._next = 0
        self._hist = np.zeros((self.n_components, 0))
        self._pending = None

    def predict_flows(self, flows: Any) -> np.ndarray:
        """Filter one chunk of component flows.

        Parameters
        ----------
        flows : array_like, shape (n_components, n)
            Feeder mass flows [kg/s], tick averages.

        Returns
        -------
        ndarray, shape (n_models, n_components, m)
            Predicted component flows at the diverter [kg/s] for the outputs determined by
            the input so far and not returned before (``m = n``, plus ``lead_ticks`` on the
            first call).
        """
        x = np.asarray(flows, dtype=np.float64)
        if x.ndim != 2 or not np.isfinite(x.sum()):  # a NaN or inf makes the sum non-finite
            x = finite_array("flows", flows, ndim=2)  # names the problem (or it was overflow)
        if x.shape[0] != self.n_components:
            raise ParameterError("flows", f"array of shape {x.shape}",
                                 f"must have {self.n_components} component rows")
        steady = self._steady
        n = x.shape[1]
        # deviation form: a line full at steady state stays exactly there for steady input;
        # the chain filters take the deviation and add the steady flows back in their pass
        first_out = self._k + self.lead_ticks  # output index of y[..., 0]
        chains = all(isinstance(f, _ChainFilter) for f in self._filters)
        if chains and self._pending is None and self._next <= first_out:
            # one output array: the initial-state outputs, then the filters write behind them
            pre = first_out - self._next
            out = np.empty((len(self._filters), self.n_components, pre + n))
            out[:, :, :pre] = steady[None, :, None]
            for i, f in enumerate(self._filters):
                f.step(x, steady, out=out[i, :, pre:])
            self._k += n
            self._next = first_out + n
            self._keep_history(x)
            return out
        if chains:
            y = np.stack([f.step(x, steady) for f in self._filters])
        else:
            dev = x - steady[:, None]
            y = np.stack([f.step(dev) for f in self._filters])
            y += steady[None, :, None]
        parts = []
        if self._pending is not None:
            parts.append(self._pending + steady[None, :, None])
            self._pending = None
        if self._next < first_out:  # outputs before the first filtered one: initial state
            parts.append(np.broadcast_to(steady[None, :, None], (
                len(self._filters), self.n_components, first_out - self._next)))
        skip = max(0, self._next - first_out)
        parts.append(y[:, :, skip:])
        out = np.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]
        self._k += n
        self._next = max(self._next, first_out + n)
        self._keep_history(x)
        return out

    def _keep_history(self, x: np.ndarray) -> None:
        """Keep the last ``hlen`` input deviations (to prime new filters at a model change)."""
        if self._hlen:
            tail = x[:, -self._hlen:] - self._steady[:, None]
            self._hist = np.concatenate((self._hist, tail), axis=1)[:, -self._hlen:]

    def step(self, flows: Any) -> tuple[np.ndarray, np.ndarray]:
        """Predicted API content for one chunk of feeder flows.

        Parameters
        ----------
        flows : array_like, shape (n_components, n)
            Feeder mass flows [kg/s], tick averages.

        Returns
        -------
        t : ndarray, shape (m,)
            Output times at the diverter [s] (``(k+1) dt`` or ``(k+1/2) dt``, module
            docstring), for every output determined so far and not returned before.
        content : ndarray, shape (m,) or (n_models, m)
            Predicted API mass fraction divided by the target [-]; NaN where the predicted
            total flow is at most ``empty_flow`` (empty line).
        """
        y = self.predict_flows(flows)
        m = y.shape[-1]
        k_out = self._next - m
        content = np.empty((y.shape[0], m))
        _content(y, self.api_index, self.target_fraction, self.empty_flow, content)
        off = 1.0 if self.timing == "point" else 0.5
        t = np.arange(k_out, k_out + m, dtype=np.float64)
        t += off
        t *= self.dt
        return t, (content[0] if len(self.models) == 1 else content)
