"""Batched adaptive Gauss-Kronrod quadrature (cmsim.rtd._quadrature) and the series of RTDs
that integrate with it, against closed forms and against scipy's one-point-at-a-time quad."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from cmsim import rtd
from cmsim.rtd._quadrature import MAX_ROUNDS, batch_quad


def _exp_kink_exact(hi: np.ndarray, c: np.ndarray, p: float) -> np.ndarray:
    """int_0^hi |s - p| exp(-s / c) ds in closed form."""
    def prim(s):  # antiderivative of (s - p) exp(-s/c)
        return -c * np.exp(-s / c) * (s - p + c)
    below = -(prim(np.minimum(hi, p)) - prim(0.0))
    above = np.where(hi > p, prim(hi) - prim(p), 0.0)
    return below + above


def test_many_integrals_with_break_points_match_closed_forms():
    rng = np.random.default_rng(3)
    n = 400
    c = rng.uniform(0.5, 20.0, n)
    hi = rng.uniform(0.2, 50.0, n)
    p = 3.3
    got = batch_quad(lambda s, k: np.abs(s - p) * np.exp(-s / c[k][:, None]), np.zeros(n), hi,
                     np.array([p]))
    np.testing.assert_allclose(got, _exp_kink_exact(hi, c, p), rtol=1e-12, atol=1e-14)


def test_endpoint_singularity_and_narrow_spike():
    # sqrt(s) at 0 (infinite slope) and a spike 1e-3 wide announced by its break points
    n = 50
    hi = np.linspace(1.0, 30.0, n)
    width = 1e-3

    def f(s, k):
        return np.sqrt(s) + np.exp(-((s - 0.7) / width) ** 2) / (width * math.sqrt(math.pi))

    got = batch_quad(f, np.zeros(n), hi, np.array([0.7 - 20 * width, 0.7, 0.7 + 20 * width]))
    np.testing.assert_allclose(got, 2.0 / 3.0 * hi ** 1.5 + 1.0, rtol=1e-11)


def test_empty_and_reversed_limits_are_zero_and_the_fallback_is_used_when_stuck():
    got = batch_quad(lambda s, k: np.ones_like(s), np.array([0.0, 2.0, 1.0]),
                     np.array([1.0, 2.0, 0.0]))
    np.testing.assert_array_equal(got, [1.0, 0.0, 0.0])
    # a jump the rule cannot resolve in MAX_ROUNDS bisections goes to the fallback
    calls = []

    def fallback(j):
        calls.append(j)
        return -1.0

    out = batch_quad(lambda s, k: np.where(s < 1.0 / 3.0, 0.0, 1.0), np.array([0.0]),
                     np.array([1.0]), epsabs=0.0, epsrel=1e-300, fallback=fallback)
    assert calls == [0] and out[0] == -1.0
    assert MAX_ROUNDS >= 50


SERIES = [
    rtd.Series(rtd.AxialDispersion(90.0, 12.0), rtd.PFR(10.0), rtd.CSTR(30.0)),
    rtd.Series(rtd.AxialDispersion(20.0, 40.0, boundary="open"), rtd.TanksInSeries(30.0, 3)),
    rtd.Series(rtd.Empirical([0.0, 5.0, 10.0, 20.0], [0.0, 1.0, 0.5, 0.0]), rtd.CSTR(8.0)),
    rtd.Series(rtd.TanksInSeries(0.003, 5), rtd.CSTR(30.0), rtd.AxialDispersion(5.0, 8.0)),
]


def _scalar_quad(series, kind: str, u: float) -> float:
    """The same convolution one point at a time with scipy (the implementation before)."""
    conv = series._engine._cdf.__self__  # the outermost QuadConvolution
    a, b = conv.a, conv.b
    lo = a.lower_bound
    hi = min(u - b.lower_bound, a.upper_bound)
    if not hi > lo:
        return 0.0 if kind != "sf" else 1.0
    pts = [p for p in a.breakpoints if lo < p < hi] or None
    fb = {"cdf": b._cdf, "sf": b._sf, "pdf": b._pdf}[kind]
    val, _ = integrate.quad(lambda s: float(a._pdf(np.array(s)) * fb(np.array(u - s))), lo, hi,
                            points=pts, epsabs=1e-14, epsrel=1e-12, limit=400)
    if kind == "sf":
        val += float(a._sf(np.array(u - b.lower_bound)))
    return val


@pytest.mark.parametrize("series", SERIES, ids=range(len(SERIES)))
def test_series_values_match_scipy_quad_point_by_point(series):
    t = np.concatenate((series.quantile([1e-6, 0.01, 0.3, 0.5, 0.7, 0.99]),
                        series.isf([1e-6])))
    for kind, fn in (("cdf", series.cdf), ("sf", series.sf), ("pdf", series.pdf)):
        got = fn(t)
        ref = [_scalar_quad(series, kind, float(x) - series.shift) for x in t]
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=5e-12, err_msg=kind)


def test_series_with_dispersion_stays_consistent_over_a_dense_grid():
    s = SERIES[0]
    t = np.linspace(0.0, float(s.isf(1e-9)), 2000)
    f, sf, e = s.cdf(t), s.sf(t), s.pdf(t)
    np.testing.assert_allclose(f + sf, 1.0, atol=1e-11)
    assert np.all(np.diff(f) >= -1e-12) and np.all(e >= 0.0)
    # F is the integral of E (trapezoid on the dense grid, second order)
    np.testing.assert_allclose(f[-1] - f[0], np.trapezoid(e, t), atol=2e-5)


# ------------------------------------------- the leading edge of the closed-closed dispersion
@pytest.mark.parametrize("pe", [1.0, 5.0, 20.0, 200.0, 500.0])
def test_dispersion_leading_edge_table_matches_the_fourier_inversion(pe):
    """The piecewise Chebyshev table that serves the Fourier part of the closed-closed model
    stays within 5e-14 of the inversion in F and 1e-13 of the peak in E, and 0 below the cut."""
    from cmsim.rtd import _axial

    m = rtd.AxialDispersion(60.0, pe)
    hi = m._roots()["theta_s"]
    theta = np.random.default_rng(int(pe)).uniform(0.0, hi, 600)
    cut = m._edge_theta(_axial._EDGE_CUT)
    live = theta > cut
    peak = max(1.0, math.sqrt(pe / (4 * math.pi)))
    for what, atol in (("cdf", 5e-14), ("pdf", 1e-13 * peak / 60.0)):
        got = m._leading_edge(theta, what)
        assert (pe, what) in _axial._TABLES and _axial._TABLES[(pe, what)] is not None
        np.testing.assert_allclose(got[live], m._fourier(theta[live], what), rtol=0,
                                   atol=atol)
        assert np.all(got[~live] == 0.0)
        # what is cut off is at the level of the inversion's own rounding noise
        noise = 1e-13 * peak if what == "pdf" else 1e-14
        assert np.all(np.abs(m._fourier(theta[~live], what)) * (60.0 if what == "pdf" else 1.0)
                      < noise)


def test_dispersion_kernel_bins_stay_non_negative_differences_of_f():
    m = rtd.AxialDispersion(60.0, 10.0)
    w = m.kernel(0.25, tail=1e-12)
    edges = np.arange(w.size + 1) * 0.25
    diff = np.diff(m.cdf(edges))
    assert diff.min() > -1e-15
    np.testing.assert_allclose(w[1:], np.maximum(diff, 0.0)[1:], rtol=1e-12, atol=1e-15)


def test_a_numerically_integrated_series_pickles_without_its_cache():
    import pickle

    s = SERIES[0]
    t = np.linspace(0.0, 400.0, 3000)
    f = s.cdf(t)
    blob = pickle.dumps(s)
    assert len(blob) < 20_000  # the 3,000 cached values stay behind
    np.testing.assert_array_equal(pickle.loads(blob).cdf(t), f)


def test_gamma_mixture_refuses_weights_far_out_and_the_series_stays_right():
    """A CSTR of 2 h, 17.5 tanks of 0.16 s and 16 of 20 min: the mixture's weights lie about
    46,000 terms out (the smallest stage sets its scale). It used to cut them after 60 terms
    and renormalise, so F(1000 s) came out 1 for a mean of 7.5 h; it now refuses and the
    series integrates the stages, in line with a Monte Carlo sample of the sum."""
    from cmsim.rtd._series import GammaSum

    with pytest.raises(OverflowError):
        GammaSum([1.0, 17.49, 16.0], [7272.5, 2.766 / 17.49, 19763.5 / 16.0])
    s = rtd.Series(rtd.CSTR(7272.5), rtd.TanksInSeries(2.766, 17.49),
                   rtd.TanksInSeries(19763.5, 16))
    t = np.array([1000.0, 20000.0, 27000.0, 40000.0])
    rng = np.random.default_rng(0)
    n = 200_000
    x = (rng.gamma(1.0, 7272.5, n) + rng.gamma(17.49, 2.766 / 17.49, n)
         + rng.gamma(16.0, 19763.5 / 16.0, n))
    mc = (x[:, None] <= t[None, :]).mean(axis=0)
    np.testing.assert_allclose(s.cdf(t), mc, atol=4e-3)
    assert s.cdf(1000.0) < 1e-10
