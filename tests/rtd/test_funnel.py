"""Tests of cmsim.rtd.funnel against closed forms and brute-force maximisation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cmsim.errors import ParameterError
from cmsim.rtd import (
    CSTR,
    PFR,
    AxialDispersion,
    Empirical,
    FunnelBranches,
    Series,
    TanksInSeries,
    excursion_duration,
    funnel_boundary,
    longest_tolerable_stop,
    peak_response,
)


def brute_g(model, d, step=2e-2):
    t = np.arange(model.lower_bound, float(model.quantile(0.999)) + d, step)
    return float(np.max(model.cdf(t) - model.cdf(t - d)))


def test_cstr_closed_form():
    d = np.array([0.0, 0.3, 1.0, 10.0, 60.0, 1000.0])
    np.testing.assert_allclose(peak_response(CSTR(60.0), d), -np.expm1(-d / 60.0), rtol=1e-14)


def test_delayed_cstr_closed_form():
    m = Series(PFR(12.0), CSTR(30.0))
    d = np.array([1.0, 10.0, 100.0])
    np.testing.assert_allclose(peak_response(m, d), -np.expm1(-d / 30.0), rtol=1e-14)


@pytest.mark.parametrize("model", [TanksInSeries(60.0, 5), TanksInSeries(60.0, 12),
                                   AxialDispersion(60.0, 15.0),
                                   Series(PFR(10.0), TanksInSeries(60.0, 5), CSTR(30.0))])
@pytest.mark.parametrize("d", [1.0, 10.0, 45.0])
def test_peaked_models_against_brute_force(model, d):
    g = peak_response(model, d)
    gb = brute_g(model, d)
    assert g >= gb - 1e-14            # the optimiser is never worse than the grid
    assert g - gb < 1e-7              # 20 ms grid: within (E'/2) step^2 ~ 1e-8 of the max


def test_optimum_satisfies_equal_density_condition():
    from cmsim.rtd.funnel import _peaks

    m = TanksInSeries(60.0, 5)
    for d in (2.0, 20.0, 80.0):
        t = float(_peaks(m, np.array([d]))[0][0])
        assert m.pdf(t) == pytest.approx(m.pdf(t - d), rel=1e-6)


def test_bimodal_empirical():
    t = np.linspace(0, 100, 201)
    e = np.exp(-0.5 * ((t - 20) / 3) ** 2) + 0.6 * np.exp(-0.5 * ((t - 70) / 4) ** 2)
    m = Empirical(t, e)
    for d in (2.0, 15.0, 60.0):
        g = peak_response(m, d)
        gb = brute_g(m, d, step=1e-3)
        assert g >= gb - 1e-14 and g - gb < 1e-7


@pytest.mark.parametrize("model", [
    Series(AxialDispersion(60.0, 20.0), PFR(10.0), CSTR(30.0)),
    Series(Empirical(np.linspace(0.0, 200.0, 101),
                     np.exp(-0.5 * ((np.linspace(0.0, 200.0, 101) - 60.0) / 15.0) ** 2)),
           CSTR(30.0)),
], ids=["dispersion-series", "empirical-series"])
def test_series_that_integrate_numerically_many_durations_at_once(model):
    """The report's case: g(d) of a feeder-to-gate series with a dispersion or tracer-curve
    blender for 32 durations in one call, against brute force and one duration at a time."""
    d = np.geomspace(model.mean / 1000.0, 30.0 * model.mean, 32)
    g = peak_response(model, d)
    one = np.array([peak_response(model, float(x)) for x in d[::8]])
    np.testing.assert_allclose(g[::8], one, rtol=0, atol=1e-12)
    for x, gx in zip(d[[6, 16]], g[[6, 16]], strict=True):
        gb = brute_g(model, float(x), step=0.05)
        assert gx >= gb - 1e-12 and gx - gb < 1e-6


def test_pfr_and_limits():
    assert peak_response(PFR(5.0), 0.0) == 0.0
    assert peak_response(PFR(5.0), 0.1) == 1.0
    g = peak_response(TanksInSeries(60.0, 5), np.geomspace(0.1, 5000, 30))
    assert np.all(np.diff(g) >= -1e-15)
    assert g[-1] == pytest.approx(1.0, abs=1e-12)
    b = funnel_boundary(TanksInSeries(60.0, 5), 0.05, [0.0, 1e4])
    assert b[0] == math.inf and b[1] == pytest.approx(0.05, rel=1e-12)
    assert isinstance(funnel_boundary(CSTR(1.0), 0.05, 1.0), float)


def test_finite_api_fraction_branches():
    m = TanksInSeries(60.0, 5)
    d = np.array([5.0, 30.0])
    low = funnel_boundary(m, 0.05, d)
    br = funnel_boundary(m, 0.05, d, api_fraction=0.2)
    assert isinstance(br, FunnelBranches)
    np.testing.assert_allclose(br.overfeed, low / (1 - 0.2 * 1.05), rtol=1e-15)
    np.testing.assert_allclose(br.underfeed, low / (1 - 0.2 * 0.95), rtol=1e-15)
    # exact check: a pulse of that height hits the concentration limit exactly
    g = peak_response(m, d)
    x = br.overfeed * g
    np.testing.assert_allclose((1 + x) / (1 + 0.2 * x), 1.05, rtol=1e-13)
    x = -br.underfeed * g
    np.testing.assert_allclose((1 + x) / (1 + 0.2 * x), 0.95, rtol=1e-13)


@pytest.mark.parametrize("model", [CSTR(60.0), TanksInSeries(60.0, 5), TanksInSeries(20.0, 0.5),
                                   AxialDispersion(60.0, 30.0, boundary="open")])
def test_longest_tolerable_stop_solves_g_equals_delta(model):
    d = longest_tolerable_stop(model, 0.05)
    assert peak_response(model, d) == pytest.approx(0.05, rel=1e-11)
    dc = longest_tolerable_stop(model, 0.05, api_fraction=0.1)
    assert peak_response(model, dc) == pytest.approx(0.05 / (1 - 0.1 * 0.95), rel=1e-11)
    assert dc > d


def test_stop_of_plug_flow_is_zero():
    assert longest_tolerable_stop(PFR(10.0), 0.05) == pytest.approx(0.0, abs=1e-9)


def test_excursion_duration_against_dense_grid():
    m = TanksInSeries(60.0, 5)
    d, mult = 10.0, 1.5
    got = excursion_duration(m, d, mult)
    level = peak_response(m, d) / mult
    t = np.arange(0.0, 400.0, 1e-3)
    above = (m.cdf(t) - m.cdf(t - d)) > level
    assert got == pytest.approx(above.sum() * 1e-3, abs=3e-3)
    assert excursion_duration(m, d, 1.0) == 0.0


def _raises(fn, name, rule_part, *args, **kwargs):
    with pytest.raises(ParameterError) as info:
        fn(*args, **kwargs)
    assert info.value.name == name and rule_part in info.value.rule
    assert name in str(info.value)


def test_bad_input():
    m = CSTR(60.0)
    _raises(funnel_boundary, "delta", "(0, 1)", m, 0.0, [1.0])
    _raises(funnel_boundary, "delta", "(0, 1)", m, 1.5, [1.0])
    _raises(funnel_boundary, "durations", ">= 0", m, 0.05, [1.0, -2.0])
    _raises(funnel_boundary, "durations", "finite", m, 0.05, [math.nan])
    _raises(funnel_boundary, "api_fraction", "(0, 1)", m, 0.05, [1.0], api_fraction=1.2)
    _raises(funnel_boundary, "api_fraction", "must be <", m, 0.05, [1.0], api_fraction=0.97)
    _raises(peak_response, "model", "RTDModel", "CSTR", [1.0])
    _raises(longest_tolerable_stop, "delta", "(0, 1)", m, -0.1)
    _raises(excursion_duration, "multiple", ">= 1", m, 10.0, 0.5)
    _raises(excursion_duration, "duration", "> 0", m, 0.0, 1.2)
