"""Univariate control charts for PAT readings (docs/monitor.md#control-charts).

Every chart is a small streaming object:

* ``update(x)`` takes one reading (or one reading per batch row) and returns the alarm;
* ``run(xs)`` takes a chunk of shape ``(n,)`` or ``(batch, n)`` and returns a boolean alarm
  array of the same shape;
* ``trace(xs)`` does the same and also returns the chart statistic(s) and limits.

State is carried between calls, so any chunking of a series gives exactly the one-shot result.
The batch shape is fixed by the first call (or ``batch=`` at construction): rows are
independent charts, which is how Monte Carlo average run lengths are computed in one call.

Missing readings (NaN, e.g. a sensor dropout) are skipped: the state is unchanged, the alarm is
False and the reported statistic repeats the last value. Charts do not reset themselves after
an alarm (the alarm stays on while the evidence persists); call :meth:`reset` to restart.

All parameters that scale with the noise are given in units of ``sigma``: ``L`` (limit
width), CUSUM ``k`` (reference value) and ``h`` (decision interval).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from cmsim._validate import finite_array, non_negative, positive
from cmsim.errors import ParameterError

__all__ = ["CUSUMChart", "EWMAChart", "MovingAverageChart", "ShewhartChart"]

# Western Electric rule bits reported by ShewhartChart.trace()["rule"]
RULE_BEYOND_L = 1
RULE_2_OF_3 = 2
RULE_4_OF_5 = 4
RULE_8_SAME_SIDE = 8


# ---------------------------------------------------------------------------------------------
# numba kernels (2-D arrays: rows are independent charts)
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _shewhart_kernel(z, limit, run_rules, hist, nhist, rule):
    n_rows, n = z.shape
    for r in range(n_rows):
        h = hist[r]
        for j in range(n):
            v = z[r, j]
            if math.isnan(v):
                rule[r, j] = 0
                continue
            for i in range(6, -1, -1):  # newest is h[0] after the shift
                h[i + 1] = h[i]
            h[0] = v
            if nhist[r] < 8:
                nhist[r] += 1
            m = nhist[r]
            code = 0
            if abs(v) > limit:
                code |= 1
            if run_rules:
                # Western Electric: 2 of 3 beyond 2 sigma, 4 of 5 beyond 1, 8 on one side
                if m >= 2 and _beyond(h, min(m, 3), 2.0) >= 2:
                    code |= 2
                if m >= 4 and _beyond(h, min(m, 5), 1.0) >= 4:
                    code |= 4
                if m >= 8 and _beyond(h, 8, 0.0) == 8:
                    code |= 8
            rule[r, j] = code


@njit(cache=True)
def _beyond(h, n, level):
    """Largest number of the newest ``n`` values beyond ``+level`` or beyond ``-level``."""
    up = 0
    lo = 0
    for i in range(n):
        if h[i] > level:
            up += 1
        elif h[i] < -level:
            lo += 1
    return max(up, lo)


@njit(cache=True)
def _ewma_kernel(x, target, lam, z_state, count, stat, width2):
    n_rows, n = x.shape
    q = (1.0 - lam) * (1.0 - lam)
    c = lam / (2.0 - lam)
    for r in range(n_rows):
        zr = z_state[r]
        k = count[r]
        for j in range(n):
            v = x[r, j]
            if math.isnan(v):
                stat[r, j] = zr
                width2[r, j] = np.nan
                continue
            zr = lam * v + (1.0 - lam) * zr
            k += 1
            stat[r, j] = zr
            width2[r, j] = c * (1.0 - q ** k)
        z_state[r] = zr
        count[r] = k


@njit(cache=True)
def _cusum_kernel(z, k, cp_state, cm_state, cp, cm):
    n_rows, n = z.shape
    for r in range(n_rows):
        a = cp_state[r]
        b = cm_state[r]
        for j in range(n):
            v = z[r, j]
            if not math.isnan(v):
                a = max(0.0, a + v - k)
                b = max(0.0, b - v - k)
            cp[r, j] = a
            cm[r, j] = b
        cp_state[r] = a
        cm_state[r] = b


@njit(cache=True)
def _moving_average_kernel(x, buf, nbuf, pos, mean, m_used):
    n_rows, n = x.shape
    w = buf.shape[1]
    for r in range(n_rows):
        b = buf[r]
        for j in range(n):
            v = x[r, j]
            if not math.isnan(v):
                b[pos[r]] = v
                pos[r] = (pos[r] + 1) % w
                if nbuf[r] < w:
                    nbuf[r] += 1
            m = nbuf[r]
            if m == 0:
                mean[r, j] = np.nan
                m_used[r, j] = 0
                continue
            s = 0.0
            for i in range(m):
                s += b[i]
            mean[r, j] = s / m
            m_used[r, j] = m if not math.isnan(v) else 0


# ---------------------------------------------------------------------------------------------
# base class
# ---------------------------------------------------------------------------------------------


class _Chart:
    """Shared chunk handling: shape checks, batch bookkeeping, update/run."""

    def __init__(self, target: float, sigma: float, batch: int | None) -> None:
        self.target = finite_array("target", target, ndim=0).item()
        self.sigma = positive("sigma", sigma)
        if batch is not None and (isinstance(batch, bool)
                                  or not isinstance(batch, int | np.integer) or batch < 1):
            raise ParameterError("batch", batch, "must be a positive int or None")
        self._batch_shape: tuple[int, ...] | None = None if batch is None else (int(batch),)
        self._fixed_batch = batch
        self._state_ready = False

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all readings (the batch shape stays fixed if it was given at construction)."""
        self._state_ready = False
        if self._fixed_batch is None:
            self._batch_shape = None

    def _init_state(self, rows: int) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _as_2d(self, xs: Any, name: str = "xs") -> tuple[np.ndarray, tuple[int, ...]]:
        arr = np.asarray(xs, dtype=np.float64)
        if arr.ndim not in (1, 2):
            raise ParameterError(name, f"array of shape {arr.shape}",
                                 "must have shape (n,) or (batch, n)")
        if np.isinf(arr).any():
            raise ParameterError(name, "contains infinity",
                                 "readings must be finite or NaN (missing)")
        bshape = arr.shape[:-1]
        if self._batch_shape is None:
            self._batch_shape = bshape
        elif bshape != self._batch_shape:
            raise ParameterError(name, f"array of shape {arr.shape}",
                                 f"batch shape is fixed to {self._batch_shape} by the first "
                                 "call or by batch=")
        rows = int(np.prod(bshape)) if bshape else 1
        if not self._state_ready:
            self._init_state(rows)
            self._state_ready = True
        return np.ascontiguousarray(arr.reshape(rows, arr.shape[-1])), arr.shape

    # -- public --------------------------------------------------------------------------
    def trace(self, xs: Any) -> dict[str, np.ndarray]:  # pragma: no cover - overridden
        raise NotImplementedError

    def run(self, xs: Any) -> np.ndarray:
        """Process a chunk of readings and return the alarms.

        Parameters
        ----------
        xs : array_like, shape (n,) or (batch, n)
            Readings in measurement units (NaN = missing).

        Returns
        -------
        ndarray of bool
            Alarm per reading, same shape as ``xs``.
        """
        return self.trace(xs)["alarm"]

    def update(self, x: Any) -> bool | np.ndarray:
        """Process one reading (one per batch row) and return its alarm.

        Parameters
        ----------
        x : float or array_like of shape (batch,)
            The reading(s).

        Returns
        -------
        bool or ndarray of bool
            The alarm(s).
        """
        arr = np.asarray(x, dtype=np.float64)
        alarm = self.run(arr[..., None])[..., 0]
        return bool(alarm) if alarm.ndim == 0 else alarm


