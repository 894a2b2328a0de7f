"""Measurement models: NIR (PAT) probe, feeder load cell, tablet weight
(docs/monitor.md#nir-measurement-model).

Each sensor turns a true signal given on the simulation grid into sampled, noisy readings.
They are streaming objects: call ``measure`` with consecutive chunks of the true signal and
every reading is produced exactly once, in the chunk where the data it needs is complete.
Readings and their random numbers depend only on the sample index, never on the chunking
(noise and dropouts come from separate child streams of the ``rng`` given).

Between grid points the true signal is taken as linear in time (the grid values are
instantaneous values), so window averages are exact integrals of that interpolant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

from cmsim._validate import finite_array, non_negative, positive, probability
from cmsim.errors import ParameterError

__all__ = ["LoadCellBank", "LoadCellSignal", "NIRSensor", "TabletWeightSignal",
           "slopes_of_weighings"]


# ---------------------------------------------------------------------------------------------
# compiled kernels (one pass over the history per chunk; sample times are increasing)
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _grid_problem(t, v, prev_last):  # pragma: no cover - compiled
    """First problem of a chunk: 1 = non-finite t, 2 = non-finite v, 3 = not increasing,
    4 = not after ``prev_last``; with its index (0, -1 when fine)."""
    for i in range(t.size):
        if not math.isfinite(t[i]):
            return 1, i
        if not math.isfinite(v[i]):
            return 2, i
        if i > 0 and not t[i] > t[i - 1]:
            return 3, i
    if t.size and not t[0] > prev_last:
        return 4, 0
    return 0, -1


@njit(cache=True)
def _interp_sorted(t, v, x, out):  # pragma: no cover - compiled
    """``np.interp(x, t, v)`` for increasing ``x`` (a merge walk); NaN outside ``t``."""
    n = t.size
    j = 0
    for i in range(x.size):
        xi = x[i]
        if n == 0 or xi < t[0] or xi > t[n - 1]:
            out[i] = np.nan
            continue
        if xi == t[n - 1]:
            out[i] = v[n - 1]
            continue
        while t[j + 1] <= xi:
            j += 1
        if xi == t[j]:  # on a grid point (the usual case of sampled grids)
            out[i] = v[j]
        else:
            out[i] = (v[j + 1] - v[j]) / (t[j + 1] - t[j]) * (xi - t[j]) + v[j]


@njit(cache=True)
def _window_means(t, v, ts, lag, width, out):  # pragma: no cover - compiled
    """Exact means of the piecewise-linear ``(t, v)`` over ``[a_i, b_i]``, ``b_i = ts_i - lag``,
    ``a_i = b_i - width`` (increasing ``ts``; NaN when not covered; the value at ``b`` for a
    zero-width window).

    The trapezoid integral up to each knot is accumulated along the walk of each end (the
    same additions in the same order as a stored cumulative sum, without storing it).
    """
    n = t.size
    ja = 0
    jb = 0
    cum_a = 0.0
    cum_b = 0.0
    for i in range(ts.size):
        bi = ts[i] - lag
        ai = bi - width
        if ai < t[0] or bi > t[n - 1]:
            out[i] = np.nan
            continue
        while ja < n - 2 and t[ja + 1] <= ai:
            ja += 1
            cum_a = cum_a + 0.5 * (v[ja] + v[ja - 1]) * (t[ja] - t[ja - 1])
        while jb < n - 2 and t[jb + 1] <= bi:
            jb += 1
            cum_b = cum_b + 0.5 * (v[jb] + v[jb - 1]) * (t[jb] - t[jb - 1])
        width = bi - ai
        if width > 0:
            s = ai - t[ja]
            ia = cum_a + v[ja] * s + (v[ja + 1] - v[ja]) * s * s / (2.0 * (t[ja + 1] - t[ja]))
            s = bi - t[jb]
            ib = cum_b + v[jb] * s + (v[jb + 1] - v[jb]) * s * s / (2.0 * (t[jb + 1] - t[jb]))
            out[i] = (ib - ia) / width
        elif bi == t[n - 1]:
            out[i] = v[n - 1]
        else:
            out[i] = (v[jb + 1] - v[jb]) / (t[jb + 1] - t[jb]) * (bi - t[jb]) + v[jb]


@njit(cache=True)
def _slopes(x, w, flow):  # pragma: no cover - compiled
    """``flow[i] = -sum_j w_j x[i + j]`` (tap-major loops: independent samples vectorise)."""
    m = flow.size
    for i in range(m):
        flow[i] = 0.0
    for j in range(w.size):
        wj = w[j]
        xs = x[j:j + m]
        for i in range(m):
            flow[i] -= wj * xs[i]


@njit(cache=True)
def _bank_weighings(flows, dt, m0, e0, period, noise, sd, mass):  # pragma: no cover - compiled
    """Hopper weighings at tick ends ``e0 + j period`` of the chunk from the tick flows.

    ``mass[c, j] = m0[c] - dt * cumsum(flows[c])[e]`` (NaN for ``e < 0``: before the first
    tick end) plus ``sd * noise[c, j]`` when ``noise`` has columns; ``m0`` becomes the net
    mass at the end of the chunk. ``flows``: a 2-D array or a tuple of equal 1-D rows.

    The running sums of up to four cells advance together (independent addition chains
    overlap in the pipeline); each cell's sum sees the same additions in the same order as
    alone. A group short of four repeats its last cell (computed, not stored).
    """
    n_cells = len(flows)
    n = flows[0].size
    ns = mass.shape[1]
    for c in range(0, n_cells, 4):
        last = n_cells - 1
        c1, c2, c3 = min(c + 1, last), min(c + 2, last), min(c + 3, last)
        r0, r1, r2, r3 = flows[c], flows[c1], flows[c2], flows[c3]
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        k = 0
        for j in range(ns):
            e = e0 + j * period
            while k <= e:
                s0 += r0[k]
                s1 += r1[k]
                s2 += r2[k]
                s3 += r3[k]
                k += 1
            if e >= 0:
                mass[c, j] = m0[c] - s0 * dt
                mass[c1, j] = m0[c1] - s1 * dt
                mass[c2, j] = m0[c2] - s2 * dt
                mass[c3, j] = m0[c3] - s3 * dt
            else:
                mass[c, j] = np.nan
                mass[c1, j] = np.nan
                mass[c2, j] = np.nan
                mass[c3, j] = np.nan
        while k < n:
            s0 += r0[k]
            s1 += r1[k]
            s2 += r2[k]
            s3 += r3[k]
            k += 1
        m0[c3] = m0[c3] - s3 * dt  # repeats of the last cell write the same value (last first)
        m0[c2] = m0[c2] - s2 * dt if c2 < c3 else m0[c2]
        m0[c1] = m0[c1] - s1 * dt if c1 < c2 else m0[c1]
        m0[c] = m0[c] - s0 * dt if c < c1 else m0[c]
    if noise.shape[1]:
        for c in range(n_cells):
            for j in range(ns):
                mass[c, j] += sd * noise[c, j]


#: Samples per block of the in-place flow-estimate pass.
_BLOCK = 512


@njit(cache=True)
def _bank_slopes(recent, buf, w):  # pragma: no cover - compiled
    """Least-squares flow estimates over ``recent[c] ++ buf[c]``, written over the weighings in
    ``buf`` (``recent`` holds the last ``N - 1`` weighings, NaN before the first one, and is
    advanced). Outputs are computed from the last down: output ``i`` reads weighings ``<= i``,
    which are overwritten only later."""
    n_cells, ns = buf.shape
    nw = w.size
    nr = nw - 1
    tail = np.empty(nr)
    blk = np.empty(_BLOCK + nr)
    out = np.empty(_BLOCK)
    for c in range(n_cells):
        row = buf[c]
        rec = recent[c]
        # the next window history: the last nr weighings of recent ++ buf
        for q in range(nr):
            p = ns + q  # position in recent ++ buf of entry q of the new history
            tail[q] = row[p - nr] if p >= nr else rec[p]
        # windows inside buf, in blocks from the last down: each block's inputs are copied to
        # a small buffer first, then its outputs are summed tap by tap (vectorised)
        hi = ns
        while hi > nr:
            lo = max(nr, hi - _BLOCK)
            m = hi - lo
            for q in range(m + nr):
                blk[q] = row[lo - nr + q]
            for i in range(m):
                out[i] = 0.0
            for j in range(nw):
                wj = w[j]
                for i in range(m):
                    out[i] += wj * blk[i + j]
            for i in range(m):
                row[lo + i] = -out[i]
            hi = lo
        for i in range(min(nr, ns) - 1, -1, -1):  # windows reaching into the history
            acc = 0.0
            for j in range(nw):
                p = i + j  # position in recent ++ buf
                acc += w[j] * (row[p - nr] if p >= nr else rec[p])
            row[i] = -acc
        for q in range(nr):
            rec[q] = tail[q]


def _float_1d(name: str, value: Any) -> np.ndarray:
    """``value`` as a 1-D float64 array (finiteness is checked in the compiled pass)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(name, value, f"must be an array of real numbers ({exc})") from None
    if arr.ndim != 1:
        raise ParameterError(name, f"array of shape {arr.shape}", "must have ndim in (1,)")
    return arr


