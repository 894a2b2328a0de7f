"""Tests of cmsim.rtd.filters: exact tanks-in-series chain and plug-flow delay."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import gammainc, gammaincc

from cmsim.errors import ParameterError
from cmsim.rtd.filters import PlugFlowDelay, TanksInSeriesFilter


def gamma_bin_kernel(tau: float, n: float, dt: float, length: int) -> np.ndarray:
    """Independent bin-integrated TIS kernel w[j] = F((j+1)dt) - F(j dt) (scipy gammainc)."""
    j = np.arange(length + 1)
    return np.diff(gammainc(n, n * j * dt / tau))


def impulse_response(f: TanksInSeriesFilter, length: int) -> np.ndarray:
    x = np.zeros(length)
    x[0] = 1.0
    return f.step(x)


CASES = [
    (60.0, 5, 1.0),
    (60.0, 1, 1.0),
    (60.0, 5, 0.1),
    (30.0, 7, 2.0),
    (5.0, 3, 2.0),  # dt / tau_i = 1.2: coarse step
    (10.0, 50, 1.0),  # n = 50 with a coarse step: O(n^2) mass-state recursion
    (60.0, 50, 0.1),  # n = 50 with a fine step: scaled O(n) form
    (600.0, 12, 1.0),
]


@pytest.mark.parametrize(("tau", "n", "dt"), CASES)
def test_impulse_response_is_the_gamma_bin_kernel(tau: float, n: int, dt: float) -> None:
    length = int(12 * tau / dt) + 20
    y = impulse_response(TanksInSeriesFilter(tau, n, dt), length)
    w = gamma_bin_kernel(tau, n, dt, length)
    np.testing.assert_allclose(y, w, rtol=0, atol=1e-13)
    assert y[0] == pytest.approx(gammainc(n, n * dt / tau), rel=1e-13)
    assert y.min() >= 0.0


@pytest.mark.parametrize(("tau", "n", "dt"), CASES[:4])
def test_impulse_response_matches_model_kernel(tau: float, n: int, dt: float) -> None:
    import cmsim.rtd as rtd

    if not hasattr(rtd, "TanksInSeries"):
        pytest.skip("cmsim.rtd.TanksInSeries not available yet")
    w = np.asarray(rtd.TanksInSeries(tau, n).kernel(dt))
    y = impulse_response(TanksInSeriesFilter(tau, n, dt), w.size)
    np.testing.assert_allclose(y, w, rtol=0, atol=1e-13)


def test_exact_chain_moments_domain_row_13() -> None:
    # docs/reference-values.md row 13: exact chain tau=60, n=5, dt=1: mean 60.000, variance 720.083
    # (times from the midpoint of the input tick to the end of the output tick)
    dt = 1.0
    y = impulse_response(TanksInSeriesFilter(60.0, 5, dt), 3000)
    t = (np.arange(y.size) + 0.5) * dt
    mean = np.sum(t * y) / y.sum()
    var = np.sum((t - mean) ** 2 * y) / y.sum()
    assert mean == pytest.approx(60.000, abs=5e-4)
    assert var == pytest.approx(720.083, abs=5e-4)
    assert var == pytest.approx(720.0 + dt**2 / 12, abs=1e-6)


@pytest.mark.parametrize(("tau", "n", "dt"), [(60.0, 5, 1.0), (10.0, 50, 1.0), (45.0, 3, 0.5)])
def test_mass_conserved_after_tail_drains(tau: float, n: int, dt: float) -> None:
    rng = np.random.default_rng(n)
    f = TanksInSeriesFilter(tau, n, dt)
    x = np.concatenate([rng.random(2000), np.zeros(int(40 * tau / dt))])
    y = f.step(x)
    assert abs(y.sum() - x.sum()) <= 1e-12 * x.sum()
    assert f.holdup[0] <= 1e-12 * dt * x.sum()


def test_holdup_is_fed_minus_emitted_every_tick() -> None:
    dt = 0.5
    f = TanksInSeriesFilter(40.0, 4, dt)
    rng = np.random.default_rng(1)
    fed = emitted = 0.0
    for size in [1, 3, 100, 0, 57, 400]:
        x = rng.random(size)
        y = f.step(x)
        fed += dt * x.sum()
        emitted += dt * y.sum()
        assert f.holdup[0] == pytest.approx(fed - emitted, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(f.tank_masses.sum(axis=1), f.holdup, rtol=1e-13)


@pytest.mark.parametrize(("n", "dt"), [(5, 1.0), (50, 1.0), (2, 0.2)])
def test_set_mean_residence_time_keeps_masses_and_conserves_mass(n: int, dt: float) -> None:
    rng = np.random.default_rng(7)
    f = TanksInSeriesFilter(60.0, n, dt)
    fed = emitted = 0.0
    for tau in [60.0, 30.0, 90.0, 5.0, 60.0]:
        before = f.tank_masses.copy()
        f.set_mean_residence_time(tau)
        assert f.mean_residence_time == tau
        np.testing.assert_allclose(f.tank_masses, before, rtol=1e-11, atol=1e-13)
        x = rng.random(300)
        y = f.step(x)
        assert y.min() >= 0.0
        fed += dt * x.sum()
        emitted += dt * y.sum()
        assert abs(fed - emitted - f.holdup[0]) <= 1e-12 * fed


def test_faster_blender_discharges_its_holdup() -> None:
    u = 0.1  # kg/s
    f = TanksInSeriesFilter(60.0, 5, 0.1)
    f.reset(steady_input=u)
    np.testing.assert_allclose(f.step(np.full(10, u)), u, rtol=1e-13)
    h0 = f.holdup[0]
    f.set_mean_residence_time(30.0)
    y = f.step(np.full(20_000, u))
    # outflow of the last tank is M_5 / tau_i: doubles right after the change
    assert 1.9 * u < y[0] < 2.0 * u
    # the new steady state holds half the mass; the difference left through the outlet
    assert f.holdup[0] == pytest.approx(u * (30.0 - 0.05), rel=1e-3)
    assert 0.1 * y.sum() - 0.1 * 20_000 * u == pytest.approx(h0 - f.holdup[0], rel=1e-10)


@pytest.mark.parametrize(("tau", "n", "dt"), [(60.0, 5, 1.0), (10.0, 50, 1.0), (60.0, 1, 0.5)])
def test_reset_to_steady_state(tau: float, n: int, dt: float) -> None:
    u = np.array([0.0, 0.2, 3.0])
    f = TanksInSeriesFilter(tau, n, dt, batch=3)
    f.reset(steady_input=u)
    m = np.arange(1, int(60 * tau / dt))
    expected = dt * np.sum(gammaincc(n, n * m * dt / tau)) * u
    np.testing.assert_allclose(f.holdup, expected, rtol=1e-12)
    assert f.holdup[2] == pytest.approx(3.0 * (tau - dt / 2), rel=(dt / tau) ** 2)
    y = f.step(np.repeat(u[:, None], 50, axis=1))
    np.testing.assert_allclose(y, np.repeat(u[:, None], 50, axis=1), rtol=1e-12, atol=0)
    f.reset()
    assert np.all(f.holdup == 0.0)
    assert np.all(f.step(np.zeros((3, 4))) == 0.0)


def test_batch_rows_are_independent_and_match_1d() -> None:
    rng = np.random.default_rng(4)
    x = rng.random((4, 700))
    f2 = TanksInSeriesFilter(20.0, 3, 1.0)
    y2 = np.concatenate([f2.step(x[:, :123]), f2.step(x[:, 123:])], axis=1)
    for b in range(4):
        np.testing.assert_allclose(y2[b], TanksInSeriesFilter(20.0, 3, 1.0).step(x[b]),
                                   rtol=1e-14, atol=0)
    with pytest.raises(ParameterError, match="chunk"):
        f2.step(np.zeros((3, 2)))


@pytest.mark.parametrize("n", [5, 4])
def test_parallel_batch_path(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    import cmsim.rtd.filters as flt

    monkeypatch.setattr(flt, "PARALLEL_MIN_ROWS", 1)
    monkeypatch.setattr(flt, "PARALLEL_MIN_SAMPLES", 1)
    rng = np.random.default_rng(n)
    x = rng.random((3, 200))
    yp = flt.TanksInSeriesFilter(15.0, n, 1.0).step(x)
    for b in range(3):
        np.testing.assert_allclose(yp[b], flt.TanksInSeriesFilter(15.0, n, 1.0).step(x[b]),
                                   rtol=1e-14, atol=0)


def test_out_argument_and_shapes() -> None:
    f = TanksInSeriesFilter(10.0, 2, 1.0)
    out = np.empty(5)
    res = f.step(np.ones(5), out=out)
    assert res is out
    assert f.batch == 1
    with pytest.raises(ParameterError, match="out"):
        f.step(np.ones(5), out=np.empty(4))
    assert f.step(np.zeros(0)).shape == (0,)


def test_pulse_gives_no_negative_outputs() -> None:
    for tau, n, dt in CASES:
        f = TanksInSeriesFilter(tau, n, dt)
        x = np.zeros(int(30 * tau / dt))
        x[5] = 1.0
        y = f.step(x)
        assert y.min() >= 0.0
        assert np.all(y[:5] == 0.0)


@pytest.mark.parametrize(
    ("args", "name", "fragment"),
    [
        ((60.0, 2.5, 1.0), "n_tanks", "Convolver"),
        ((60.0, 0, 1.0), "n_tanks", ">= 1"),
        ((60.0, True, 1.0), "n_tanks", "bool"),
        ((-1.0, 5, 1.0), "mean_residence_time", "> 0"),
        ((60.0, 5, 0.0), "dt", "> 0"),
        ((60.0, 5, float("nan")), "dt", "finite"),
    ],
)
def test_tis_validation(args: tuple, name: str, fragment: str) -> None:
    with pytest.raises(ParameterError) as info:
        TanksInSeriesFilter(*args)
    assert info.value.name == name
    assert fragment in str(info.value)


def test_set_mean_residence_time_validation() -> None:
    f = TanksInSeriesFilter(60.0, 5, 1.0)
    with pytest.raises(ParameterError, match="mean_residence_time"):
        f.set_mean_residence_time(0.0)
    with pytest.raises(ParameterError, match="steady_input"):
        TanksInSeriesFilter(60.0, 5, 1.0, batch=2).reset(steady_input=[1.0, 2.0, 3.0])


# ---------------------------------------------------------------------------- PlugFlowDelay
def test_delay_shifts_by_integer_ticks_across_chunks() -> None:
    rng = np.random.default_rng(0)
    x = rng.random(100)
    d = PlugFlowDelay(7.5, 0.5)
    assert d.ticks == 15
    assert d.delay == 7.5
    pieces, start = [], 0
    for s in [0, 1, 3, 15, 16, 2, 40]:
        pieces.append(d.step(x[start : start + s]))
        start += s
    pieces.append(d.step(x[start:]))
    y = np.concatenate(pieces)
    np.testing.assert_array_equal(y[:15], 0.0)
    np.testing.assert_array_equal(y[15:], x[:-15])
    assert d.holdup[0] == pytest.approx(0.5 * x[-15:].sum(), rel=1e-14)


def test_delay_rounding_rules() -> None:
    with pytest.raises(ParameterError, match="allow_rounding"):
        PlugFlowDelay(1.3, 1.0)
    assert PlugFlowDelay(1.3, 1.0, allow_rounding=True).ticks == 1
    assert PlugFlowDelay(2.5, 1.0, allow_rounding=True).ticks == 3  # half rounds up
    assert PlugFlowDelay(0.3, 0.1).ticks == 3  # 0.3/0.1 = 2.9999999999999996 is accepted
    assert PlugFlowDelay(0.0, 1.0).ticks == 0
    with pytest.raises(ParameterError, match="delay"):
        PlugFlowDelay(-1.0, 1.0)


def test_zero_delay_and_batch_and_reset() -> None:
    x = np.arange(12.0).reshape(2, 6)
    np.testing.assert_array_equal(PlugFlowDelay(0.0, 1.0).step(x), x)
    d = PlugFlowDelay(2.0, 1.0, batch=2)
    d.reset(steady_input=[1.0, 5.0])
    np.testing.assert_allclose(d.holdup, [2.0, 10.0])
    y = d.step(x)
    np.testing.assert_array_equal(y[:, :2], [[1.0, 1.0], [5.0, 5.0]])
    np.testing.assert_array_equal(y[:, 2:], x[:, :4])
    d.reset()
    assert np.all(d.holdup == 0.0)
    out = np.empty((2, 3))
    assert d.step(x[:, :3], out=out) is out
    np.testing.assert_array_equal(out, 0.0 * out + np.array([[0, 0, 0], [0, 0, 6]]))