# ---------------------------------------------------------------------------------------------
# charts
# ---------------------------------------------------------------------------------------------


class ShewhartChart(_Chart):
    """Shewhart individuals chart with optional Western Electric run rules.

    Parameters
    ----------
    target : float
        In-control mean ``mu0`` [measurement units].
    sigma : float
        In-control standard deviation of one reading [measurement units], > 0.
    L : float
        Limit width in units of sigma (default 3): alarm when ``|x - mu0| > L sigma``.
    run_rules : bool
        Also apply the Western Electric rules: 2 of 3 consecutive beyond 2 sigma, 4 of 5
        beyond 1 sigma (same side), 8 consecutive on one side of ``mu0``. Before 3 (5)
        readings exist the window holds the readings available.
    batch : int, optional
        Number of independent rows (fixed by the first call if omitted).

    Notes
    -----
    ARL0 = 1 / (2 Phi(-L)) = 370.4 for L = 3; with the run rules about 91.

    Examples
    --------
    >>> c = ShewhartChart(target=0.10, sigma=0.0025)
    >>> c.run([0.100, 0.104, 0.109]).tolist()
    [False, False, True]
    """

    def __init__(self, target: float, sigma: float, L: float = 3.0, *,  # noqa: N803
                 run_rules: bool = False, batch: int | None = None) -> None:
        super().__init__(target, sigma, batch)
        self.L = positive("L", L)
        self.run_rules = bool(run_rules)

    def _init_state(self, rows: int) -> None:
        self._hist = np.zeros((rows, 8))
        self._nhist = np.zeros(rows, dtype=np.int64)

    def trace(self, xs: Any) -> dict[str, np.ndarray]:
        """Process a chunk; return ``alarm``, ``statistic`` (x), ``lower``, ``upper`` and
        ``rule`` (bitmask: 1 beyond L sigma, 2 two of three, 4 four of five, 8 eight on one
        side)."""
        x2, shape = self._as_2d(xs)
        z = (x2 - self.target) / self.sigma
        rule = np.zeros(z.shape, dtype=np.int64)
        _shewhart_kernel(z, self.L, self.run_rules, self._hist, self._nhist, rule)
        lo = np.full(shape, self.target - self.L * self.sigma)
        hi = np.full(shape, self.target + self.L * self.sigma)
        rule = rule.reshape(shape)
        return {"alarm": rule > 0, "statistic": x2.reshape(shape).copy(), "lower": lo,
                "upper": hi, "rule": rule}


