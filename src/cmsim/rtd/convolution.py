"""Causal convolution with a discrete RTD kernel: one-shot dispatcher and streaming FIR.

``y[k] = sum_j w[j] x[k-j]`` with ``len(y) == len(x)`` (zero history before ``x[0]``). With the
bin kernel ``w[j] = F((j+1) dt) - F(j dt)`` and ``x`` a mass flow held over each tick, ``y[k]`` is
the outlet flow of tick ``k`` (see ``docs/design.md``).

Method choice (``method="auto"``, measured as in ``docs/benchmarks.md``, crossover re-measured on
the development machine):

* ``"direct"``: register-blocked numba loop (8 outputs per pass over the kernel), exact zeros and
  no negative outputs for non-negative data; used when the effective kernel is short
  (``K_eff = min(K, N) <= DIRECT_MAX_TAPS``, or ``<= DIRECT_MAX_TAPS_FFT_REGIME`` when
  ``N < 50 K``) or the work is small (``N K <= DIRECT_MAX_TAPS (N + K) + FFT_FIXED_FMAS``);
* ``"oa"``: :func:`scipy.signal.oaconvolve` when ``N >= 50 K``;
* ``"fft"``: :func:`scipy.signal.fftconvolve` otherwise.

FFT methods carry a round-off of about ``1e-17`` relative to the largest output, so a zero output
can come out as ``-1e-17``; when both ``x`` and ``w`` are non-negative their output is clipped at
0 (``np.maximum(y, 0)``), which only changes values at that round-off level. 2-D inputs
``(batch, time)`` use numba ``prange`` over rows (direct), a batched overlap-save on a few rows at
a time split over threads (``"oa"``, see :func:`_ols_rows`), or one batched FFT with ``scipy.fft``
workers (``"fft"``). ``scipy.signal`` is imported lazily, inside the FFT paths.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cmsim import _validate
from cmsim.errors import ParameterError
from cmsim.rtd.filters import _finite_array, _float_array, _Streaming

__all__ = [
    "DIRECT_MAX_TAPS",
    "DIRECT_MAX_TAPS_FFT_REGIME",
    "Convolver",
    "autocorrelation",
    "convolution_method",
    "convolve",
    "full_convolve",
]

#: Above this many multiply-adds, :func:`full_convolve` and :func:`autocorrelation` use the FFT
#: (about 0.1 s direct); below, numpy's exact direct sums.
FULL_DIRECT_MAX_FMAS = 10**8

#: Longest kernel (effective taps) for which the direct register-blocked loop is always chosen.
#: Measured crossover against ``oaconvolve`` (tuned allocator, 2-core Zen VM): 192-256 taps.
DIRECT_MAX_TAPS = 192
#: Longest kernel for which the direct loop is chosen when the FFT regime (``N < 50 K``) applies.
#: Measured crossover against ``fftconvolve`` at N = 1e4: about 384 taps.
DIRECT_MAX_TAPS_FFT_REGIME = 320
#: Fixed cost of an FFT call expressed in direct-loop multiply-adds (about 60 us at 14 GFMA/s).
FFT_FIXED_FMAS = 800_000
#: ``N >= OA_MIN_RATIO * K`` selects overlap-add instead of a single FFT.
OA_MIN_RATIO = 50
#: Batch rows x samples from which the 2-D direct path uses the ``prange`` kernel.
_PARALLEL_MIN_WORK = 2_000_000
#: Batches of at least this many rows take the overlap-save path for method "oa"
#: (:func:`_ols_rows`): 1000 x 1e5 with K = 378 in about 5-8x the time of a batch copy, against
#: 35-65x for ``scipy.signal.oaconvolve`` on the whole batch (2-core AVX-512 VM).
OLS_MIN_ROWS = 2
#: Rows transformed together by the overlap-save path (keeps a group's blocks in cache).
OLS_ROWS = 4
#: Smallest FFT length of the overlap-save path (measured: 8192 beats 2048/4096 for K = 378).
OLS_MIN_FFT = 8192

_METHODS = ("auto", "direct", "oa", "fft")


def _kernels():
    from cmsim.rtd import _kernels

    return _kernels


def convolution_method(n_samples: int, kernel_length: int) -> str:
    """Method :func:`convolve` picks with ``method="auto"``.

    Parameters
    ----------
    n_samples : int
        Number of outputs per series ``N`` [-].
    kernel_length : int
        Kernel length ``K`` [-] (taps beyond ``N`` never contribute and are ignored).

    Returns
    -------
    str
        ``"direct"``, ``"oa"`` or ``"fft"``.
    """
    n = int(n_samples)
    k = min(int(kernel_length), max(n, 1))
    if _use_direct(n, k):
        return "direct"
    if n >= OA_MIN_RATIO * k:
        return "oa"
    return "fft"


def _use_direct(n: int, k: int) -> bool:
    """Direct loop for short kernels or short outputs (cost ``n k`` vs FFT ``~c0 + (n + k)``)."""
    if k <= DIRECT_MAX_TAPS or n * k <= DIRECT_MAX_TAPS * (n + k) + FFT_FIXED_FMAS:
        return True
    return n < OA_MIN_RATIO * k and k <= DIRECT_MAX_TAPS_FFT_REGIME


def _check_kernel(w: Any) -> np.ndarray:
    arr = _validate.finite_array("w", w, ndim=1)
    if arr.size == 0:
        raise ParameterError("w", "empty array", "must have at least one tap")
    return np.ascontiguousarray(arr)


def _check_method(method: Any) -> str:
    if method not in _METHODS:
        raise ParameterError("method", method, f"must be one of {_METHODS}")
    return method


def _check_out(out: Any, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.float64:
        raise ParameterError("out", getattr(out, "shape", out),
                             f"must be a float64 ndarray of shape {shape}")
    if not out.flags.c_contiguous:
        raise ParameterError("out", "non-contiguous array", "must be C-contiguous")
    return out


def _fft_valid(ext: np.ndarray, w: np.ndarray, method: str) -> np.ndarray:
    """FFT convolution of 2-D ``ext`` rows with ``w``, mode "valid" (length ext - K + 1)."""
    import scipy.fft
    import scipy.signal

    fn = scipy.signal.oaconvolve if method == "oa" else scipy.signal.fftconvolve
    with scipy.fft.set_workers(os.cpu_count() or 1):
        return fn(ext, w[None, :], mode="valid", axes=1)


def _fft_causal(x2: np.ndarray, w: np.ndarray, method: str) -> np.ndarray:
    import scipy.fft
    import scipy.signal

    n = x2.shape[1]
    fn = scipy.signal.oaconvolve if method == "oa" else scipy.signal.fftconvolve
    if x2.shape[0] == 1:
        return fn(x2[0], w, mode="full")[None, :n]
    with scipy.fft.set_workers(os.cpu_count() or 1):
        return fn(x2, w[None, :], mode="full", axes=1)[:, :n]


def _ols_block_length(n: int, k: int) -> int:
    """FFT length of the batched overlap-save path: a fast length >= max(8192, 16 K), no longer
    than one block covering the whole signal (``N + K - 1``)."""
    import scipy.fft

    want = max(OLS_MIN_FFT, 16 * k)
    return scipy.fft.next_fast_len(min(want, n + k - 1), real=True)


def _ols_rows_into(x2: np.ndarray, w: np.ndarray, y2: np.ndarray, nonneg_w: bool) -> bool:
    """Causal convolution of rows of ``x2`` into ``y2`` by overlap-save, a few rows at a time.

    Each group of ``OLS_ROWS`` rows is padded with ``K - 1`` zeros in front, cut into overlapping
    blocks of the FFT length ``L`` (a strided view, no copy), transformed, multiplied by the
    kernel's spectrum and transformed back; the last ``L - K + 1`` points of every block are
    outputs. Working on a few rows keeps the blocks in cache (scipy's ``oaconvolve`` on the whole
    batch streams several full-size temporaries through memory). Outputs of a group whose rows
    are all non-negative are clipped at 0 when ``w`` is non-negative. Returns False when a group
    has a non-finite input (its outputs are then not meaningful), else True.
    """
    import scipy.fft
    from numpy.lib.stride_tricks import as_strided

    rows, n = x2.shape
    k = w.size
    length = _ols_block_length(n, k)
    step = length - k + 1
    blocks = -(-n // step)
    spectrum = scipy.fft.rfft(w, length)
    ext = np.zeros((min(OLS_ROWS, rows), k - 1 + blocks * step))
    for r0 in range(0, rows, OLS_ROWS):
        r1 = min(rows, r0 + OLS_ROWS)
        part = x2[r0:r1]
        total = np.add.reduce(part, axis=None)
        if not np.isfinite(total):
            return False
        e = ext[: r1 - r0]
        e[:, k - 1 : k - 1 + n] = part
        view = as_strided(e, (r1 - r0, blocks, length), (e.strides[0], step * 8, 8),
                          writeable=False)
        spec = scipy.fft.rfft(view, axis=-1, workers=1)
        spec *= spectrum
        res = scipy.fft.irfft(spec, length, axis=-1, workers=1, overwrite_x=True)
        out = y2[r0:r1]
        out[...] = res[:, :, k - 1 :].reshape(r1 - r0, blocks * step)[:, :n]
        if nonneg_w and part.min() >= 0.0:
            np.maximum(out, 0.0, out=out)
    return True


def _ols_rows(x2: np.ndarray, w: np.ndarray, y2: np.ndarray) -> None:
    """Batched overlap-save (:func:`_ols_rows_into`), row groups split over ``os.cpu_count()``
    threads (the FFTs release the GIL); raises for a non-finite input."""
    rows = x2.shape[0]
    threads = min(os.cpu_count() or 1, max(1, rows // OLS_ROWS))
    nonneg_w = bool(w.min() >= 0.0)
    if threads == 1:
        ok = _ols_rows_into(x2, w, y2, nonneg_w)
    else:
        from concurrent.futures import ThreadPoolExecutor

        bounds = np.linspace(0, rows, threads + 1).astype(int)
        with ThreadPoolExecutor(threads) as pool:
            futures = [pool.submit(_ols_rows_into, x2[a:b], w, y2[a:b], nonneg_w)
                       for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            ok = all(f.result() for f in futures)
    if not ok:
        _validate.finite_array("x", x2)  # raises, naming the first bad element
        raise ParameterError("x", "array with very large values",  # pragma: no cover
                             "must have a finite sum per row group")


def convolve(
    x: Any,
    w: Any,
    out: np.ndarray | None = None,
    method: str = "auto",
) -> np.ndarray:
    """Causal convolution of a signal with a kernel, same length as the signal.

    Parameters
    ----------
    x : array_like, shape (N,) or (batch, N)
        Input signal per tick [any unit, e.g. kg/s]; 2-D inputs are convolved along the last axis.
    w : array_like, shape (K,)
        Kernel [-] (e.g. the bin-integrated RTD kernel), finite, at least one tap.
    out : ndarray, optional
        Preallocated C-contiguous float64 output with the shape of ``x``.
    method : {"auto", "direct", "oa", "fft"}
        Algorithm; ``"auto"`` picks per regime (see the module docstring and
        :func:`convolution_method`).

    Returns
    -------
    ndarray
        ``y[..., k] = sum_j w[j] x[..., k-j]`` [unit of ``x``], same shape as ``x``.

    Raises
    ------
    cmsim.errors.ParameterError
        If ``x`` is not 1-D/2-D or not finite, ``w`` is not a non-empty finite 1-D array, ``out``
        has the wrong shape/dtype, or ``method`` is unknown. (On the direct path the finiteness
        of ``x`` is detected on the outputs, so ``out`` may have been written when it raises.)
    """
    # Finiteness: the direct kernel reports non-finite outputs at no extra pass over the data
    # (a non-finite input always gives one); the FFT paths check the input first.
    xa = _float_array("x", x, ndim=(1, 2))
    wa = _check_kernel(w)
    method = _check_method(method)
    one_d = xa.ndim == 1
    x2 = np.ascontiguousarray(xa.reshape(1, -1) if one_d else xa)
    rows, n = x2.shape
    y = _check_out(out, xa.shape) if out is not None else np.empty(xa.shape)
    y2 = y.reshape(1, -1) if one_d else y
    if n == 0 or rows == 0:
        return y
    wk = wa[:n]  # taps beyond N never reach an output
    if method == "auto":
        method = convolution_method(n, wk.size)
    if method == "direct":
        k = _kernels()
        wr = np.ascontiguousarray(wk[::-1])
        if rows == 1:
            probe = k.conv_causal(x2[0], wr, y2[0])
        elif rows * n >= _PARALLEL_MIN_WORK:
            probe = k.conv_causal_rows_parallel(x2, wr, y2)
        else:
            probe = k.conv_causal_rows_serial(x2, wr, y2)
        if probe != 0.0:  # NaN: a non-finite output (raises for a non-finite x; else overflow)
            _validate.finite_array("x", x2)
        return y
    if method == "oa" and rows >= OLS_MIN_ROWS:
        _ols_rows(x2, wk, y2)
        return y
    _finite_array("x", x2, ndim=2)
    res = _fft_causal(x2, wk, method)
    if x2.min() >= 0.0 and wk.min() >= 0.0:
        np.maximum(res, 0.0, out=y2)
    else:
        np.copyto(y2, res)
    return y


class Convolver(_Streaming):
    """Streaming causal FIR filter with state (the last ``K - 1`` inputs of each row).

    Feeding a signal in chunks of any length (including 0, 1, or longer/shorter than ``K``)
    gives the same output as one call to :func:`convolve` (to 1e-12).

    Parameters
    ----------
    w : array_like, shape (K,)
        Kernel [-], finite, at least one tap.
    batch : int, optional
        Number of series (rows); fixed by the first chunk when omitted.
    dt : float, optional
        Time step [s]; only used to express :attr:`holdup` in [input unit x s] (e.g. kg for an
        input in kg/s). Without it :attr:`holdup` is in [input unit x tick].

    Notes
    -----
    Chunks are computed with the direct kernel when :func:`convolution_method` would pick it for
    ``(chunk length, K)`` (always for ``K <= DIRECT_MAX_TAPS``) and with an FFT (overlap-add for
    long chunks) otherwise; FFT outputs are clipped at 0 when the chunk, the history and the kernel
    are all non-negative.
    """

    def __init__(self, w: Any, batch: int | None = None, dt: float | None = None) -> None:
        self._w = _check_kernel(w)
        self._wr = np.ascontiguousarray(self._w[::-1])
        self._dt = None if dt is None else _validate.positive("dt", dt)
        # tail[m] = sum_{j > m} w[j]: share of an input m ticks old that is still to come out
        tails = self._w.sum() - np.cumsum(self._w)
        self._tail_rev = np.ascontiguousarray(tails[: self._w.size - 1][::-1])
        self._nonneg_w = bool(self._w.min() >= 0.0)
        self._hist: np.ndarray | None = None
        self._init_batch(batch)
        if self._batch is not None:
            self._allocate_state(self._batch)

    def _allocate_state(self, rows: int) -> None:
        self._hist = np.zeros((rows, self._w.size - 1))

    @property
    def kernel(self) -> np.ndarray:
        """The kernel ``w`` [-] (a copy)."""
        return self._w.copy()

    @property
    def holdup(self) -> np.ndarray:
        """Input not yet emitted per row, shape (batch,).

        For a kernel summing to ``S`` this is ``S * sum(inputs) - sum(outputs)`` times ``dt``:
        [input unit x s] (e.g. kg for kg/s) when ``dt`` was given, else [input unit x tick].
        Mass a truncated kernel (``S < 1``) never emits is not counted.
        """
        self._ensure_state()
        assert self._hist is not None
        h = self._hist @ self._tail_rev
        return h * (1.0 if self._dt is None else self._dt)

    def step(self, chunk: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Filter one chunk.

        Parameters
        ----------
        chunk : array_like, shape (n,) or (batch, n)
            Input per tick [any unit]; finite.
        out : ndarray, optional
            Preallocated C-contiguous float64 output of the same shape.

        Returns
        -------
        ndarray
            Output per tick [unit of ``chunk``], same shape as ``chunk``.

        Raises
        ------
        cmsim.errors.ParameterError
            If ``chunk`` is not 1-D/2-D or not finite (the history is then left unchanged; ``out``
            may have been written), has the wrong number of rows, or ``out`` is invalid.
        """
        x2, y2, one_d = self._prepare(chunk, out, check_finite=False)
        hist = self._hist
        assert hist is not None
        n = x2.shape[1]
        k = self._w.size
        if n > 0:
            if _use_direct(n, k):
                saved = hist.copy()
                probe = _kernels().conv_stream_rows(hist, x2, self._wr, y2)
                # a non-finite output comes from a non-finite chunk (restore the history and
                # raise, naming the first bad element) or from an overflow (kept, as in numpy)
                if probe != 0.0 and not np.isfinite(x2).all():
                    hist[...] = saved
                    _validate.finite_array("chunk", x2)
            else:
                _finite_array("chunk", x2, ndim=2)
                ext = np.concatenate([hist, x2], axis=1)
                method = "oa" if n >= OA_MIN_RATIO * k else "fft"
                res = _fft_valid(ext, self._w, method)
                if self._nonneg_w and ext.min() >= 0.0:
                    np.maximum(res, 0.0, out=y2)
                else:
                    np.copyto(y2, res)
                hist[...] = ext[:, ext.shape[1] - (k - 1) :]
        return y2[0] if one_d and out is None else (out if out is not None else y2)

    def reset(self) -> None:
        """Forget the history (all past inputs become zero)."""
        if self._hist is not None:
            self._hist[:] = 0.0