class _Stream:
    """A child random stream, created on first use (the same stream as ``Generator.spawn``
    at construction would give: its seed sequence is spawned then)."""

    __slots__ = ("_bitgen", "_gen", "_seq")

    def __init__(self, bitgen: type, seq: np.random.SeedSequence) -> None:
        self._bitgen, self._seq, self._gen = bitgen, seq, None

    def __call__(self) -> np.random.Generator:
        if self._gen is None:
            self._gen = np.random.Generator(self._bitgen(self._seq))
        return self._gen


def _child_streams(rng: Any, n: int) -> list[_Stream]:
    """``n`` child streams of ``rng`` (as ``rng.spawn(n)``), each built when first used."""
    parent = _generator(rng)
    bitgen = type(parent.bit_generator)
    return [_Stream(bitgen, seq) for seq in parent.bit_generator.seed_seq.spawn(n)]


def _generator(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        raise ParameterError("rng", rng, f"must be a numpy Generator, SeedSequence, int or "
                                         f"None ({exc})") from None


class _Sampler:
    """Regular sample clock and a history of the true signal carried between chunks."""

    def __init__(self, sample_period: float, start: float, rng: Any) -> None:
        self.sample_period = positive("sample_period", sample_period)
        s = finite_array("start", start, ndim=0).item()
        self.start = float(s)
        self._streams = _child_streams(rng, 2)
        self._next = 0  # index of the next sample to emit
        self._t = np.empty(0)
        self._v = np.empty(0)

    @property
    def _noise_rng(self) -> np.random.Generator:
        return self._streams[0]()

    @property
    def _drop_rng(self) -> np.random.Generator:
        return self._streams[1]()

    def reset(self) -> None:
        """Forget the signal history and restart the sample clock (random streams continue)."""
        self._next = 0
        self._t = np.empty(0)
        self._v = np.empty(0)

    def _append(self, t_grid: Any, values: Any) -> None:
        t = _float_1d("t_grid", t_grid)
        v = _float_1d("values", values)
        if v.shape != t.shape:
            raise ParameterError("values", f"array of shape {v.shape}",
                                 f"must have the shape of t_grid {t.shape}")
        prev = self._t[-1] if self._t.size else -math.inf
        code, i = _grid_problem(t, v, prev)
        if code == 1:
            raise ParameterError("t_grid", f"element {i} = {t[i]}", "must be finite")
        if code == 2:
            raise ParameterError("values", f"element {i} = {v[i]}", "must be finite")
        if code == 3:
            raise ParameterError("t_grid", "not strictly increasing",
                                 "must be strictly increasing")
        if code == 4:
            raise ParameterError("t_grid", float(t[0]),
                                 f"must continue after the previous chunk (last t = "
                                 f"{self._t[-1]})")
        if self._t.size:
            self._t = np.concatenate([self._t, t])
            self._v = np.concatenate([self._v, v])
        else:  # the caller's arrays, for this call only: _trim keeps a copy of the tail
            self._t, self._v = t, v

    def _due(self, lag: float) -> np.ndarray:
        """Sample times whose data (up to ``t - lag``) is available; advances the clock."""
        if self._t.size == 0:
            return np.empty(0)
        last = self._t[-1]
        # number of samples with start + j*period - lag <= last
        n_total = math.floor((last + lag - self.start) / self.sample_period + 1e-9) + 1
        n_total = max(n_total, self._next)
        ts = np.arange(self._next, n_total, dtype=np.float64)
        self._next = n_total
        ts *= self.sample_period
        ts += self.start
        return ts

    def _trim(self, keep_from: float) -> None:
        """Drop history before ``keep_from`` (keeping one earlier point for interpolation)."""
        k = max(int(np.searchsorted(self._t, keep_from, side="right")) - 1, 0)
        # a copy: the history must not share memory with the caller's arrays
        self._t = self._t[k:].copy()
        self._v = self._v[k:].copy()

    def _interp(self, x: np.ndarray) -> np.ndarray:
        """Linear interpolation of the history at the increasing ``x``; NaN outside its range."""
        out = np.empty(x.size)
        _interp_sorted(self._t, self._v, x, out)
        return out

    def _window_mean(self, ts: np.ndarray, lag: float, width: float) -> np.ndarray:
        """Exact mean of the piecewise-linear history over ``[ts - lag - width, ts - lag]``
        (NaN if not covered); ``ts`` increasing."""
        t, v = self._t, self._v
        if t.size < 2:  # zero or one point: only a zero-width window at that point has a value
            out = np.full(ts.shape, np.nan)
            if t.size == 1 and width == 0:
                out[ts - lag == t[0]] = v[0]
            return out
        out = np.empty(ts.size)
        _window_means(t, v, ts, lag, width, out)
        return out


class NIRSensor(_Sampler):
    """In-line NIR prediction of the API mass fraction at a probe.

    Parameters
    ----------
    sample_period : float
        Time between predictions [s], > 0.
    noise_sd : float
        Standard deviation of the prediction error [mass fraction] (absolute), >= 0.
    latency : float
        Delay from the end of the spectrum to the reported prediction [s], >= 0.
    integration_time : float
        Spectrum integration time ``T_int`` [s], >= 0 (0: instantaneous value).
    bias : float
        Constant calibration offset [mass fraction].
    drift_per_s : float
        Linear drift of the offset [mass fraction / s], from time 0.
    dropout_probability : float
        Probability that a prediction is missing (NaN), in [0, 1).
    rng : numpy.random.Generator, int, SeedSequence or None
        Random source; two child streams (noise, dropouts) are spawned from it.
    start : float
        Time of the first prediction [s].

    Notes
    -----
    Reading ``k`` at :math:`t_k=\\text{start}+k\\,\\text{period}` is

    .. math:: y_k=\\frac1{T_{int}}\\int_{t_k-\\ell-T_{int}}^{t_k-\\ell}w(t)\\,dt + b
              + d\\,t_k + e_k,\\qquad e_k\\sim N(0,\\sigma^2),

    NaN with probability ``dropout_probability`` and NaN when the window starts before the
    first grid time (no data yet).

    Examples
    --------
    >>> nir = NIRSensor(sample_period=2.0, noise_sd=0.0, latency=1.0, rng=1)
    >>> t = np.arange(0.0, 10.0, 0.5)
    >>> ts, y = nir.measure(t, np.where(t < 4.0, 0.10, 0.12))
    >>> ts.tolist(), y.round(3).tolist()
    ([0.0, 2.0, 4.0, 6.0, 8.0, 10.0], [nan, 0.1, 0.1, 0.12, 0.12, 0.12])
    """

    def __init__(self, sample_period: float, noise_sd: float = 0.0, latency: float = 0.0,
                 integration_time: float = 0.0, bias: float = 0.0, drift_per_s: float = 0.0,
                 dropout_probability: float = 0.0, rng: Any = None, *,
                 start: float = 0.0) -> None:
        super().__init__(sample_period, start, rng)
        self.noise_sd = non_negative("noise_sd", noise_sd)
        self.latency = non_negative("latency", latency)
        self.integration_time = non_negative("integration_time", integration_time)
        self.bias = finite_array("bias", bias, ndim=0).item()
        self.drift_per_s = finite_array("drift_per_s", drift_per_s, ndim=0).item()
        p = probability("dropout_probability", dropout_probability, open_interval=False)
        if p >= 1.0:
            raise ParameterError("dropout_probability", dropout_probability, "must be < 1")
        self.dropout_probability = p
        self._faults: list[dict[str, Any]] = []
        self._last_valid = math.nan

    def add_fault(self, kind: str, start: float, end: float | None = None,
                  value: float = 0.0) -> None:
        """Schedule a sensor fault by reading time (docs/monitor.md#nir-measurement-model).

        Parameters
        ----------
        kind : {"bias", "drift", "spike", "frozen", "dropout"}
            ``"bias"``: add ``value`` to readings in ``[start, end)`` (a bias step when
            ``end`` is None); ``"drift"``: add ``value * (t - start)`` to readings in
            ``[start, end)``; ``"spike"``: add ``value`` to the first reading at or after
            ``start``; ``"frozen"``: readings in ``[start, end)`` repeat the last valid reading
            before ``start``; ``"dropout"``: readings in ``[start, end)`` are NaN.
        start : float
            Reading time the fault starts [s].
        end : float, optional
            Reading time it ends [s] (exclusive); None: never.
        value : float
            Offset [mass fraction] for ``"bias"`` and ``"spike"``; rate [mass fraction / s]
            for ``"drift"``.

        Notes
        -----
        Faults act on reading times, so they do not depend on the chunking; schedule them
        before the readings they affect are produced. Order of application: noise, bias,
        spike, frozen, random dropouts, dropout faults.
        """
        kinds = ("bias", "drift", "spike", "frozen", "dropout")
        if kind not in kinds:
            raise ParameterError("kind", kind, f"must be one of {kinds}")
        st = finite_array("start", start, ndim=0).item()
        en = math.inf if end is None else finite_array("end", end, ndim=0).item()
        if en < st:
            raise ParameterError("end", end, f"must be >= start = {start}")
        val = finite_array("value", value, ndim=0).item()
        self._faults.append({"kind": kind, "start": st, "end": en, "value": val,
                             "held": math.nan, "done": False})

    def _apply_faults(self, ts: np.ndarray, y: np.ndarray, drop: np.ndarray | None
                      ) -> np.ndarray:
        if drop is None:
            if not self._faults:
                self._remember_last_valid(y)
                return y
            drop = np.zeros(ts.size, dtype=bool)
        if not self._faults:
            y[drop] = np.nan
            self._remember_last_valid(y)
            return y
        y = y.copy()
        for f in self._faults:
            if f["kind"] == "bias":
                y[(ts >= f["start"]) & (ts < f["end"])] += f["value"]
            elif f["kind"] == "drift":
                on = (ts >= f["start"]) & (ts < f["end"])
                y[on] += f["value"] * (ts[on] - f["start"])
            elif f["kind"] == "spike" and not f["done"]:
                hit = np.flatnonzero(ts >= f["start"])
                if hit.size:
                    y[hit[0]] += f["value"]
                    f["done"] = True
        missing = drop.copy()
        for f in self._faults:
            if f["kind"] == "dropout":
                missing |= (ts >= f["start"]) & (ts < f["end"])
        frozen = [f for f in self._faults if f["kind"] == "frozen"]
        if frozen:  # sequential: a frozen value is the last valid reading before the fault
            last = self._last_valid
            for i in range(ts.size):
                for f in frozen:
                    if f["start"] <= ts[i] < f["end"]:
                        if math.isnan(f["held"]):
                            f["held"] = last
                        y[i] = f["held"]
                if not missing[i] and not math.isnan(y[i]):
                    last = y[i]
        y[missing] = np.nan
        self._remember_last_valid(y)
        return y

    def _remember_last_valid(self, y: np.ndarray) -> None:
        if y.size and not math.isnan(y[-1]):  # the usual case: the last reading is valid
            self._last_valid = float(y[-1])
            return
        valid = ~np.isnan(y)
        if valid.size and valid.any():
            self._last_valid = float(y[valid.size - 1 - int(np.argmax(valid[::-1]))])

    def measure(self, t_grid: Any, w_probe: Any, *,
                return_noise_free: bool = False) -> tuple[np.ndarray, ...]:
        """Readings completed by this chunk of the true probe concentration.

        Parameters
        ----------
        t_grid : array_like, shape (n,)
            Times of the chunk [s], strictly increasing and after the previous chunk.
        w_probe : array_like, shape (n,)
            True API mass fraction at the probe at those times [-].
        return_noise_free : bool
            Also return the window averages without bias, drift, noise or dropouts.

        Returns
        -------
        t_samples : ndarray
            Reading times [s].
        y : ndarray
            Readings [mass fraction] (NaN = dropout or no data).
        noise_free : ndarray
            Only with ``return_noise_free``.
        """
        self._append(t_grid, w_probe)
        ts = self._due(self.latency)
        true = self._window_mean(ts, self.latency, self.integration_time)
        y = true + self.bias
        if self.drift_per_s:
            y += self.drift_per_s * ts
        # each random stream serves one purpose only: no draws when it is not used
        if self.noise_sd > 0:
            noise = self._noise_rng.standard_normal(ts.size)
            noise *= self.noise_sd
            y += noise
        drop = None
        if self.dropout_probability > 0:
            drop = self._drop_rng.random(ts.size) < self.dropout_probability
        y = self._apply_faults(ts, y, drop)
        next_t = self.start + self._next * self.sample_period
        self._trim(next_t - self.latency - self.integration_time)
        return (ts, y, true) if return_noise_free else (ts, y)


class LoadCellSignal(_Sampler):
    """Loss-in-weight load cell: noisy hopper mass and a moving-window flow estimate.

    Parameters
    ----------
    sample_period : float
        Time between weighings [s], > 0.
    noise_sd : float
        Standard deviation of one weighing [kg], >= 0.
    window : float
        Length of the least-squares window for the flow estimate [s]; it holds
        ``N = round(window / sample_period)`` weighings, N >= 2.
    rng : numpy.random.Generator, int, SeedSequence or None
        Random source.
    start : float
        Time of the first weighing [s].

    Notes
    -----
    The flow estimate is minus the ordinary least-squares slope of the last ``N``
    weighings [kg/s]: positive while the hopper discharges. For white weighing noise its
    standard deviation is :math:`\\sigma\\sqrt{12/(N(N^2-1))}/\\Delta t`. The first ``N-1``
    estimates are NaN.

    Examples
    --------
    >>> lc = LoadCellSignal(sample_period=0.5, noise_sd=0.0, window=5.0, rng=0)
    >>> t = np.arange(0.0, 20.0, 0.1)
    >>> ts, m, flow = lc.measure(t, 10.0 - 0.005 * t)
    >>> float(flow[-1].round(9))
    0.005
    """

    def __init__(self, sample_period: float, noise_sd: float = 0.0, window: float = 10.0,
                 rng: Any = None, *, start: float = 0.0) -> None:
        super().__init__(sample_period, start, rng)
        self.noise_sd = non_negative("noise_sd", noise_sd)
        n = int(round(positive("window", window) / self.sample_period))
        if n < 2:
            raise ParameterError("window", window,
                                 f"must hold at least 2 samples of {self.sample_period} s")
        self.window = float(window)
        self.n_window = n
        i = np.arange(n) - (n - 1) / 2.0
        self._weights = i / (np.sum(i * i) * self.sample_period)  # OLS slope weights
        self._recent = np.empty(0)

    def reset(self) -> None:
        """Restart the clock and forget the weighings of the flow window."""
        super().reset()
        self._recent = np.empty(0)

    def measure(self, t_grid: Any, mass: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weighings and flow estimates completed by this chunk.

        Parameters
        ----------
        t_grid : array_like, shape (n,)
            Times [s], strictly increasing, continuing the previous chunk.
        mass : array_like, shape (n,)
            True hopper mass [kg].

        Returns
        -------
        t_samples : ndarray
            Weighing times [s].
        mass_measured : ndarray
            Weighings [kg] (NaN before the first grid time).
        flow_estimate : ndarray
            Discharge rate estimate [kg/s].
        """
        self._append(t_grid, mass)
        ts = self._due(0.0)
        m = self._interp(ts)
        if self.noise_sd > 0:  # the noise stream serves nothing else: no draws without noise
            m += self.noise_sd * self._noise_rng.standard_normal(ts.size)
        n = self.n_window
        series = np.concatenate([self._recent, m])
        flow = np.full(ts.size, np.nan)
        # the window ending at reading i of this chunk starts at series[len(recent) + i - n + 1]
        first = self._recent.size - n + 1
        skip = min(max(-first, 0), ts.size)  # readings with fewer than n weighings so far
        _slopes(series[first + skip:], self._weights, flow[skip:])
        self._recent = series[-(n - 1):]
        next_t = self.start + self._next * self.sample_period
        self._trim(next_t)
        return ts, m, flow


class LoadCellBank:
    """Load cells of several feeders on one sample clock, fed with per-tick discharge flows.

    The readings equal those of one :class:`LoadCellSignal` per feeder fed with the hopper
    net mass (refills excluded) on the tick-end grid ``(k+1) dt`` (tested), computed for all
    feeders in two compiled passes over the sample times only.

    Parameters
    ----------
    sample_period : float
        Time between weighings [s], a whole number of ticks ``dt``.
    noise_sd : float
        Standard deviation of one weighing [kg], >= 0.
    window : float
        Least-squares window of the flow estimate [s] (``N = round(window / sample_period)``
        weighings, N >= 2).
    dt : float
        Tick of the flow data [s], > 0.
    rngs : sequence
        One random source per load cell (Generator, int, SeedSequence or None), as for
        :class:`LoadCellSignal` (its noise comes from the first of two spawned children;
        spawned only when ``noise_sd > 0``).
    start : float
        Time of the first weighing [s], on the tick grid (a whole number of ``dt``, >= 0).

    Notes
    -----
    Tick ``k`` of a flow row is the mean discharge over ``[k dt, (k+1) dt)``; the net mass at
    ``(k+1) dt`` is ``-dt`` times the cumulative discharge. A weighing before the first tick
    end (time 0) has no data (NaN), as for a :class:`LoadCellSignal` whose grid starts at
    ``dt``; so are the flow estimates whose window holds it.

    Examples
    --------
    >>> bank = LoadCellBank(1.0, 0.0, 5.0, dt=1.0, rngs=[0, 1])
    >>> ts, m, flow = bank.measure(np.tile([[0.002], [0.01]], 20))
    >>> float(ts[-1]), flow[:, -1].round(12).tolist()
    (20.0, [0.002, 0.01])
    """

    def __init__(self, sample_period: float, noise_sd: float, window: float, dt: float,
                 rngs: Sequence[Any], *, start: float = 0.0) -> None:
        self.dt = positive("dt", dt)
        self.sample_period = positive("sample_period", sample_period)
        ratio = self.sample_period / self.dt
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ParameterError("sample_period", sample_period,
                                 f"must be a whole number (>= 1) of ticks dt = {dt}")
        self._period = int(round(ratio))
        st = finite_array("start", start, ndim=0).item()
        s0 = st / self.dt
        if st < 0 or abs(s0 - round(s0)) > 1e-9:
            raise ParameterError("start", start, f"must be a whole number (>= 0) of ticks {dt}")
        self.start = float(st)
        self._s0 = int(round(s0))
        self._noise_sd = non_negative("noise_sd", noise_sd)
        n = int(round(positive("window", window) / self.sample_period))
        if n < 2:
            raise ParameterError("window", window,
                                 f"must hold at least 2 samples of {self.sample_period} s")
        self.window = float(window)
        self.n_window = n
        i = np.arange(n) - (n - 1) / 2.0
        self._weights = i / (np.sum(i * i) * self.sample_period)  # OLS slope weights
        rngs = list(rngs)
        if not rngs:
            raise ParameterError("rngs", rngs, "must hold one random source per load cell")
        self.n_cells = len(rngs)
        # noise streams only for noisy weighings (noise_sd is fixed at construction)
        self._noise_streams = ([_child_streams(r, 2)[0] for r in rngs] if self.noise_sd > 0
                               else [])
        self.reset()

    @property
    def noise_sd(self) -> float:
        """Standard deviation of one weighing [kg] (fixed at construction)."""
        return self._noise_sd

    def reset(self) -> None:
        """Restart the clock and forget the weighings (random streams continue)."""
        self._k = 0       # ticks seen
        self._next = 0    # index of the next weighing
        self._m0 = np.zeros(self.n_cells)
        self._recent = np.full((self.n_cells, self.n_window - 1), np.nan)

    def measure(self, flows: Any, *, return_mass: bool = True,
                slopes: bool = True) -> tuple[np.ndarray, ...]:
        """Weighings and flow estimates completed by this chunk of tick flows.

        Parameters
        ----------
        flows : array_like, shape (n_cells, n), or sequence of n_cells arrays of shape (n,)
            Discharge mass flow of each hopper per tick [kg/s], continuing the previous chunk
            (rows given separately are not copied).
        return_mass : bool
            Also return the weighings (False: only times and flow estimates).
        slopes : bool
            Compute the flow estimates (False, with ``return_mass``: weighings only, the flow
            estimate is None; a bank measured this way must not be asked for slopes later,
            its window history is not kept).

        Returns
        -------
        t_samples : ndarray, shape (m,)
            Weighing times [s] (common to all cells).
        mass : ndarray, shape (n_cells, m)
            Weighings of the net mass relative to time 0 [kg] (NaN at time 0: no data); only
            with ``return_mass``.
        flow_estimate : ndarray, shape (n_cells, m) or None
            Discharge rate estimates [kg/s].
        """
        if isinstance(flows, (list, tuple)):
            rows = tuple(np.ascontiguousarray(r, dtype=np.float64) for r in flows)
            n = rows[0].size if rows else 0
            if len(rows) != self.n_cells or any(r.ndim != 1 or r.size != n for r in rows):
                raise ParameterError("flows", f"{len(rows)} rows",
                                     f"must be {self.n_cells} 1-D rows of equal length")
            f: Any = rows
            finite = all(np.isfinite(r.sum()) or np.isfinite(r).all() for r in rows)
        else:
            f = np.ascontiguousarray(flows, dtype=np.float64)
            if f.ndim != 2 or f.shape[0] != self.n_cells:
                raise ParameterError("flows", f"array of shape {f.shape}",
                                     f"must have shape ({self.n_cells}, n)")
            n = f.shape[1]
            finite = np.isfinite(f.sum()) or np.isfinite(f).all()
        if not finite:
            raise ParameterError("flows", "non-finite values", "must be finite")
        k0 = self._k
        k1 = k0 + n
        # weighing j at (s0 + j p) dt needs the net mass at the end of tick s0 + j p - 1
        n_total = max(self._next, (k1 - self._s0) // self._period + 1) if k1 >= self._s0 else 0
        ts = np.arange(self._s0 + self._next * self._period, self._s0 + n_total * self._period,
                       self._period, dtype=np.float64)
        ts *= self.dt
        ns = ts.size
        e0 = self._s0 + self._next * self._period - 1 - k0  # chunk index of the first tick end
        noise = np.empty((self.n_cells, ns if self.noise_sd > 0 else 0))
        if noise.size:
            for row, g in zip(noise, self._noise_streams, strict=True):
                g().standard_normal(out=row)  # drawn in place: the numbers of a new array
        buf = np.empty((self.n_cells, ns))
        _bank_weighings(f, self.dt, self._m0, e0, self._period, noise, self.noise_sd, buf)
        self._k = k1
        self._next = n_total
        if return_mass and not slopes:  # weighings only (no flow estimates compiled or run)
            return ts, buf, None
        mass = buf.copy() if return_mass else None
        _bank_slopes(self._recent, buf, self._weights)  # buf now holds the flow estimates
        return (ts, mass, buf) if return_mass else (ts, buf)


class TabletWeightSignal(_Sampler):
    """Sampled tablet weights (mean of ``n_tablets`` tablets) with a relative spread.

    Parameters
    ----------
    sample_period : float
        Time between samples [s], > 0.
    rsd : float
        Relative standard deviation of one tablet's mass [-], >= 0.
    n_tablets : int
        Tablets weighed per sample (the reported value is their mean), >= 1.
    rng : numpy.random.Generator, int, SeedSequence or None
        Random source.
    start : float
        Time of the first sample [s].

    Notes
    -----
    Each tablet weighs :math:`m(t)(1+\\text{rsd}\\,\\varepsilon)`, so a sample has standard
    deviation :math:`m\\,\\text{rsd}/\\sqrt{n}`.

    Examples
    --------
    >>> tw = TabletWeightSignal(sample_period=10.0, rsd=0.0, rng=0)
    >>> tw.measure(np.arange(0.0, 30.0), np.full(30, 250e-6))[1].tolist()
    [0.00025, 0.00025, 0.00025]
    """

    def __init__(self, sample_period: float, rsd: float = 0.01, n_tablets: int = 1,
                 rng: Any = None, *, start: float = 0.0) -> None:
        super().__init__(sample_period, start, rng)
        self.rsd = non_negative("rsd", rsd)
        if isinstance(n_tablets, bool) or int(n_tablets) != n_tablets or n_tablets < 1:
            raise ParameterError("n_tablets", n_tablets, "must be an int >= 1")
        self.n_tablets = int(n_tablets)

    def measure(self, t_grid: Any, tablet_mass: Any) -> tuple[np.ndarray, np.ndarray]:
        """Weight samples completed by this chunk.

        Parameters
        ----------
        t_grid : array_like, shape (n,)
            Times [s], strictly increasing, continuing the previous chunk.
        tablet_mass : array_like, shape (n,)
            True mean tablet mass [kg].

        Returns
        -------
        t_samples : ndarray
            Sample times [s].
        weights : ndarray
            Mean weight of the ``n_tablets`` tablets [kg].
        """
        self._append(t_grid, tablet_mass)
        ts = self._due(0.0)
        m = self._interp(ts)
        self._trim(self.start + self._next * self.sample_period)
        if self.rsd == 0:  # the noise stream serves nothing else: no draws without spread
            return ts, m
        eps = self._noise_rng.standard_normal((ts.size, self.n_tablets)).mean(axis=1)
        return ts, m * (1.0 + self.rsd * eps)


def slopes_of_weighings(mass: np.ndarray, period: float, window: float) -> np.ndarray:
    """The loss-in-weight controller's flow estimates from a record of weighings [kg/s].

    The least-squares slope of the last ``N = round(window / period)`` weighings (as
    :class:`LoadCellBank` computes them online), minus sign: discharge is positive; NaN
    while a window holds a missing weighing.

    Parameters
    ----------
    mass : ndarray, shape (n_cells, m)
        Weighings on a regular clock of period ``period`` [kg] (NaN: missing).
    period, window : float
        Weighing period and least-squares window [s].
    """
    m = np.asarray(mass, dtype=np.float64)
    n = int(round(max(window, 2 * period) / period))
    i = np.arange(n) - (n - 1) / 2.0
    w = i / (np.sum(i * i) * period)
    out = np.full(m.shape, np.nan)
    if m.shape[-1] >= n:
        for c in range(m.shape[0]):
            out[c, n - 1:] = -np.convolve(m[c], w[::-1], mode="valid")
    return out