class EWMAChart(_Chart):
    """EWMA chart with exact time-varying limits.

    Parameters
    ----------
    target : float
        In-control mean ``mu0`` [measurement units].
    sigma : float
        In-control standard deviation of one reading [measurement units], > 0.
    lam : float
        Smoothing weight ``lambda`` in (0, 1].
    L : float
        Limit width in units of the EWMA's own standard deviation.
    batch : int, optional
        Number of independent rows.

    Notes
    -----
    :math:`z_k=\\lambda x_k+(1-\\lambda)z_{k-1}`, :math:`z_0=\\mu_0`; alarm when
    :math:`|z_k-\\mu_0|>L\\sigma\\sqrt{\\frac{\\lambda}{2-\\lambda}[1-(1-\\lambda)^{2k}]}`, with
    ``k`` the number of (non-missing) readings so far. ARL0 = 357 for lambda = 0.1, L = 2.7.

    Examples
    --------
    >>> c = EWMAChart(target=0.0, sigma=1.0, lam=0.2, L=3.0)
    >>> bool(c.update(0.5))
    False
    """

    def __init__(self, target: float, sigma: float, lam: float = 0.1,
                 L: float = 2.7, *, batch: int | None = None) -> None:  # noqa: N803
        super().__init__(target, sigma, batch)
        lam_f = positive("lam", lam)
        if lam_f > 1.0:
            raise ParameterError("lam", lam, "must be in (0, 1]")
        self.lam = lam_f
        self.L = positive("L", L)

    def _init_state(self, rows: int) -> None:
        self._z = np.full(rows, self.target)
        self._count = np.zeros(rows, dtype=np.int64)

    def trace(self, xs: Any) -> dict[str, np.ndarray]:
        """Process a chunk; return ``alarm``, ``statistic`` (z), ``lower`` and ``upper``
        (NaN limits at missing readings)."""
        x2, shape = self._as_2d(xs)
        stat = np.empty_like(x2)
        width2 = np.empty_like(x2)
        _ewma_kernel(x2, self.target, self.lam, self._z, self._count, stat, width2)
        half = self.L * self.sigma * np.sqrt(width2)
        alarm = np.abs(stat - self.target) > half  # NaN limits compare False
        return {"alarm": alarm.reshape(shape), "statistic": stat.reshape(shape),
                "lower": (self.target - half).reshape(shape),
                "upper": (self.target + half).reshape(shape)}