def full_convolve(a: Any, b: Any) -> np.ndarray:
    """Full linear convolution of two kernels, ``len(a) + len(b) - 1`` values.

    numpy's direct sums up to :data:`FULL_DIRECT_MAX_FMAS` multiply-adds, the FFT beyond (a
    line's kernels at a small tick: 1e5 taps each took seconds directly). For composing RTD
    kernels and responses, not for streaming (:func:`convolve`, :class:`Convolver`).

    Parameters
    ----------
    a, b : array_like, shape (n,), (m,)
        Finite 1-D arrays, at least one value each.

    Returns
    -------
    ndarray, shape (n + m - 1,)
    """
    x = _validate.finite_array("a", a, ndim=1)
    y = _validate.finite_array("b", b, ndim=1)
    if x.size == 0 or y.size == 0:
        raise ParameterError("a, b", (x.size, y.size), "need at least one value each")
    if x.size * y.size <= FULL_DIRECT_MAX_FMAS:
        return np.convolve(x, y)
    from scipy.signal import fftconvolve  # noqa: PLC0415

    return fftconvolve(x, y)


def autocorrelation(g: Any) -> np.ndarray:
    """``r[l] = sum_k g[k] g[k + l]`` for lags ``l = 0 .. len(g) - 1`` (one-sided).

    Parameters
    ----------
    g : array_like, shape (n,)
        Finite 1-D array, at least one value.

    Returns
    -------
    ndarray, shape (n,)
    """
    x = _validate.finite_array("g", g, ndim=1)
    if x.size == 0:
        raise ParameterError("g", x.size, "needs at least one value")
    if x.size * x.size <= FULL_DIRECT_MAX_FMAS:
        return np.correlate(x, x, mode="full")[x.size - 1:]
    return full_convolve(x, x[::-1])[x.size - 1:]
