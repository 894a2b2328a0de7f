"""Reference values of docs/reference-values.md (rows 1-16 and the tables of that page).

Every expected number below is copied from docs/reference-values.md and the pages it links
(values tagged [V] there: checked against Laplace inversion, quadrature or closed forms when the
table was compiled). Tolerances are half a unit of the last digit given, unless stated.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from cmsim.rtd import (
    CSTR,
    PFR,
    AxialDispersion,
    Series,
    TanksInSeries,
    excursion_duration,
    funnel_boundary,
    longest_tolerable_stop,
    peak_response,
)


def half_ulp(value: str) -> float:
    """Half a unit in the last digit of a decimal string."""
    decimals = len(value.split(".")[1]) if "." in value else 0
    return 0.5 * 10.0**-decimals


def check(actual: float, expected: str) -> None:
    tol = half_ulp(expected) * (1 + 1e-9)
    assert abs(actual - float(expected)) <= tol, (actual, expected, tol)


# --------------------------------------------------------------------- rows 1-6: axial dispersion
def test_row1_closed_pe10_density_at_mean():
    check(AxialDispersion(1.0, 10.0).pdf(1.0), "0.94016320")
    # tau scaling: tau E(theta) does not depend on tau
    check(45.0 * AxialDispersion(45.0, 10.0).pdf(45.0), "0.94016320")


@pytest.mark.parametrize(("theta", "expected"),
                         [(0.5, "0.06811421"), (1.0, "0.58033268"), (2.0, "0.97152767")])
def test_row2_closed_pe10_cdf(theta, expected):
    m = AxialDispersion(1.0, 10.0)
    check(m.cdf(theta), expected)
    check(1.0 - m.sf(theta), expected)


@pytest.mark.parametrize(("theta", "expected"),
                         [(0.3, "0.81431625"), (0.7, "0.73656145"), (1.0, "0.50615233"),
                          (1.5, "0.25878358"), (3.0, "0.03398874")])
def test_row3_closed_pe2_density(theta, expected):
    check(AxialDispersion(1.0, 2.0).pdf(theta), expected)


@pytest.mark.parametrize(("pe", "expected"),
                         [(0.1, "0.967484"), (1.0, "0.735759"), (10.0, "0.180001"),
                          (100.0, "0.0198"), (1000.0, "0.001998")])
def test_row4_closed_variance(pe, expected):
    m = AxialDispersion(1.0, pe)
    check(m.variance, expected)
    # independent: second central moment of the evaluated density by quadrature
    pts = [1.0 - 8 * math.sqrt(2 / pe), 1.0, 1.0 + 8 * math.sqrt(2 / pe)] if pe > 50 else None
    var, _ = integrate.quad(lambda t: (t - 1.0) ** 2 * m.pdf(t), 0.0, 60.0, points=pts,
                            limit=500, epsabs=1e-13)
    check(var, expected)


def test_row5_open_pe10():
    m = AxialDispersion(1.0, 10.0, boundary="open")
    check(m.mean, "1.2")
    check(m.variance, "0.28")
    check(m.cdf(1.0), "0.41471114")


@pytest.mark.parametrize(("theta", "expected"),
                         [(0.5, "0.11452457"), (1.0, "0.33189800"), (2.0, "0.63502445")])
def test_row6_open_pe2_cdf(theta, expected):
    check(AxialDispersion(1.0, 2.0, boundary="open").cdf(theta), expected)


# --------------------------------------------------------------------- rows 7-10: TIS and CSTR
def test_row7_tis5():
    m = TanksInSeries(60.0, 5)
    check(m.cdf(60.0), "0.5595067")
    check(m.quantile(0.5), "56.051")
    check(m.quantile(0.001), "8.872")
    check(m.quantile(0.999), "177.530")


def test_row8_tis_real_n():
    m = TanksInSeries(60.0, 2.5)
    check(m.quantile(0.001), "2.523")
    check(m.quantile(0.999), "246.180")
    assert m.variance == pytest.approx(1440.0, rel=1e-15)


def test_row9_cstr_quantiles():
    m = CSTR(60.0)
    check(m.quantile(0.5), "41.589")
    check(m.quantile(0.999), "414.465")


def test_row10_tis_frequency_response():
    check(abs(TanksInSeries(5.0, 2).frequency_response(1.0)), "0.13793")


# ---------------------------------------------------------------------------- row 11: series
@pytest.mark.parametrize("tau_p", [0.0, 3.0, 25.5])
def test_row11_cstr_plus_pfr(tau_p):
    s = Series(CSTR(10.0), PFR(tau_p))
    assert s.mean == pytest.approx(10.0 + tau_p, abs=1e-12)
    assert s.variance == pytest.approx(100.0, abs=1e-12)
    t = np.linspace(0.0, 120.0, 41)
    expected = np.where(t >= tau_p, -np.expm1(-(t - tau_p) / 10.0), 0.0)
    np.testing.assert_allclose(s.cdf(t), expected, atol=1e-15)


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_row11_chain_of_cstrs(k):
    s = Series(*[CSTR(10.0) for _ in range(k)])
    assert s.mean == pytest.approx(10.0 * k, rel=1e-14)
    assert s.variance == pytest.approx(100.0 * k, rel=1e-14)
    t = np.linspace(0.0, 400.0, 81)
    np.testing.assert_allclose(s.cdf(t), special.gammainc(k, t / 10.0), atol=1e-14)


# ----------------------------------------------- row 12 and the point-sampled kernel-mass table
@pytest.mark.parametrize(("tau", "expected"),
                         [(60.0, "1.00836"), (30.0, "1.016759"), (10.0, "1.05083")])
def test_row12_point_sampled_kernel_is_biased_bin_kernel_is_not(tau, expected):
    m = CSTR(tau)
    dt = 1.0
    j = np.arange(0, int(60 * tau))
    point_sampled = float(np.sum(m.pdf(j * dt) * dt))
    check(point_sampled, expected)
    check((dt / tau) / -math.expm1(-dt / tau), expected)  # the closed form of docs/rtd.md
    w = m.kernel(dt, tail=1e-12)
    assert w.sum() + w.truncated_mass == pytest.approx(1.0, abs=1e-14)


# ---------------------------------------------------------- row 13 (exact-chain kernel moments)
def test_row13_exact_chain_kernel_moments():
    """Bin kernel read at (j+1) dt: mean tau after the input midpoint, variance + dt^2/12."""
    dt = 1.0
    w = TanksInSeries(60.0, 5).kernel(dt, tail=1e-16)
    t = w.times
    mass = w.sum()
    mean = float(np.sum(w * t) / mass) - dt / 2
    var = float(np.sum(w * (t - (mean + dt / 2)) ** 2) / mass)
    check(mean, "60.000")
    check(var, "720.083")
    # the tail beyond the 1e-16 cut carries (t - 60)^2 * 1e-16 ~ 1e-8 s^2 of variance
    assert var == pytest.approx(720.0 + dt**2 / 12, abs=1e-7)


# ------------------------------------------------------------------------- rows 14-15: funnel
def test_row14_funnel_boundary_cstr():
    m = CSTR(60.0)
    check(funnel_boundary(m, 0.05, 10.0), "0.3257")
    assert funnel_boundary(m, 0.05, 10.0) == pytest.approx(0.05 / -math.expm1(-1 / 6), rel=1e-13)
    br = funnel_boundary(m, 0.05, 10.0, api_fraction=0.10)
    check(br.overfeed, "0.3639")
    check(br.underfeed, "0.3599")


@pytest.mark.parametrize(("model", "flow", "conc"),
                         [(CSTR(60.0), "3.08", "3.41"),
                          (TanksInSeries(60.0, 5), "3.07", "3.40"),
                          (TanksInSeries(60.0, 12), "2.10", "2.32")])
def test_row15_longest_tolerable_stop(model, flow, conc):
    check(longest_tolerable_stop(model, 0.05), flow)
    check(longest_tolerable_stop(model, 0.05, api_fraction=0.10), conc)


def test_row15_cstr_stop_closed_form():
    assert longest_tolerable_stop(CSTR(60.0), 0.05) == pytest.approx(-60 * math.log(0.95),
                                                                    abs=1e-9)


def test_row15b_example_line_peak_response():
    line = Series(PFR(10.0), TanksInSeries(60.0, 5), CSTR(30.0))
    g = peak_response(line, [10.0, 20.0])
    check(g[0], "0.1138")
    check(g[1], "0.2250")
    flow = funnel_boundary(line, 0.05, [10.0, 20.0])
    conc = funnel_boundary(line, 0.05, [10.0, 20.0], api_fraction=0.10)
    check(100 * flow[0], "43.9")
    check(100 * conc.overfeed[0], "49.1")
    check(100 * flow[1], "22.2")
    check(100 * conc.overfeed[1], "24.8")


@pytest.mark.parametrize(("d", "expected"), [(2.0, "11.28"), (10.0, "12.73"), (30.0, "17.10")])
def test_row15c_excursion_duration(d, expected):
    tau, m = 60.0, 1.2
    got = excursion_duration(CSTR(tau), d, m)
    check(got, expected)
    exact = d + tau * math.log(m) + tau * math.log(1 - (-math.expm1(-d / tau)) / m)
    assert got == pytest.approx(exact, abs=1e-8)


def _int_e2_tis(tau: float, n: float) -> float:
    return n / tau * math.exp(special.gammaln(2 * n - 1) - (2 * n - 1) * math.log(2)
                              - 2 * special.gammaln(n))


@pytest.mark.parametrize(("model", "expected"),
                         [(CSTR(60.0), "120"), (TanksInSeries(60.0, 5), "88"),
                          (TanksInSeries(30.0, 3), "53"), (TanksInSeries(120.0, 5), "176")])
def test_row15d_variance_reduction_ratio(model, expected):
    numeric, _ = integrate.quad(lambda t: model.pdf(t) ** 2, 0.0, np.inf, limit=400,
                                epsabs=1e-15)
    n = 1.0 if isinstance(model, CSTR) else model.n
    closed = _int_e2_tis(model.mean, n)
    assert numeric == pytest.approx(closed, rel=1e-9)
    check(1.0 / (1.0 * numeric), expected)   # VRR = 1 / (dt int E^2), dt = 1 s


# ------------------------------------------------------------ row 16 / the worked line quantiles
LINE_QUANTILES = [(0.001, "25.602"), (0.005, "31.732"), (0.025, "41.305"), (0.5, "93.418"),
                  (0.975, "196.601"), (0.995, "245.444"), (0.999, "293.834")]


@pytest.fixture(scope="module")
def line():
    return Series(PFR(10.0), TanksInSeries(60.0, 5), CSTR(30.0))


@pytest.mark.parametrize(("q", "expected"), LINE_QUANTILES)
def test_worked_line_line_quantiles(line, q, expected):
    check(line.quantile(q), expected)


def test_worked_line_line_moments(line):
    assert line.mean == pytest.approx(100.0, rel=1e-15)
    assert line.variance == pytest.approx(720.0 + 900.0, rel=1e-15)


def test_worked_line_line_quantiles_by_independent_quadrature(line):
    """F of the line by direct quadrature of the convolution integral (no gamma mixture)."""
    tis, cstr = TanksInSeries(60.0, 5), CSTR(30.0)
    for q, expected in LINE_QUANTILES[::3]:
        t = float(expected)
        f, _ = integrate.quad(lambda s, t=t: tis.pdf(s) * cstr.cdf(t - 10.0 - s), 0.0, t - 10.0,
                              epsabs=1e-14, epsrel=1e-12)
        assert abs(f - q) < 1e-3 * 3e-2  # F is within |E| * 5e-4 s of q at the quoted digits
        assert line.cdf(t) == pytest.approx(f, abs=1e-13)


def test_worked_line_cstr_feed_frame_lead_time():
    m = CSTR(30.0)
    check(m.quantile(0.001), "0.03")
    check(m.quantile(0.005), "0.15")
    check(m.quantile(0.025), "0.76")


def test_row16_method_b_windows(line):
    check(300.0 + line.quantile(0.005), "331.73")
    check(320.0 + line.quantile(0.995), "565.44")


def _concentration(line, t, height, t0, d, w0=0.10):
    """w/w0 at the diverter for an API flow pulse (relative height) on [t0, t0 + d]."""
    x = height * (line.cdf(t - t0) - line.cdf(t - t0 - d))
    return (1.0 + x) / (1.0 + w0 * x)


@pytest.mark.parametrize(("height", "d", "window", "t_min", "c_min"),
                         [(-0.5, 20.0, ("358.65", "440.89"), "391.7", "89.76"),
                          (-1.0, 10.0, ("353.65", "435.72"), "386.3", "89.64")])
def test_row16_method_a_windows(line, height, d, window, t_min, c_min):
    from scipy.optimize import brentq, minimize_scalar

    def c(t):
        return _concentration(line, t, height, 300.0, d)

    res = minimize_scalar(c, bounds=(340.0, 460.0), method="bounded", options={"xatol": 1e-8})
    check(res.x, t_min)
    check(100.0 * res.fun, c_min)
    start = brentq(lambda t: c(t) - 0.95, 320.0, res.x, xtol=1e-10)
    end = brentq(lambda t: c(t) - 0.95, res.x, 700.0, xtol=1e-10)
    check(start, window[0])
    check(end, window[1])


# ------------------------------------------ kernel lengths, exact gamma quantiles, funnel table
def test_kernel_length_examples():
    check(TanksInSeries(60.0, 5).quantile(0.999), "177.5")
    check(CSTR(60.0).quantile(0.999), "414.5")


@pytest.mark.parametrize(("n", "t05", "t995"),
                         [(1.5, "1.4", "256.8"), (2.5, "4.9", "201.0"), (3.7, "9.1", "169.9"),
                          (5.5, "14.2", "145.9"), (8.3, "19.8", "127.0")])
def test_exact_gamma_quantiles(n, t05, t995):
    m = TanksInSeries(60.0, n)
    check(m.quantile(0.005), t05)
    check(m.quantile(0.995), t995)


FUNNEL_D = [1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0]
FUNNEL_TABLE = [
    (CSTR(60.0), ["3.025", "0.625", "0.326", "0.176", "0.127", "0.079", "0.058", "0.050"]),
    (TanksInSeries(60.0, 5),
     ["3.071", "0.615", "0.309", "0.158", "0.109", "0.065", "0.051", "0.050"]),
    (TanksInSeries(60.0, 12),
     ["2.095", "0.420", "0.213", "0.111", "0.079", "0.054", "0.050", "0.050"]),
    (TanksInSeries(120.0, 3),
     ["7.389", "1.478", "0.740", "0.371", "0.249", "0.129", "0.073", "0.051"]),
]


@pytest.mark.parametrize(("model", "row"), FUNNEL_TABLE)
def test_funnel_funnel_table(model, row):
    got = funnel_boundary(model, 0.05, FUNNEL_D)
    for value, expected in zip(got, row, strict=True):
        check(value, expected)


def test_funnel_cstr_closed_form():
    d = np.array(FUNNEL_D)
    np.testing.assert_allclose(funnel_boundary(CSTR(60.0), 0.05, d),
                               0.05 / -np.expm1(-d / 60.0), rtol=1e-13)
