"""Tests of cmsim.rtd.models against closed forms, quadrature and conservation laws."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from scipy import integrate, special

from cmsim.errors import ParameterError
from cmsim.rtd import (
    CSTR,
    PFR,
    AxialDispersion,
    Empirical,
    Kernel,
    RTDModel,
    Series,
    TanksInSeries,
)

CONTINUOUS = [
    CSTR(60.0),
    CSTR(0.7),
    TanksInSeries(60.0, 5),
    TanksInSeries(60.0, 2.5),
    TanksInSeries(30.0, 0.4),
    TanksInSeries(10.0, 40.0),
    AxialDispersion(60.0, 0.5),
    AxialDispersion(60.0, 10.0),
    AxialDispersion(20.0, 200.0),
    AxialDispersion(60.0, 2.0, boundary="open"),
    AxialDispersion(60.0, 50.0, boundary="open"),
    Series(PFR(10.0), TanksInSeries(60.0, 5), CSTR(30.0)),
    Series(TanksInSeries(20.0, 0.7), TanksInSeries(40.0, 3.0)),
    Empirical([0.0, 10.0, 20.0, 50.0, 80.0], [0.0, 2.0, 3.0, 1.0, 0.0]),
]
IDS = [repr(m)[:60] for m in CONTINUOUS]
#: Series evaluated by point-wise quadrature (slow): only in the cheaper generic tests
QUAD_SERIES = Series(AxialDispersion(30.0, 10.0), CSTR(20.0))


def _quad(f, lo, hi, pts=None):
    val, _ = integrate.quad(f, lo, hi, points=pts, limit=500, epsabs=1e-14, epsrel=1e-12)
    return val


def _support(m: RTDModel) -> tuple[float, float]:
    return m.lower_bound, min(m.upper_bound, float(m.isf(1e-17)))


def _points(m: RTDModel, lo: float, hi: float):
    pts = [m.lower_bound + k * math.sqrt(m.variance) for k in (0.5, 1, 2, 4)] + [m.mean]
    if isinstance(m, Empirical):
        pts += list(m.t)
    return sorted({p for p in pts if lo < p < hi}) or None


# ------------------------------------------------------------------------------ moments
@pytest.mark.parametrize("m", CONTINUOUS, ids=IDS)
def test_moments_match_quadrature_of_pdf(m):
    lo, hi = _support(m)
    pts = _points(m, lo, hi)
    mass = _quad(lambda t: m.pdf(t), lo, hi, pts)
    mean = _quad(lambda t: t * m.pdf(t), lo, hi, pts)
    var = _quad(lambda t: (t - m.mean) ** 2 * m.pdf(t), lo, hi, pts)
    assert mass == pytest.approx(1.0, abs=1e-9)
    assert mean == pytest.approx(m.mean, rel=1e-8)
    assert var == pytest.approx(m.variance, rel=1e-7)


@pytest.mark.parametrize("m", CONTINUOUS, ids=IDS)
def test_mean_is_integral_of_survival_function(m):
    lo, hi = _support(m)
    pts = _points(m, lo, hi)
    assert lo + _quad(lambda t: m.sf(t), lo, hi, pts) == pytest.approx(m.mean, rel=1e-9)


@pytest.mark.parametrize("tau", [0.5, 60.0, 3600.0])
@pytest.mark.parametrize("n", [0.3, 1.0, 2.5, 5.0, 17.0])
def test_tis_moments_grid(tau, n):
    m = TanksInSeries(tau, n)
    lo, hi = 0.0, float(m.isf(1e-17))
    mean = _quad(lambda t: m.sf(t), lo, hi, [m.mean])
    second = _quad(lambda t: 2.0 * t * m.sf(t), lo, hi, [m.mean])    # E[T^2]
    assert mean == pytest.approx(tau, rel=1e-9)
    assert second - mean**2 == pytest.approx(tau**2 / n, rel=1e-7)


@pytest.mark.parametrize("pe", [0.05, 0.5, 3.0, 30.0, 300.0])
@pytest.mark.parametrize("boundary", ["closed", "open"])
def test_adm_moments_grid(pe, boundary):
    m = AxialDispersion(1.0, pe, boundary=boundary)
    hi = float(m.isf(1e-16))
    pts = [x for x in (m.mean - 3 * m.variance**0.5, m.mean, m.mean + 3 * m.variance**0.5)
           if 0 < x < hi]
    mean = _quad(lambda t: m.sf(t), 0.0, hi, pts)
    second = _quad(lambda t: 2.0 * t * m.sf(t), 0.0, hi, pts)
    assert mean == pytest.approx(m.mean, rel=1e-9)
    assert second - mean**2 == pytest.approx(m.variance, rel=1e-7)


def test_series_moments_add_exactly():
    stages = [PFR(3.0), CSTR(7.0), TanksInSeries(20.0, 2.2), AxialDispersion(5.0, 8.0),
              Empirical([0, 1, 2], [0, 1, 0])]
    s = Series(*stages)
    assert s.mean == math.fsum(x.mean for x in stages)
    assert s.variance == math.fsum(x.variance for x in stages)
    assert s.lower_bound == 3.0
    nested = Series(Series(stages[0], stages[1]), *stages[2:])
    assert nested == s


# --------------------------------------------------------------------- F, E and 1 - F agree
@pytest.mark.parametrize("m", CONTINUOUS, ids=IDS)
def test_cdf_is_integral_of_pdf(m):
    for q in (0.01, 0.3, 0.7, 0.99):
        t = float(m.quantile(q))
        lo = m.lower_bound
        f = _quad(lambda s: m.pdf(s), lo, t, _points(m, lo, t))
        assert f == pytest.approx(float(m.cdf(t)), abs=2e-10)


@pytest.mark.parametrize("m", CONTINUOUS, ids=IDS)
def test_cdf_plus_sf_is_one_and_limits(m):
    t = np.linspace(-5.0, float(m.isf(1e-12)), 700)
    f, s = m.cdf(t), m.sf(t)
    np.testing.assert_allclose(f + s, 1.0, atol=2e-15)
    assert np.all(np.diff(f) >= -1e-15)
    assert np.all((f >= 0) & (f <= 1))
    assert np.all(m.pdf(t[t < 0]) == 0) and np.all(f[t < 0] == 0) and np.all(s[t < 0] == 1)
    assert m.cdf(np.inf) == 1.0 and m.sf(np.inf) == 0.0


def test_sf_keeps_relative_accuracy_in_tail():
    assert CSTR(10.0).sf(500.0) == pytest.approx(math.exp(-50.0), rel=1e-14)
    m = AxialDispersion(1.0, 5.0, boundary="open")
    for th in (6.0, 12.0):
        tail = _quad(lambda x: m.pdf(x), th, 80.0)
        assert m.sf(th) == pytest.approx(tail, rel=1e-8)
    c = AxialDispersion(1.0, 5.0)
    for th in (6.0, 12.0):
        tail = _quad(lambda x: c.pdf(x), th, 80.0)
        assert c.sf(th) == pytest.approx(tail, rel=1e-8)
    s = Series(TanksInSeries(60.0, 5), CSTR(30.0))
    t = 1500.0
    tail = _quad(lambda u: TanksInSeries(60.0, 5).pdf(u) * CSTR(30.0).sf(t - u), 0, t) + float(
        TanksInSeries(60.0, 5).sf(t))
    assert s.sf(t) == pytest.approx(tail, rel=1e-9)


def test_closed_forms_pointwise():
    t = np.linspace(0.0, 500.0, 101)
    np.testing.assert_allclose(CSTR(50.0).pdf(t), np.exp(-t / 50.0) / 50.0, rtol=1e-14)
    np.testing.assert_allclose(TanksInSeries(60.0, 3).pdf(t),
                               (3 / 60) ** 3 * t**2 * np.exp(-3 * t / 60) / 2, rtol=1e-12)
    # n = 1 tanks-in-series is a CSTR
    np.testing.assert_allclose(TanksInSeries(40.0, 1).cdf(t), CSTR(40.0).cdf(t), atol=1e-15)


def test_adm_closed_two_routes_agree_where_both_apply():
    """Closed-closed: eigen-series and Fourier inversion agree on the switch-over region."""
    for pe in (10.0, 50.0, 1000.0):
        m = AxialDispersion(1.0, pe)
        c = m._roots()
        th = np.linspace(c["theta_s"], c["theta_s"] + 1.0, 40)
        np.testing.assert_allclose(m._fourier(th, "cdf"), 1.0 - m._series(th, "sf"),
                                   atol=1e-13)
        np.testing.assert_allclose(m._fourier(th, "pdf"), m._series(th, "pdf"), atol=1e-12)


def test_adm_closed_tends_to_open_and_gaussian_at_large_pe():
    pe = 2000.0
    closed = AxialDispersion(1.0, pe)
    t = np.linspace(0.9, 1.1, 41)
    sd = math.sqrt(closed.variance)
    gauss = 0.5 * special.erfc(-(t - 1.0) / (sd * math.sqrt(2)))
    assert np.max(np.abs(closed.cdf(t) - gauss)) < 0.02


# ---------------------------------------------------------------------------------- quantile
@pytest.mark.parametrize("m", CONTINUOUS + [QUAD_SERIES], ids=IDS + ["quad-series"])
def test_quantile_inverts_cdf(m):
    q = np.array([1e-6, 0.001, 0.1, 0.5, 0.9, 0.999, 1 - 1e-6])
    t = m.quantile(q)
    assert np.all(np.diff(t) > 0)
    lo_q = q <= 0.5
    np.testing.assert_allclose(m.cdf(t[lo_q]), q[lo_q], rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(m.sf(t[~lo_q]), 1 - q[~lo_q], rtol=1e-9, atol=1e-14)
    # back and forth on times: quantile(cdf(t)) == t where E is not negligible
    tt = m.quantile(np.array([0.05, 0.3, 0.6, 0.95]))
    back = m.quantile(m.cdf(tt))
    np.testing.assert_allclose(back, tt, atol=1e-8, rtol=1e-12)


def test_quantile_edges_and_closed_forms():
    assert CSTR(60.0).quantile(0.0) == 0.0
    assert CSTR(60.0).quantile(1.0) == math.inf
    assert PFR(12.5).quantile(0.3) == 12.5
    assert Series(PFR(4.0), CSTR(10.0)).quantile(0.0) == 4.0
    assert CSTR(60.0).quantile(0.25) == pytest.approx(-60.0 * math.log(0.75), rel=1e-15)
    e = Empirical([2.0, 3.0, 4.0], [0.0, 1.0, 0.0])
    assert e.quantile(1.0) == 4.0 and e.quantile(0.0) == 2.0
    assert e.quantile(0.5) == pytest.approx(3.0, abs=1e-9)
    assert e.quantile(0.125) == pytest.approx(2.5, abs=1e-9)    # F = (t-2)^2/2
    assert np.shape(CSTR(1.0).quantile([[0.1, 0.2], [0.3, 0.4]])) == (2, 2)


def test_tis_quantile_exact_against_gamma_law():
    for n in (0.2, 0.9, 3.0, 150.0):
        m = TanksInSeries(45.0, n)
        q = np.array([1e-9, 0.01, 0.5, 0.99, 1 - 1e-9])
        t = m.quantile(q)
        np.testing.assert_allclose(special.gammainc(n, t * n / 45.0)[:3], q[:3], rtol=1e-12)
        np.testing.assert_allclose(special.gammaincc(n, t * n / 45.0)[3:], 1 - q[3:],
                                   rtol=1e-9)


# ---------------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("m", CONTINUOUS + [PFR(7.3), PFR(0.0)], ids=IDS + ["PFR7.3", "PFR0"])
@pytest.mark.parametrize("dt", [0.25, 1.0, 7.0])
def test_kernel_mass_and_cut(m, dt):
    tail = 1e-9
    w = m.kernel(dt, tail=tail)
    assert isinstance(w, Kernel) and w.dtype == np.float64 and w.ndim == 1
    assert w.dt == dt and w.tail == tail
    assert np.all(w >= 0.0)
    n = w.size
    # truncated mass is sf at the end, and the cut is the first bin edge below tail
    assert w.truncated_mass == pytest.approx(float(m.sf(n * dt)), abs=1e-16)
    assert m.sf(n * dt) < tail
    assert n == 1 or m.sf((n - 1) * dt) >= tail
    assert abs(w.sum() + w.truncated_mass - 1.0) < 1e-13
    assert w.sum() == pytest.approx(float(m.cdf(n * dt)), abs=1e-13)
    # bins are F differences
    edges = np.arange(n + 1) * dt
    np.testing.assert_allclose(w[1:], np.diff(m.cdf(edges))[1:], rtol=1e-12, atol=1e-15)


def test_kernel_from_bypass_tis_is_finite_and_exact():
    m = TanksInSeries(30.0, 0.35)
    w = m.kernel(1.0, tail=1e-12)
    assert np.all(np.isfinite(w))
    assert w[0] == pytest.approx(special.gammainc(0.35, 0.35 / 30.0), rel=1e-14)
    assert abs(w.sum() + w.truncated_mass - 1.0) < 1e-13
    # point sampling would be infinite at t = 0
    assert m.pdf(0.0) == math.inf


def test_pfr_kernel_bin_placement():
    np.testing.assert_array_equal(PFR(3.0).kernel(1.0), [0.0, 0.0, 1.0])  # F(3) = 1
    np.testing.assert_array_equal(PFR(2.5).kernel(1.0), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(PFR(0.0).kernel(0.5), [1.0])
    assert PFR(3.0).kernel(1.0).truncated_mass == 0.0


def test_kernel_pickles_and_reduces_to_plain_numbers():
    w = TanksInSeries(60.0, 5).kernel(0.5)
    w2 = pickle.loads(pickle.dumps(w))
    assert isinstance(w2, Kernel)
    np.testing.assert_array_equal(w2, w)
    assert (w2.dt, w2.tail, w2.truncated_mass) == (w.dt, w.tail, w.truncated_mass)
    assert isinstance(w.sum(), float)
    np.testing.assert_allclose(w.times[:3], [0.5, 1.0, 1.5])
    assert "taps" in repr(w)


def test_kernel_tail_setting_controls_truncation():
    m = CSTR(10.0)
    a, b = m.kernel(1.0, tail=1e-3), m.kernel(1.0, tail=1e-12)
    assert a.size < b.size
    np.testing.assert_allclose(b[: a.size], a, rtol=0, atol=1e-17)
    assert a.truncated_mass == pytest.approx(math.exp(-a.size / 10.0), rel=1e-13)


# ---------------------------------------------------------------------------------- empirical
def test_empirical_triangle_closed_forms():
    e = Empirical([0.0, 1.0, 2.0], [0.0, 5.0, 0.0])   # scale irrelevant
    assert e.mean == pytest.approx(1.0, rel=1e-15)
    assert e.variance == pytest.approx(1.0 / 6.0, rel=1e-14)
    t = np.array([0.25, 0.5, 1.0, 1.5, 1.9])
    expected = np.where(t <= 1, t**2 / 2, 1 - (2 - t) ** 2 / 2)
    np.testing.assert_allclose(e.cdf(t), expected, rtol=1e-14)
    np.testing.assert_allclose(e.sf(t), 1 - expected, rtol=1e-13)
    np.testing.assert_allclose(e.pdf(t), np.where(t <= 1, t, 2 - t), rtol=1e-14)
    assert e.sf(1.999999) == pytest.approx((2 - 1.999999) ** 2 / 2, rel=1e-6)


def test_empirical_recovers_gamma_from_dense_samples():
    true = TanksInSeries(60.0, 4)
    t = np.linspace(0.0, 900.0, 9001)
    emp = Empirical(t, 1000.0 * true.pdf(t))
    assert emp.mean == pytest.approx(60.0, rel=1e-5)
    assert emp.variance == pytest.approx(900.0, rel=1e-4)
    grid = np.linspace(0.0, 400.0, 81)
    np.testing.assert_allclose(emp.cdf(grid), true.cdf(grid), atol=1e-6)
    np.testing.assert_allclose(emp.quantile([0.01, 0.5, 0.99]),
                               true.quantile([0.01, 0.5, 0.99]), atol=2e-3)


def test_empirical_frequency_response_matches_quadrature():
    e = Empirical([1.0, 4.0, 6.0, 15.0], [0.0, 3.0, 1.0, 0.0])
    for om in (0.0, 1e-4, 0.03, 0.7, 5.0):
        re = _quad(lambda t, om=om: e.pdf(t) * math.cos(om * t), 1.0, 15.0, [4.0, 6.0])
        im = -_quad(lambda t, om=om: e.pdf(t) * math.sin(om * t), 1.0, 15.0, [4.0, 6.0])
        g = e.frequency_response(om)
        assert g.real == pytest.approx(re, abs=1e-12)
        assert g.imag == pytest.approx(im, abs=1e-12)
    assert e.lower_bound == 1.0 and e.upper_bound == 15.0


# --------------------------------------------------------------------------------- series
def test_series_gamma_mixture_against_direct_convolution():
    a, b = TanksInSeries(20.0, 0.7), TanksInSeries(40.0, 3.0)
    s = Series(a, b)
    for t in (0.5, 10.0, 45.0, 120.0, 400.0):
        f = _quad(lambda u, t=t: a.pdf(u) * b.cdf(t - u), 0.0, t)
        sf = float(a.sf(t)) + _quad(lambda u, t=t: a.pdf(u) * b.sf(t - u), 0.0, t)
        assert s.cdf(t) == pytest.approx(f, abs=1e-12)
        assert s.sf(t) == pytest.approx(sf, rel=1e-9, abs=1e-15)
        e = _quad(lambda u, t=t: a.pdf(u) * b.pdf(t - u), 0.0, t)
        assert s.pdf(t) == pytest.approx(e, rel=1e-8)


def test_series_quadrature_path_against_laplace_moments_and_pdf():
    adm, cstr = AxialDispersion(30.0, 10.0), CSTR(20.0)
    s = Series(PFR(5.0), adm, cstr)
    # pdf by an independent route: E = d/dt of the CSTR-filtered F (central difference)
    t = 60.0
    h = 1e-3
    deriv = (s.cdf(t + h) - s.cdf(t - h)) / (2 * h)
    assert s.pdf(t) == pytest.approx(deriv, rel=1e-6)
    # CSTR after anything: tau_c E = F_rest - F  (from d/dt of the CSTR convolution)
    rest = Series(PFR(5.0), adm)
    for t in (20.0, 50.0, 120.0):
        assert 20.0 * s.pdf(t) == pytest.approx(rest.cdf(t) - s.cdf(t), abs=1e-10)


def test_series_frequency_response_is_product():
    stages = [PFR(2.0), CSTR(5.0), TanksInSeries(9.0, 3), AxialDispersion(4.0, 6.0)]
    s = Series(*stages)
    om = np.array([0.0, 0.1, 1.0])
    expected = np.prod([m.frequency_response(om) for m in stages], axis=0)
    np.testing.assert_allclose(s.frequency_response(om), expected, rtol=1e-14)


def test_series_degenerate_forms():
    p = Series(PFR(2.0), PFR(3.0))
    assert p.cdf(4.999) == 0.0 and p.cdf(5.0) == 1.0 and p.quantile(0.7) == 5.0
    one = Series(PFR(2.0), TanksInSeries(10.0, 2))
    t = np.linspace(0, 60, 31)
    np.testing.assert_allclose(one.cdf(t), TanksInSeries(10.0, 2).cdf(t - 2.0), atol=0)
    assert one.quantile(0.5) == pytest.approx(TanksInSeries(10.0, 2).quantile(0.5) + 2.0)


def test_series_vectorised_matches_pointwise():
    """Vectorised cdf/sf of a series over 4000 points equal the one-point evaluations.

    (How fast this is belongs to ``benchmarks/test_bench_rtd.py::test_bench_model_eval``.)
    """
    s = Series(PFR(10.0), TanksInSeries(60.0, 5), CSTR(30.0))
    t = np.linspace(0.0, 600.0, 4000)
    f, q = s.cdf(t), s.sf(t)
    idx = np.arange(0, t.size, 397)
    np.testing.assert_allclose(f[idx], [float(s.cdf(x)) for x in t[idx]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(q[idx], [float(s.sf(x)) for x in t[idx]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(f + q, 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("m", [CSTR(60.0), TanksInSeries(60.0, 4.5), AxialDispersion(60.0, 20.0),
                               AxialDispersion(60.0, 20.0, boundary="open")])
def test_vectorised_1e5_points_match_pointwise(m):
    """1e5-point vectorised E, F, 1-F equal one-point evaluations (speed: benchmarks/)."""
    t = np.linspace(0.0, 600.0, 100_000)
    f, q, e = m.cdf(t), m.sf(t), m.pdf(t)
    assert f.shape == q.shape == e.shape == t.shape
    assert np.all(np.isfinite(f)) and np.all(np.isfinite(e))
    assert np.all(np.diff(f) >= -1e-15)
    idx = np.arange(0, t.size, 9_973)
    np.testing.assert_allclose(f[idx], [float(m.cdf(x)) for x in t[idx]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(q[idx], [float(m.sf(x)) for x in t[idx]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(e[idx], [float(m.pdf(x)) for x in t[idx]], rtol=1e-12, atol=0)


# ------------------------------------------------------------------------ frequency response
def test_frequency_responses_closed_forms():
    om = np.array([0.0, 0.01, 0.5, 3.0])
    np.testing.assert_allclose(abs(CSTR(10.0).frequency_response(om)),
                               1 / np.sqrt(1 + (om * 10) ** 2), rtol=1e-14)
    np.testing.assert_allclose(abs(TanksInSeries(10.0, 2.5).frequency_response(om)),
                               (1 + (om * 10 / 2.5) ** 2) ** (-2.5 / 2), rtol=1e-13)
    np.testing.assert_allclose(PFR(4.0).frequency_response(om), np.exp(-4j * om), rtol=1e-15)
    assert isinstance(CSTR(1.0).frequency_response(1.0), complex)


@pytest.mark.parametrize("boundary", ["closed", "open"])
def test_adm_frequency_response_matches_fourier_quadrature(boundary):
    m = AxialDispersion(1.0, 4.0, boundary=boundary)
    hi = float(m.isf(1e-16))
    for om in (0.0, 0.5, 2.0):
        re = _quad(lambda t, om=om: m.pdf(t) * math.cos(om * t), 0.0, hi, [1.0])
        im = -_quad(lambda t, om=om: m.pdf(t) * math.sin(om * t), 0.0, hi, [1.0])
        g = m.frequency_response(om)
        assert g.real == pytest.approx(re, abs=1e-10)
        assert g.imag == pytest.approx(im, abs=1e-10)


# ------------------------------------------------------------------- identity, repr, pickle
@pytest.mark.parametrize("m", CONTINUOUS + [PFR(2.0)], ids=IDS + ["PFR"])
def test_models_pickle_compare_and_are_immutable(m):
    m.cdf(np.array([1.0, 10.0]))       # fill lazy caches first
    m2 = pickle.loads(pickle.dumps(m))
    assert m2 == m and hash(m2) == hash(m)
    t = np.linspace(0, 3 * m.mean + 10, 17)
    np.testing.assert_array_equal(m2.cdf(t), m.cdf(t))
    assert isinstance(m.params, dict)
    assert type(m).__name__ in repr(m)
    with pytest.raises(AttributeError):
        m.tau = 3.0


def test_equality_and_params():
    assert CSTR(5.0) == CSTR(5) and CSTR(5.0) != CSTR(6.0)
    assert CSTR(5.0) != TanksInSeries(5.0, 1)
    assert TanksInSeries(60.0, 5).params == {"mean_residence_time": 60.0, "n_tanks": 5.0}
    assert AxialDispersion(3.0, 4.0).params["boundary"] == "closed"
    assert repr(CSTR(5.0)) == "CSTR(mean_residence_time=5.0)"
    s = Series(PFR(1.0), CSTR(2.0))
    assert s.params["stages"][1] == {"model": "CSTR", "mean_residence_time": 2.0}
    assert len({CSTR(5.0), CSTR(5.0), PFR(1.0)}) == 2


def test_scalar_in_scalar_out():
    m = TanksInSeries(10.0, 3)
    assert isinstance(m.pdf(1.0), float)
    assert isinstance(m.cdf(1.0), float)
    assert isinstance(m.quantile(0.5), float)
    assert m.cdf(np.array([[1.0, 2.0]])).shape == (1, 2)


# ---------------------------------------------------------------------------- bad input
def _raises(fn, name, rule_part, *args, **kwargs):
    with pytest.raises(ParameterError) as info:
        fn(*args, **kwargs)
    err = info.value
    assert err.name == name
    assert rule_part in err.rule
    assert name in str(err) and rule_part in str(err)
    return err


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, "x", True])
def test_bad_time_constants(bad):
    _raises(CSTR, "mean_residence_time", "", bad)
    _raises(TanksInSeries, "mean_residence_time", "", bad, 3)
    _raises(TanksInSeries, "n_tanks", "", 10.0, bad)
    _raises(AxialDispersion, "mean_residence_time", "", bad, 3.0)
    _raises(AxialDispersion, "peclet", "", 10.0, bad)


def test_bad_input_messages_name_value_and_rule():
    err = _raises(CSTR, "mean_residence_time", "must be > 0", -2.0)
    assert "-2.0" in str(err)
    _raises(TanksInSeries, "n_tanks", "must be > 0", 60.0, 0)
    _raises(AxialDispersion, "peclet", "must be > 0", 60.0, -5.0)
    err = _raises(AxialDispersion, "boundary", "must be 'closed' or 'open'", 60.0, 5.0, "dirty")
    assert "dirty" in str(err)
    _raises(PFR, "delay", "must be >= 0", -0.1)
    _raises(PFR, "delay", "must be finite", math.nan)
    _raises(Series, "models", "at least one")
    _raises(Series, "models[1]", "must be an RTDModel", CSTR(1.0), 3.0)


def test_bad_empirical_input():
    _raises(Empirical, "t", "strictly increasing", [0.0, 2.0, 2.0], [0.0, 1.0, 0.0])
    _raises(Empirical, "t", "strictly increasing", [0.0, 2.0, 1.0], [0.0, 1.0, 0.0])
    _raises(Empirical, "t", "finite", [0.0, math.nan, 2.0], [0.0, 1.0, 0.0])
    _raises(Empirical, "e", "finite", [0.0, 1.0, 2.0], [0.0, math.inf, 0.0])
    err = _raises(Empirical, "e", "must be >= 0", [0.0, 1.0, 2.0], [0.0, -1.0, 0.0])
    assert "-1.0" in str(err)
    _raises(Empirical, "e", "not all zero", [0.0, 1.0, 2.0], [0.0, 0.0, 0.0])
    _raises(Empirical, "e", "shape", [0.0, 1.0, 2.0], [0.0, 1.0])
    _raises(Empirical, "t", "at least 2", [1.0], [1.0])
    _raises(Empirical, "t", "must be >= 0", [-1.0, 1.0], [1.0, 1.0])
    _raises(Empirical, "t", "ndim", [[0.0, 1.0]], [[1.0, 1.0]])


def test_bad_kernel_quantile_and_time_arguments():
    m = TanksInSeries(60.0, 5)
    err = _raises(m.kernel, "dt", "must be > 0", 0.0)
    assert "dt=0.0" in str(err)
    _raises(m.kernel, "dt", "must be > 0", -1.0)
    _raises(m.kernel, "dt", "finite", math.nan)
    _raises(m.kernel, "tail", "must be in (0, 1)", 1.0, tail=0.0)
    _raises(m.kernel, "dt", "too small", 1e-9)
    err = _raises(m.quantile, "q", "must be in [0, 1]", 1.5)
    assert "1.5" in str(err)
    _raises(m.quantile, "q", "must be in [0, 1]", [0.5, -0.1])
    _raises(m.quantile, "q", "must be in [0, 1]", math.nan)
    _raises(m.cdf, "t", "NaN", [1.0, math.nan])
    _raises(m.frequency_response, "omega", "finite", math.inf)
    _raises(m.isf, "p", "(0, 1)", 0.0)


@pytest.mark.parametrize("ratio", [1e-2, 1e-4, 1e-8, 1e-17])
def test_series_of_a_short_tank_chain_and_a_long_cstr_matches_the_closed_form(ratio):
    """Gamma(k, s) + Exp(theta) has F(t) = P(k, t/s) - exp(-t/theta) (s'/s)^k P(k, t/s') with
    1/s' = 1/s - 1/theta. With tanks 1e-4 of the CSTR's time the series' quadrature missed
    the narrow stage (F = 9e-17 for 0.63 at t = 30 s), and at 1e-17 the gamma mixture
    divided by zero."""
    from scipy.special import gammainc  # noqa: PLC0415

    from cmsim import rtd  # noqa: PLC0415

    k, theta = 5, 30.0
    s = theta * ratio / k
    s2 = 1.0 / (1.0 / s - 1.0 / theta)
    t = np.array([0.5, 1.0, 10.0, 30.0, 31.0, 120.0]) + theta * ratio
    exact = gammainc(k, t / s) - np.exp(-t / theta) * (s2 / s) ** k * gammainc(k, t / s2)
    series = rtd.Series(rtd.TanksInSeries(theta * ratio, k), rtd.CSTR(theta))
    np.testing.assert_allclose(series.cdf(t), exact, rtol=0, atol=1e-9)
    np.testing.assert_allclose(series.sf(t), 1.0 - exact, rtol=0, atol=1e-9)


@pytest.mark.parametrize("use_sf", [False, True])
def test_series_quantiles_by_brent_agree_with_bisection(use_sf):
    """A series whose F costs a quadrature per point solves its quantiles with Brent's method
    (about 10 evaluations instead of 45); the result is the bisection's to the resolution,
    and on the side of the root that satisfies the condition."""
    from cmsim import rtd  # noqa: PLC0415
    from cmsim.rtd._base import bisect_quantile  # noqa: PLC0415

    s = rtd.Series(rtd.AxialDispersion(20.0, 15.0), rtd.PFR(3.0), rtd.CSTR(8.0))
    p = np.array([1e-6, 0.01, 0.5, 0.99]) if not use_sf else np.array([1e-9, 0.01, 0.5])
    got = s.isf(p) if use_sf else s.quantile(p)
    ref = bisect_quantile(s._cdf, s._sf, p, use_sf, s.lower_bound, s._scale())
    tol = np.maximum(1e-10, 4 * np.finfo(float).eps * np.abs(ref))
    np.testing.assert_allclose(got, ref, rtol=0, atol=2 * np.max(tol))
    if use_sf:
        assert np.all(s.sf(got) <= p)
    else:
        assert np.all(s.cdf(got) >= p)
