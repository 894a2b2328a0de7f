"""Funnel plots: peak response to rectangular feeder pulses and tolerable disturbances.

For a rectangular disturbance of relative height A and duration d entering an RTD, the outlet
deviation is ``A [F(t) - F(t - d)]``; its peak is ``A g(d)`` with ``g(d) = max_t [F(t) - F(t-d)]``
(docs/rtd.md, funnel plots; García-Muñoz et al. 2018; rtdpy ``funnelplot``). The funnel boundary is
``A*(d) = delta / g(d)`` (low-dose limit).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from cmsim import _validate
from cmsim.errors import ParameterError
from cmsim.rtd._base import RTDModel


def _optimize() -> Any:
    """``scipy.optimize``, imported on first use (it costs ~0.3 s at start-up)."""
    from scipy import optimize  # noqa: PLC0415

    return optimize

__all__ = [
    "FunnelBranches",
    "excursion_duration",
    "funnel_boundary",
    "longest_tolerable_stop",
    "peak_response",
]

#: Points of the grid (shared by all durations) that locates the maxima of F(t) - F(t-d)
#: before the local refinement.
_GRID = 801


class FunnelBranches(NamedTuple):
    """Funnel boundary for a finite API fraction, both branches as positive magnitudes.

    Attributes
    ----------
    overfeed : numpy.ndarray
        Smallest relative overfeed of the disturbed feeder's flow [-] that pushes the
        concentration above ``1 + delta`` (for each duration).
    underfeed : numpy.ndarray
        Smallest relative underfeed magnitude [-] that pushes it below ``1 - delta``; values
        >= 1 mean even a complete stop of that duration stays inside the limits.
    """

    overfeed: np.ndarray
    underfeed: np.ndarray


def _check_model(model: Any) -> RTDModel:
    if not isinstance(model, RTDModel):
        raise ParameterError("model", model, "must be an RTDModel")
    return model


def _durations(durations: Any) -> np.ndarray:
    d = _validate.finite_array("durations", durations)
    if np.any(d < 0.0):
        i = int(np.flatnonzero(d.ravel() < 0.0)[0])
        raise ParameterError("durations", f"element {i} = {float(d.ravel()[i])!r}", "must be >= 0")
    return d


def _delta(delta: Any) -> float:
    return _validate.probability("delta", delta)


def _h(model: RTDModel, d: Any, t: np.ndarray) -> np.ndarray:
    return model._cdf(t) - model._cdf(t - d)


#: Golden-section ratio (the bracket shrinks by this factor per step).
_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


def _hermite(grid: np.ndarray, f: np.ndarray, e: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Cubic Hermite interpolation of F (values ``f``, slopes ``e``) on ``grid`` at ``x``; 0
    below the grid."""
    j = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, grid.size - 2)
    step = grid[j + 1] - grid[j]
    u = (x - grid[j]) / step
    h00, h10 = (1 + 2 * u) * (1 - u) ** 2, u * (1 - u) ** 2
    h01, h11 = u * u * (3 - 2 * u), u * u * (u - 1)
    out = h00 * f[j] + h10 * step * e[j] + h01 * f[j + 1] + h11 * step * e[j + 1]
    return np.where(x < grid[0], 0.0, out)


