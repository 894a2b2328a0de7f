"""Recursive streaming RTD filters: exact tanks-in-series chain and plug-flow delay.

Both filters take chunks of shape ``(n,)`` or ``(batch, n)``; the batch size is fixed by
``batch=`` at construction or by the first chunk. State is carried between chunks, so any chunking
of the input gives the same output (to rounding) as one call.

Time and mass convention (shared with :class:`cmsim.rtd.Convolver`): tick ``k`` covers
``[k dt, (k+1) dt)``; the input ``u[k]`` is a mass flow [kg/s] held over the tick. The output
``y[k]`` is the flow of the bin-integrated kernel ``w[j] = F((j+1) dt) - F(j dt)``:
``y[k] = sum_j w[j] u[k-j]``. Mass is booked per tick: ``fed = dt * sum(u)``,
``emitted = dt * sum(y)``, and :attr:`holdup` ``= fed - emitted`` is exact at every tick boundary.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

from cmsim import _validate
from cmsim.errors import ParameterError

__all__ = ["PlugFlowDelay", "TanksInSeriesFilter"]

#: Batch size (rows) from which the 2-D filter switches to the ``prange`` kernel.
PARALLEL_MIN_ROWS = 64
#: Total samples of a 2-D chunk from which the ``prange`` kernel is used.
PARALLEL_MIN_SAMPLES = 2_000_000
#: Largest condition number of the mass <-> scaled-state map for which the O(n) scaled form is
#: used; above it the filter runs the O(n^2) recursion on the tank masses directly.
_SCALED_FORM_MAX_COND = 1e3
#: Cascade form (fastest, see :class:`TanksInSeriesFilter` Notes) for ``n_tanks`` up to this ...
_CASCADE_MAX_TANKS = 8
#: ... and for ``r = n_tanks dt / tau`` (per-tank decay per tick) up to this.
_CASCADE_MAX_R = 0.5


#: Most tanks of a chain that runs its recursion (mass-state form). The cost per tick grows as
#: n^2 beyond about 20 tanks (1.4 s for 8 h at dt = 0.5 s with 200 tanks, where the bin kernel
#: takes 1.3 ms), and the coefficients take seconds to build beyond a few hundred: longer chains,
#: which are nearly plug flow, go through their bin kernel (the line's stages, ``apply``).
MAX_RECURSIVE_TANKS = 200


def _kernels():
    from cmsim.rtd import _kernels

    return _kernels


def _finite_array(name: str, value: Any, ndim: int | tuple[int, ...]) -> np.ndarray:
    """:func:`cmsim._validate.finite_array` with a one-pass fast path for float64 arrays.

    The sum of an array is finite only if every element is (a NaN propagates, an infinity stays
    infinite or turns into NaN), so a finite ``np.add.reduce`` proves finiteness without the
    boolean temporary of ``np.isfinite``: at N = 1e6 that check was ~12 % of a K = 50 direct
    convolution. A non-finite sum (bad element, or finite elements whose sum overflows) falls
    back to the full check, which names the first bad element.
    """
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if isinstance(value, np.ndarray) and value.dtype == np.float64 and value.ndim in allowed:
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.add.reduce(value, axis=None)
        if math.isfinite(total):
            return value
    return _validate.finite_array(name, value, ndim=ndim)


def _float_array(name: str, value: Any, ndim: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float64 array of an allowed ``ndim``, *without* the finiteness check.

    For callers that detect non-finite values on their own results instead of by an extra pass
    over the input (and then call :func:`cmsim._validate.finite_array` for the message).
    """
    try:
        x = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(name, value, f"must be an array of real numbers ({exc})") from None
    if x.ndim not in ndim:
        raise ParameterError(name, f"array of shape {x.shape}", f"must have ndim in {ndim}")
    return x