class CUSUMChart(_Chart):
    """Two-sided tabular CUSUM.

    Parameters
    ----------
    target : float
        In-control mean ``mu0`` [measurement units].
    sigma : float
        In-control standard deviation of one reading [measurement units], > 0.
    k : float
        Reference value in units of sigma (usually half the shift to detect: 0.5).
    h : float
        Decision interval in units of sigma (4 or 5).
    batch : int, optional
        Number of independent rows.

    Notes
    -----
    With :math:`z=(x-\\mu_0)/\\sigma`: :math:`C^+_k=\\max(0,C^+_{k-1}+z_k-k)`,
    :math:`C^-_k=\\max(0,C^-_{k-1}-z_k-k)`, alarm when either exceeds ``h``. ARL0 = 168 for
    (k, h) = (0.5, 4) and 465 for (0.5, 5).

    Examples
    --------
    >>> c = CUSUMChart(target=0.0, sigma=1.0, k=0.5, h=4.0)
    >>> c.run([1.5, 1.5, 1.5, 1.5, 1.5]).tolist()
    [False, False, False, False, True]
    """

    def __init__(self, target: float, sigma: float, k: float = 0.5, h: float = 4.0, *,
                 batch: int | None = None) -> None:
        super().__init__(target, sigma, batch)
        self.k = non_negative("k", k)
        self.h = positive("h", h)

    def _init_state(self, rows: int) -> None:
        self._cp = np.zeros(rows)
        self._cm = np.zeros(rows)

    def trace(self, xs: Any) -> dict[str, np.ndarray]:
        """Process a chunk; return ``alarm``, ``upper_statistic`` (C+), ``lower_statistic``
        (C-), both in units of sigma, and ``h``."""
        x2, shape = self._as_2d(xs)
        z = (x2 - self.target) / self.sigma
        cp = np.empty_like(z)
        cm = np.empty_like(z)
        _cusum_kernel(z, self.k, self._cp, self._cm, cp, cm)
        alarm = ((cp > self.h) | (cm > self.h)) & ~np.isnan(x2)
        return {"alarm": alarm.reshape(shape), "upper_statistic": cp.reshape(shape),
                "lower_statistic": cm.reshape(shape), "h": np.full(shape, self.h)}


class MovingAverageChart(_Chart):
    """Moving average of the last ``window`` readings with limits ``mu0 +- L sigma/sqrt(m)``.

    Parameters
    ----------
    target : float
        In-control mean ``mu0`` [measurement units].
    sigma : float
        In-control standard deviation of one reading [measurement units], > 0.
    window : int
        Number of readings averaged, >= 1.
    L : float
        Limit width in units of the average's standard deviation.
    batch : int, optional
        Number of independent rows.

    Notes
    -----
    Before ``window`` readings exist the average of the ``m`` available readings is used with
    its exact limit ``L sigma / sqrt(m)``. The average lags the data by ``(window-1)/2``
    readings.

    Examples
    --------
    >>> c = MovingAverageChart(target=0.0, sigma=1.0, window=4)
    >>> c.run([1.0, 1.0, 2.0, 3.5]).tolist()
    [False, False, False, True]
    """

    def __init__(self, target: float, sigma: float, window: int = 5, L: float = 3.0, *,  # noqa: N803
                 batch: int | None = None) -> None:
        super().__init__(target, sigma, batch)
        if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
            raise ParameterError("window", window, "must be an int >= 1")
        self.window = int(window)
        self.L = positive("L", L)

    def _init_state(self, rows: int) -> None:
        self._buf = np.zeros((rows, self.window))
        self._nbuf = np.zeros(rows, dtype=np.int64)
        self._pos = np.zeros(rows, dtype=np.int64)

    def trace(self, xs: Any) -> dict[str, np.ndarray]:
        """Process a chunk; return ``alarm``, ``statistic`` (moving average), ``lower`` and
        ``upper`` (NaN limits at missing readings)."""
        x2, shape = self._as_2d(xs)
        mean = np.empty_like(x2)
        m_used = np.zeros(x2.shape, dtype=np.int64)
        _moving_average_kernel(x2, self._buf, self._nbuf, self._pos, mean, m_used)
        with np.errstate(divide="ignore", invalid="ignore"):
            half = np.where(m_used > 0, self.L * self.sigma / np.sqrt(m_used), np.nan)
        alarm = np.abs(mean - self.target) > half
        return {"alarm": alarm.reshape(shape), "statistic": mean.reshape(shape),
                "lower": (self.target - half).reshape(shape),
                "upper": (self.target + half).reshape(shape)}