def _argmax_h_all(model: RTDModel, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Times t* of the maxima of F(t) - F(t - d) and the maxima, for all durations ``d`` (> 0)
    together.

    F and E are evaluated once on a grid shared by every duration; F(t - d) between its points
    comes from cubic Hermite interpolation. That locates each maximum to a few grid steps; a
    golden-section search on the exact F then refines every bracket to 1e-10 s (relative beyond
    1 s), evaluating F at two points per duration per step in one call. A series of RTDs that
    integrates numerically thus pays for about 2 x 801 + 80 x len(d) points, not 1,600 per
    duration."""
    lo = model.lower_bound
    t_end = min(float(model._solve(np.array([1e-13]), True)[0]), model.upper_bound)
    grid = np.linspace(lo, t_end + float(d.max()), _GRID)
    f_grid, e_grid = model._cdf(grid), model._pdf(grid)
    approx = f_grid[None, :] - _hermite(grid, f_grid, e_grid, grid[None, :] - d[:, None])
    i = np.argmax(approx, axis=1)
    t_grid = grid[i]
    g_grid = _h(model, d, t_grid)
    a = grid[np.maximum(i - 2, 0)]
    b = grid[np.minimum(i + 2, _GRID - 1)]
    tol = 1e-10 * np.maximum(1.0, np.abs(b))
    c = b - _INV_PHI * (b - a)
    e = a + _INV_PHI * (b - a)
    hc, he = np.split(_h(model, np.tile(d, 2), np.concatenate((c, e))), 2)
    for _ in range(200):
        if np.all(b - a <= tol):
            break
        left = hc >= he          # the maximum lies in [a, e]: drop (e, b]
        b = np.where(left, e, b)
        a = np.where(left, a, c)
        new = np.where(left, b - _INV_PHI * (b - a), a + _INV_PHI * (b - a))
        h_new = _h(model, d, new)
        c, e, hc, he = (np.where(left, new, e), np.where(left, c, new),
                        np.where(left, h_new, he), np.where(left, hc, h_new))
    t_ref = np.where(hc >= he, c, e)
    g_ref = np.maximum(hc, he)
    better = g_ref >= g_grid
    return np.where(better, t_ref, t_grid), np.where(better, g_ref, g_grid)


def _peaks(model: RTDModel, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Times t* of the maxima of F(t) - F(t - d) and the maxima g(d), durations ``d`` > 0."""
    if model.monotone_density:
        # E non-increasing after the delay: the maximum is at t = lower_bound + d
        t = model.lower_bound + d
        return t, model._cdf(t)
    return _argmax_h_all(model, d)


def _g_all(model: RTDModel, d: np.ndarray) -> np.ndarray:
    """g(d) for an array of durations [s] (0 where d <= 0)."""
    out = np.zeros(d.shape)
    pos = d > 0.0
    if pos.any():
        out[pos] = _peaks(model, d[pos])[1]
    return out


def _g_scalar(model: RTDModel, d: float) -> float:
    return float(_g_all(model, np.array([float(d)]))[0])


def peak_response(model: RTDModel, durations: Any) -> Any:
    """Peak outlet response to a unit rectangular pulse, ``g(d) = max_t [F(t) - F(t - d)]``.

    Parameters
    ----------
    model : RTDModel
        RTD from the disturbance point to where quality is judged.
    durations : float or array_like
        Pulse durations d [s], >= 0.

    Returns
    -------
    float or numpy.ndarray
        g(d) [-] in [0, 1], same shape as ``durations``.

    Notes
    -----
    For a density that is non-increasing after its delay (CSTR, PFR + CSTR, TIS with n <= 1)
    ``g(d) = F(lower_bound + d)`` exactly. Otherwise the maximum (where E(t) = E(t - d)) is
    located on a grid and refined by golden-section search to 1e-10 s, for all durations
    together; since the maximum is flat, g carries only the model's own error in F (<= 1e-13
    for the closed forms).
    """
    model = _check_model(model)
    d = _durations(durations)
    out = _g_all(model, d.ravel()).reshape(d.shape)
    return float(out) if d.ndim == 0 else out


def funnel_boundary(model: RTDModel, delta: float, durations: Any, *,
                    api_fraction: float | None = None) -> Any:
    """Funnel boundary: the smallest pulse magnitude that puts the outlet out of limits.

    Parameters
    ----------
    model : RTDModel
        RTD from the disturbance point to where quality is judged.
    delta : float
        Specification half-width as a fraction (0.05 for +-5 %), in (0, 1).
    durations : float or array_like
        Pulse durations d [s], >= 0.
    api_fraction : float, optional
        Nominal mass fraction w0 of the disturbed component, in (0, 1). ``None`` (default):
        low-dose limit ``delta / g(d)``, a relative deviation of the filtered component flow.

    Returns
    -------
    float or numpy.ndarray or FunnelBranches
        With ``api_fraction=None``: ``delta / g(d)`` [-] (``inf`` where ``d == 0``). Otherwise
        a :class:`FunnelBranches` of positive magnitudes
        ``overfeed = delta / [(1 - w0 (1 + delta)) g(d)]`` and
        ``underfeed = delta / [(1 - w0 (1 - delta)) g(d)]`` (docs/rtd.md, funnel plots; exact for a
        rectangular pulse of one component while the others stay nominal).
    """
    delta = _delta(delta)
    g = np.asarray(peak_response(model, durations), dtype=np.float64)
    with np.errstate(divide="ignore"):
        base = np.where(g > 0.0, delta / np.where(g > 0.0, g, 1.0), np.inf)
    if api_fraction is None:
        return float(base) if base.ndim == 0 else base
    w0 = _validate.probability("api_fraction", api_fraction)
    if not w0 * (1.0 + delta) < 1.0:
        raise ParameterError("api_fraction", api_fraction,
                             f"must be < 1/(1 + delta) = {1.0 / (1.0 + delta):.6g}")
    over = base / (1.0 - w0 * (1.0 + delta))
    under = base / (1.0 - w0 * (1.0 - delta))
    if base.ndim == 0:
        return FunnelBranches(float(over), float(under))  # type: ignore[arg-type]
    return FunnelBranches(over, under)


def longest_tolerable_stop(model: RTDModel, delta: float, *,
                           api_fraction: float | None = None) -> float:
    """Longest complete stop of the disturbed feeder that keeps the outlet within limits [s].

    Solves ``g(d) = delta`` (low-dose limit, a -100 % pulse of the filtered component flow) or,
    with ``api_fraction = w0``, ``g(d) = delta / (1 - w0 (1 - delta))`` (concentration limit).

    Parameters
    ----------
    model : RTDModel
        RTD from the feeder to where quality is judged.
    delta : float
        Specification half-width as a fraction, in (0, 1).
    api_fraction : float, optional
        Nominal mass fraction of the stopped component, in (0, 1).

    Returns
    -------
    float
        d_stop [s], to 1e-9 s (``inf`` if even an endless stop stays within limits).
    """
    model = _check_model(model)
    delta = _delta(delta)
    target = delta
    if api_fraction is not None:
        w0 = _validate.probability("api_fraction", api_fraction)
        target = delta / (1.0 - w0 * (1.0 - delta))
    if target >= 1.0:
        return math.inf
    # g(d) >= F(lower_bound + d), so d = quantile(target) - lower_bound brackets the root
    d_hi = float(model.quantile(target)) - model.lower_bound
    d_hi = max(d_hi, 1e-12) * (1.0 + 1e-9) + 1e-12
    return float(_optimize().brentq(lambda x: _g_scalar(model, x) - target, 0.0, d_hi,
                                 xtol=1e-12, rtol=4 * np.finfo(float).eps, maxiter=200))


def excursion_duration(model: RTDModel, duration: float, multiple: float) -> float:
    """Time the outlet stays beyond the limit for a pulse ``multiple`` times the boundary [s].

    A pulse of height ``A = multiple * delta / g(d)`` and duration ``d`` keeps
    ``A [F(t) - F(t-d)] > delta`` for a time D (docs/rtd.md, "sensor frequency"); the PAT
    period must be well below D to catch it. For a CSTR,
    ``D = d + tau ln m + tau ln(1 - (1 - exp(-d/tau))/m)``.

    Parameters
    ----------
    model : RTDModel
        RTD from the disturbance point to the sensor.
    duration : float
        Pulse duration d [s], > 0.
    multiple : float
        m = A / A*(d) [-], >= 1.

    Returns
    -------
    float
        D [s] (0 when ``multiple == 1``), to about 1e-9 s. Assumes ``F(t) - F(t-d)`` is
        unimodal in t (true for log-concave E: CSTR, TIS n >= 1, and their series). The
        specification half-width cancels out: only the ratio m matters.
    """
    model = _check_model(model)
    d = _validate.positive("duration", duration)
    m = _validate.positive("multiple", multiple)
    if m < 1.0:
        raise ParameterError("multiple", multiple, "must be >= 1")
    if m == 1.0:
        return 0.0
    t_peak, g_peak = _peaks(model, np.array([d]))
    t_star, level = float(t_peak[0]), float(g_peak[0]) / m
    t_far = float(model._solve(np.array([1e-15]), True)[0]) + d

    def f(x: float) -> float:
        return float(_h(model, d, np.array(x))) - level

    lo = model.lower_bound
    t1 = lo if f(lo) >= 0.0 else _optimize().brentq(f, lo, t_star, xtol=1e-12, maxiter=200)
    t2 = _optimize().brentq(f, t_star, t_far, xtol=1e-12, maxiter=200)
    return float(t2 - t1)