class _Streaming:
    """Shape handling shared by the streaming filters (batch fixed on first use)."""

    _batch: int | None
    _one_d: bool | None

    def _init_batch(self, batch: Any) -> None:
        if batch is None:
            self._batch = None
        else:
            if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
                raise ParameterError("batch", batch, "must be an integer >= 1 or None")
            self._batch = int(batch)
        self._one_d = None

    def _prepare(
        self, chunk: Any, out: np.ndarray | None, check_finite: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        if check_finite:
            x = _finite_array("chunk", chunk, ndim=(1, 2))
        else:  # the caller checks finiteness itself (e.g. on the state after the run)
            x = _float_array("chunk", chunk, ndim=(1, 2))
        one_d = x.ndim == 1
        x2 = x.reshape(1, -1) if one_d else x
        rows = x2.shape[0]
        if self._batch is None:
            self._batch = rows
            self._allocate_state(rows)
        elif rows != self._batch:
            raise ParameterError(
                "chunk", f"array of shape {x.shape}",
                f"must have {self._batch} row(s) (batch size fixed at construction/first call)",
            )
        x2 = np.ascontiguousarray(x2)
        if out is None:
            y2 = np.empty_like(x2)
        else:
            if not isinstance(out, np.ndarray) or out.shape != x.shape or out.dtype != np.float64:
                raise ParameterError(
                    "out", getattr(out, "shape", out),
                    f"must be a float64 ndarray of shape {x.shape}",
                )
            if not out.flags.c_contiguous:
                raise ParameterError("out", "non-contiguous array", "must be C-contiguous")
            y2 = out.reshape(1, -1) if one_d else out
        return x2, y2, one_d

    def _ensure_state(self) -> None:
        if self._batch is None:
            self._batch = 1
            self._allocate_state(1)

    def _steady_rows(self, steady_input: Any) -> np.ndarray:
        """Validate a steady inlet flow (scalar or one value per row) and broadcast it to rows.

        A 1-D ``steady_input`` fixes the batch size when it is not fixed yet; the state is
        allocated (one row by default) before returning the read-only ``(batch,)`` view.
        """
        u = _validate.finite_array("steady_input", steady_input, ndim=(0, 1))
        if u.ndim == 1:
            if self._batch is None:
                self._batch = u.size
                self._allocate_state(u.size)
            elif u.size != self._batch:
                raise ParameterError("steady_input", f"array of shape {u.shape}",
                                     f"must be a scalar or have {self._batch} element(s)")
        self._ensure_state()
        assert self._batch is not None
        return np.broadcast_to(u, (self._batch,))

    def _allocate_state(self, rows: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def batch(self) -> int | None:
        """Number of rows (series) this filter streams, or None before the first chunk."""
        return self._batch


class TanksInSeriesFilter(_Streaming):
    """Streaming exact zero-order-hold model of a chain of ``n_tanks`` equal ideal tanks.

    The chain is the compartment (mass-state) model of docs/rtd.md with ``n_tanks``
    compartments of residence time ``tau_i = mean_residence_time / n_tanks``: tank ``i`` holds
    mass ``M_i`` [kg] and discharges ``M_i / tau_i`` [kg/s] into tank ``i+1``. Per tick the mass
    fed during the tick, ``dt * u[k]``, enters tank 0 at the start of the tick, the chain evolves
    exactly over ``dt`` (transition matrix ``Phi = exp(A dt)``, lower-triangular Toeplitz with
    ``Phi_ij = exp(-r) r^(i-j) / (i-j)!``, ``r = dt / tau_i``) and ``y[k]`` is the mass that left
    the last tank during the tick divided by ``dt``. This gives exactly the bin-integrated gamma
    kernel ``w[j] = F((j+1) dt) - F(j dt)`` (``F`` = regularised lower incomplete gamma), the same
    sequence as the ZOH input / instantaneous output reading of docs/rtd.md (streaming filters,
    scheme (a)); its
    impulse response starts at ``y[0] = F(dt)``. Mass is conserved per tick by construction.

    Parameters
    ----------
    mean_residence_time : float
        Mean residence time of the whole chain ``tau`` [s], > 0.
    n_tanks : int
        Number of equal tanks, an integer >= 1. A non-integer (gamma) shape has no finite
        recursive form: use ``Convolver(TanksInSeries(tau, n).kernel(dt))`` instead.
    dt : float
        Time step [s], > 0.
    batch : int, optional
        Number of series (rows) streamed in parallel; fixed by the first chunk when omitted.

    Notes
    -----
    Three exact realisations of the same kernel, chosen from ``n = n_tanks`` and
    ``r = dt / tau_i``:

    * cascade form (``n <= 8`` and ``r <= 0.5``, the usual case): ``W(z) = Q(z^-1) / (1 - a
      z^-1)^n`` with ``a = exp(-r)``; ``n`` equal first-order sections (one fused multiply-add of
      loop-carried latency each) followed by a vectorised ``n``-tap FIR with the positive
      coefficients ``Q`` (generalised Eulerian polynomial). About 1.3-1.6 ns/sample for n = 5
      (the 4-cycle FMA latency is the floor). The tank masses are an exact positive combination
      of the section states (Worpitzky's identity), converted per call, not per sample. For
      every ``n``, long chunks (from about 8 decay lengths of ``a^k k^(n-1)`` down to 1e-300,
      e.g. 7e4 ticks for n = 5 at ``r = 1/12``) run as two interleaved lanes: the second half
      from a zero state plus the free response of the state at the split, added until it falls
      below 1e-290 (states below that are dropped); same state layout. About 1.0-1.8 ns/sample
      for n = 1-8 (section states in registers, fused FIR pass);
    * scaled Jordan coordinates (transition ``a I + a r N``, O(n) per sample) whenever that map
      to the tank masses is well conditioned;
    * otherwise the O(n^2) recursion on the tank masses themselves.

    All coefficients are non-negative, so a non-negative input never gives a negative output
    (after :meth:`set_mean_residence_time` the first ``n - 1`` outputs of the cascade form depend
    on reconstructed past values and are clipped at 0, a change at the round-off level). Outputs
    are exact to a few ulp for ``n_tanks`` up to at least 50.
    """

    def __init__(
        self,
        mean_residence_time: float,
        n_tanks: int,
        dt: float,
        batch: int | None = None,
    ) -> None:
        self._n = _check_n_tanks(n_tanks)
        self._dt = _validate.positive("dt", dt)
        self._init_batch(batch)
        self._state: np.ndarray | None = None  # (batch, state size) in the current coordinates
        self._clip_head = False
        self._set_coefficients(_validate.positive("mean_residence_time", mean_residence_time))
        if self._batch is not None:
            self._allocate_state(self._batch)

    # ------------------------------------------------------------------ coefficients
    def _set_coefficients(self, tau: float) -> None:
        c = _chain_coefficients(self._n, self._dt, tau)
        self._tau = tau
        self._r = c.r
        self._a = c.a
        self._alpha = c.alpha
        self._scaled = c.scaled
        self._form = c.form
        # per-filter copies: the cached arrays stay as computed
        self._phi = c.phi.copy()
        self._c_mass = c.c_mass.copy()
        self._s_mat = c.s_mat.copy()
        self._c_z = c.c_z.copy()
        self._h_z = c.h_z.copy()
        if c.form == "cascade":
            self._q_fir = c.q_fir.copy()
            self._min_split = c.min_split

    # ------------------------------------------------------------------ state
    def _state_size(self) -> int:
        return max(self._n, 2 * self._n - 2) if self._form == "cascade" else self._n

    def _allocate_state(self, rows: int) -> None:
        self._state = np.zeros((rows, self._state_size()))

    def _masses_over_dt(self) -> np.ndarray:
        """Tank masses / dt, shape (batch, n) (pre-injection state of the next tick)."""
        assert self._state is not None
        if self._form == "cascade":
            return _cascade_to_masses(self._state[:, : self._n], self._a, self._r)
        if self._scaled:
            return self._state @ self._s_mat.T
        return self._state.copy()

    def _set_masses_over_dt(self, q: np.ndarray) -> None:
        self._clip_head = False
        if self._form == "cascade":
            self._state = _cascade_from_masses(q, self._a, self._r)
            # reconstructed past values of the last section may carry round-off of either sign
            self._clip_head = self._n > 1
        elif self._scaled:
            self._state = np.ascontiguousarray(np.linalg.solve(self._s_mat, q.T).T)
        else:
            self._state = np.ascontiguousarray(q, dtype=np.float64)

    # ------------------------------------------------------------------ API
    @property
    def mean_residence_time(self) -> float:
        """Current mean residence time of the chain [s]."""
        return self._tau

    @property
    def n_tanks(self) -> int:
        """Number of tanks [-]."""
        return self._n

    @property
    def dt(self) -> float:
        """Time step [s]."""
        return self._dt

    @property
    def tank_masses(self) -> np.ndarray:
        """Mass in each tank, shape (batch, n_tanks) [kg] for an input in [kg/s] (tick end)."""
        self._ensure_state()
        return self._masses_over_dt() * self._dt

    @property
    def holdup(self) -> np.ndarray:
        """Mass inside the chain per row, shape (batch,) [kg] for an input in [kg/s].

        Equal to ``dt * sum(inputs) - dt * sum(outputs)`` since the last reset (plus the initial
        hold-up), i.e. the sum of the tank masses ``M_i`` at the end of the last tick.
        """
        self._ensure_state()
        assert self._state is not None
        if self._form == "cascade":
            return self._masses_over_dt().sum(axis=1) * self._dt
        if self._scaled:
            return self._state @ self._h_z * self._dt
        return self._state.sum(axis=1) * self._dt

    def step(self, chunk: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Advance the chain by one chunk of ticks.

        Parameters
        ----------
        chunk : array_like, shape (n,) or (batch, n)
            Inlet flow per tick [input units, e.g. kg/s]; finite.
        out : ndarray, optional
            Preallocated C-contiguous float64 output of the same shape.

        Returns
        -------
        ndarray
            Outlet flow per tick [same units as ``chunk``], same shape as ``chunk``.

        Raises
        ------
        cmsim.errors.ParameterError
            If ``chunk`` is not 1-D/2-D, not finite (the filter state is then left unchanged;
            ``out`` may have been written), has the wrong number of rows, or ``out`` is invalid.
        """
        # Finiteness is checked on the state after the run instead of on the chunk before it (a
        # full extra pass over the data): a NaN/inf input enters tank 0 and stays in the state.
        x2, y2, one_d = self._prepare(chunk, out, check_finite=False)
        assert self._state is not None
        saved = self._state.copy()
        clip_head = self._clip_head
        k = _kernels()
        rows, length = x2.shape
        parallel = rows >= PARALLEL_MIN_ROWS and rows * length >= PARALLEL_MIN_SAMPLES
        if self._form == "cascade":
            run_split, rows_serial, rows_parallel = k.cascade_family(self._n)
            if rows == 1:
                run_split(x2[0], y2[0], self._state[0], self._a, self._q_fir, self._min_split)
            else:
                run = rows_parallel if parallel else rows_serial
                run(x2, y2, self._state, self._a, self._q_fir, self._min_split)
            if self._clip_head and length > 0:
                head = min(self._n - 1, length)
                y_head = y2[:, :head]
                nonneg = x2[:, :head].min(axis=1) >= 0.0
                y_head[nonneg] = np.maximum(y_head[nonneg], 0.0)
                self._clip_head = length < self._n - 1
        elif self._scaled:
            if rows == 1:
                run = k.tisz_run5 if self._n == 5 else k.tisz_run
                run(x2[0], y2[0], self._state[0], self._a, self._alpha, self._c_z)
            else:
                run = k.tisz_rows_parallel if parallel else k.tisz_rows_serial
                run(x2, y2, self._state, self._a, self._alpha, self._c_z)
        else:
            if rows == 1:
                run = k.tis_run5 if self._n == 5 else k.tis_run
                run(x2[0], y2[0], self._state[0], self._phi, self._c_mass)
            else:
                run = k.tis_rows_parallel if parallel else k.tis_rows_serial
                run(x2, y2, self._state, self._phi, self._c_mass)
        if not np.isfinite(self._state).all():
            self._state = saved
            self._clip_head = clip_head
            _validate.finite_array("chunk", x2)  # raises, naming the first bad element
            raise ParameterError("chunk", f"array with max |value| {np.abs(x2).max():g}",
                                 "is too large: the recursion overflowed")
        return y2[0] if one_d and out is None else (out if out is not None else y2)

    def set_mean_residence_time(self, mean_residence_time: float) -> None:
        """Change the mean residence time mid-stream, keeping the tank masses.

        Mass-state semantics (docs/rtd.md, compartment model): after the change tank ``i``
        discharges
        ``M_i / tau_i_new``, so a faster blender (smaller ``tau``) empties part of its hold-up
        over the next ticks. Total mass is conserved exactly across the change.

        Parameters
        ----------
        mean_residence_time : float
            New mean residence time of the whole chain [s], > 0.
        """
        tau = _validate.positive("mean_residence_time", mean_residence_time)
        if self._state is None:
            self._set_coefficients(tau)
            return
        q = self._masses_over_dt()
        self._set_coefficients(tau)
        self._set_masses_over_dt(q)

    def reset(self, steady_input: Any = None) -> None:
        """Empty the chain, or put it at steady state for a constant input.

        Parameters
        ----------
        steady_input : float or array_like of shape (batch,), optional
            Constant inlet flow per row [input units]; None empties the chain. At steady state
            the next outputs equal the input and :attr:`holdup` is
            ``dt * u * sum_{m>=1} (1 - F(m dt))`` (``= u (tau - dt/2)`` to O(dt^2)).
        """
        if steady_input is None:
            if self._state is not None:
                self._state[:] = 0.0
            self._clip_head = False
            return
        u = self._steady_rows(steady_input).astype(np.float64)
        assert self._state is not None and self._batch is not None
        n = self._n
        self._clip_head = False
        if self._form == "cascade":
            # every section at its fixed point u / (1 - a)^(i+1), at every past tick
            om = -math.expm1(-self._r)
            st = np.empty((self._batch, self._state_size()))
            for i in range(n):
                st[:, i] = u / om ** (i + 1)
            st[:, n:] = (u / om**n)[:, None]
            self._state = st
        elif self._scaled:
            # pre-injection fixed point of z = J (z + e0 u), J = a I + alpha N (bidiagonal)
            z = np.zeros((self._batch, n))
            om = -math.expm1(-self._r)  # 1 - a, accurate for small r
            z[:, 0] = self._a * u / om
            if n > 1:
                z[:, 1] = self._alpha * (z[:, 0] + u) / om
            for i in range(2, n):
                z[:, i] = self._alpha * z[:, i - 1] / om
            self._state = z
        else:
            # q = Phi (q + e0 u), forward substitution down the lower-triangular Toeplitz Phi
            q = np.zeros((self._batch, n))
            om = -math.expm1(-self._r)
            for i in range(n):
                acc = self._phi[i] * u
                for j in range(i):
                    acc = acc + self._phi[i - j] * q[:, j]
                q[:, i] = acc / om
            self._state = q


class PlugFlowDelay(_Streaming):
    """Streaming pure delay (plug flow) of an integer number of ticks, as a ring buffer.

    ``y[k] = u[k - D]`` with ``D = round(delay / dt)`` ticks (zero before the first ``D`` ticks
    unless reset to a steady state). ``delay / dt`` must lie within ``1e-9 * max(1, delay/dt)``
    of an integer; with ``allow_rounding=True`` any delay is accepted and rounded half up
    (``D = floor(delay/dt + 0.5)``); the delay actually applied is :attr:`delay` ``= D dt``.

    Parameters
    ----------
    delay : float
        Dead time [s], >= 0.
    dt : float
        Time step [s], > 0.
    batch : int, optional
        Number of series (rows); fixed by the first chunk when omitted.
    allow_rounding : bool, optional
        Accept a delay that is not an integer number of ticks and round it (default False).
    """

    def __init__(
        self,
        delay: float,
        dt: float,
        batch: int | None = None,
        *,
        allow_rounding: bool = False,
    ) -> None:
        delay = _validate.non_negative("delay", delay)
        self._dt = _validate.positive("dt", dt)
        ratio = delay / self._dt
        ticks = math.floor(ratio + 0.5)
        if not allow_rounding and abs(ratio - ticks) > 1e-9 * max(1.0, ratio):
            raise ParameterError(
                "delay", delay,
                f"must be an integer multiple of dt={self._dt} (delay/dt = {ratio!r}); "
                "pass allow_rounding=True to round it to the nearest tick",
            )
        self._ticks = int(ticks)
        self._init_batch(batch)
        self._buf: np.ndarray | None = None
        self._head = 0
        if self._batch is not None:
            self._allocate_state(self._batch)

    def _allocate_state(self, rows: int) -> None:
        self._buf = np.zeros((rows, self._ticks))
        self._head = 0

    @property
    def ticks(self) -> int:
        """Delay in ticks ``D`` [-]."""
        return self._ticks

    @property
    def delay(self) -> float:
        """Delay actually applied, ``D * dt`` [s]."""
        return self._ticks * self._dt

    @property
    def holdup(self) -> np.ndarray:
        """Mass in transit per row, shape (batch,) [kg] for an input in [kg/s] (``dt * sum`` of
        the last ``D`` inputs)."""
        self._ensure_state()
        assert self._buf is not None
        return self._buf.sum(axis=1) * self._dt

    def step(self, chunk: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Delay one chunk of ticks.

        Parameters
        ----------
        chunk : array_like, shape (n,) or (batch, n)
            Inlet flow per tick [input units]; finite.
        out : ndarray, optional
            Preallocated C-contiguous float64 output of the same shape.

        Returns
        -------
        ndarray
            ``chunk`` delayed by :attr:`ticks` ticks, same shape.
        """
        x2, y2, one_d = self._prepare(chunk, out)
        buf = self._buf
        assert buf is not None
        d = self._ticks
        n = x2.shape[1]
        if d == 0:
            y2[...] = x2
        elif n >= d:
            # oldest D values come out first, then the chunk itself; the buffer becomes the tail
            h = self._head
            y2[:, : d - h] = buf[:, h:]
            y2[:, d - h : d] = buf[:, :h]
            y2[:, d:] = x2[:, : n - d]
            buf[...] = x2[:, n - d :]
            self._head = 0
        else:
            h = self._head
            first = min(n, d - h)
            y2[:, :first] = buf[:, h : h + first]
            buf[:, h : h + first] = x2[:, :first]
            rest = n - first
            if rest:
                y2[:, first:] = buf[:, :rest]
                buf[:, :rest] = x2[:, first:]
            self._head = (h + n) % d
        return y2[0] if one_d and out is None else (out if out is not None else y2)

    def reset(self, steady_input: Any = None) -> None:
        """Empty the delay line, or fill it with a constant input per row.

        Parameters
        ----------
        steady_input : float or array_like of shape (batch,), optional
            Constant inlet flow per row [input units]; None empties the line.
        """
        if steady_input is None:
            if self._buf is not None:
                self._buf[:] = 0.0
                self._head = 0
            return
        u = self._steady_rows(steady_input)
        assert self._buf is not None and self._batch is not None
        self._buf[:] = u[:, None]
        self._head = 0


class _ChainCoefficients(NamedTuple):
    """Coefficients of a chain of ``n`` tanks at one ``(dt, tau)`` (see
    :class:`TanksInSeriesFilter`)."""

    r: float
    a: float
    alpha: float
    phi: np.ndarray
    c_mass: np.ndarray
    s_mat: np.ndarray
    c_z: np.ndarray
    h_z: np.ndarray
    scaled: bool
    form: str
    q_fir: np.ndarray | None
    min_split: int


@functools.lru_cache(maxsize=64)
def _chain_coefficients(n: int, dt: float, tau: float) -> _ChainCoefficients:
    """The chain's coefficients, computed once per ``(n, dt, tau)`` (a line and its monitor
    build the same stages; callers copy the arrays)."""
    from scipy.special import gammainc, gammaln

    r = n * dt / tau
    m = np.arange(n)
    # phi[m] = exp(-r) r^m / m!  (first column of the Toeplitz transition matrix)
    phi = np.exp(-r + m * math.log(r) - gammaln(m + 1))
    # mass leaving the chain within one tick per unit mass in tank j: P(Poisson(r) >= n - j)
    c_mass = gammainc(n - m, r)
    # Jordan basis: S = [e0, G e0, G^2 e0, ...] with G = (exp(r N) - I) / r
    g_col = np.zeros(n)
    s_mat = np.zeros((n, n))
    col = np.zeros(n)
    col[0] = 1.0
    # with many tanks and a long tick (large r) the basis overflows: then it is unusable and the
    # chain takes the mass form, which does not need it
    with np.errstate(over="ignore", invalid="ignore"):
        g_col[1:] = np.exp((m[1:] - 1) * math.log(r) - gammaln(m[1:] + 1))
        for j in range(n):
            s_mat[:, j] = col
            col = np.convolve(g_col, col)[:n]  # G @ col (G is lower-triangular Toeplitz)
        finite = bool(np.isfinite(s_mat).all())
        cond = np.linalg.cond(s_mat) if n > 1 and finite else (1.0 if n == 1 else math.inf)
        c_z, h_z = s_mat.T @ c_mass, s_mat.sum(axis=0)  # S^T 1: mass per unit scaled state
    scaled = bool(cond <= _SCALED_FORM_MAX_COND)
    a = math.exp(-r)
    form = "cascade" if n <= _CASCADE_MAX_TANKS and r <= _CASCADE_MAX_R else (
        "jordan" if scaled else "mass")
    cascade = form == "cascade"
    return _ChainCoefficients(
        r=r, a=a, alpha=a * r, phi=phi, c_mass=c_mass, s_mat=s_mat, c_z=c_z, h_z=h_z,
        scaled=scaled, form=form, q_fir=_cascade_numerator(n, r) if cascade else None,
        min_split=_two_lane_min_length(n, r) if cascade else 0)


def _two_lane_min_length(n: int, r: float) -> int:
    """Shortest chunk [ticks] for which the cascade runs as two interleaved lanes.

    The second lane needs the free response of the state at the split added until it decays by
    about ``1e-300``: ``a^k k^(n-1) = exp(-r k) k^(n-1)``, i.e. ``k ~ (690 + (n-1) ln k) / r``
    ticks (more for a very large state, which only costs time). The split pays off when that
    correction is a small part of the chunk, so it is used from 8 decay lengths on, and never
    below 4096 ticks.
    """
    decay = (690.0 + (n - 1) * math.log(700.0 / r)) / r
    return int(max(4096.0, 8.0 * decay))


def _check_n_tanks(n_tanks: Any) -> int:
    if isinstance(n_tanks, bool):
        raise ParameterError("n_tanks", n_tanks, "must be an integer >= 1, not bool")
    try:
        value = float(n_tanks)
    except (TypeError, ValueError):
        raise ParameterError("n_tanks", n_tanks, "must be an integer >= 1") from None
    if not math.isfinite(value) or value < 1.0:
        raise ParameterError("n_tanks", n_tanks, "must be an integer >= 1")
    if value != math.floor(value):
        raise ParameterError(
            "n_tanks", n_tanks,
            "must be an integer for the recursive filter; for a non-integer (gamma) shape use "
            "Convolver(TanksInSeries(mean_residence_time, n_tanks).kernel(dt))",
        )
    return int(value)


def _eulerian(i: int) -> list[int]:
    """Eulerian numbers ``A(i, l)``, ``l = 0 .. i-1`` (``j^i = sum_l A(i,l) C(j+l, i)``)."""
    row = [1]
    for m in range(2, i + 1):
        row = [(l + 1) * (row[l] if l < len(row) else 0)
               + (m - l) * (row[l - 1] if l >= 1 else 0) for l in range(m)]
    return row


@functools.lru_cache(maxsize=16)
def _eulerian_moments(n: int, terms: int) -> tuple[tuple[float, ...], ...]:
    """``J[m][k] = int_0^1 theta^k E_m(theta) dtheta`` (exact rationals, rounded once).

    ``E_m(theta) = sum_{l<=m} (-1)^l C(n, l) (m - l + theta)^(n-1)`` is the ``m``-th coefficient of
    the generalised Eulerian polynomial: ``sum_j (j + theta)^(n-1) t^j = sum_m E_m t^m / (1-t)^n``.
    """
    out = []
    for m in range(n):
        coef = [Fraction(0)] * n  # coefficients of theta^p, p = 0 .. n-1
        for ell in range(m + 1):
            base = m - ell
            sign = -1 if ell % 2 else 1
            for p in range(n):
                coef[p] += sign * math.comb(n, ell) * math.comb(n - 1, p) * base ** (n - 1 - p)
        out.append(tuple(float(sum(coef[p] / (p + k + 1) for p in range(n)))
                         for k in range(terms)))
    return tuple(out)


def _cascade_numerator(n: int, r: float) -> np.ndarray:
    """FIR ``q`` with ``sum_j w[j] z^-j = Q(z^-1) / (1 - a z^-1)^n`` for the gamma bin kernel.

    With ``h(t) = r^n t^(n-1) e^(-r t) / (n-1)!`` (time in ticks, ``a = exp(-r)``),
    ``q[m] = a^m r^n / (n-1)! int_0^1 e^(-r theta) E_m(theta) dtheta``; the exponential is expanded
    in its power series (``r <= 0.5``: 24 terms reach the round-off), so every coefficient is
    positive and accurate to a few ulp.
    """
    terms = 24
    moments = _eulerian_moments(n, terms)
    series = [(-r) ** k / math.factorial(k) for k in range(terms)]
    scale = r**n / math.factorial(n - 1)
    a = math.exp(-r)
    q = np.array([a**m * scale * math.fsum(c * jm for c, jm in zip(series, moments[m], strict=True))
                  for m in range(n)])
    return q


def _cascade_to_masses(u: np.ndarray, a: float, r: float) -> np.ndarray:
    """Tank masses / dt from the cascade sections ``u`` (batch, n) at the last tick.

    ``M_i / dt = (r^i / i!) sum_l A(i,l) a^(i-l) u_i[-1-(i-1-l)]`` (Worpitzky's identity on
    ``Phi^j[i, 0] = a^j (r j)^i / i!``), ``M_0 / dt = a u_0[-1]``; the older section values come
    from the exact backward recursion ``u_i[k-1] = (u_i[k] - u_{i-1}[k]) / a``.
    """
    n = u.shape[1]
    table = [[u[:, 0]]]  # table[i][d] = u_i at tick -1-d, d = 0 .. i-1
    masses = np.empty_like(u)
    masses[:, 0] = a * u[:, 0]
    for i in range(1, n):
        row = [u[:, i]]
        for d in range(1, i):
            row.append((row[d - 1] - table[i - 1][d - 1]) / a)
        table.append(row)
        acc = np.zeros(u.shape[0])
        for ell, coef in enumerate(_eulerian(i)):
            acc = acc + coef * a ** (i - ell) * row[i - 1 - ell]
        masses[:, i] = acc * (r**i / math.factorial(i))
    return masses


def _cascade_from_masses(masses: np.ndarray, a: float, r: float) -> np.ndarray:
    """Inverse of :func:`_cascade_to_masses`: cascade state (batch, max(n, 2n-2)) from masses."""
    rows, n = masses.shape
    state = np.zeros((rows, max(n, 2 * n - 2)))
    prev = [masses[:, 0] / a]
    state[:, 0] = prev[0]
    for i in range(1, n):
        # u_i[-1-d] = a^(i-1-d) Y + R_d with Y = u_i[-i] and R_d = a R_{d+1} + u_{i-1}[-1-d]
        rr = [np.zeros(rows) for _ in range(i)]
        for d in range(i - 2, -1, -1):
            rr[d] = a * rr[d + 1] + prev[d]
        eul = _eulerian(i)
        s_known = np.zeros(rows)
        for ell, coef in enumerate(eul):
            s_known = s_known + coef * a ** (i - ell) * rr[i - 1 - ell]
        fact = math.factorial(i)
        y_old = (masses[:, i] * (fact / r**i) - s_known) / (a**i * fact)
        prev = [a ** (i - 1 - d) * y_old + rr[d] for d in range(i)]
        state[:, i] = prev[0]
    for d in range(1, n - 1):
        state[:, n + d - 1] = prev[d]
    return state
