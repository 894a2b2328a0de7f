"""ContinuousBlender (speed law, mass-state) and TabletPress (tablets, stop/start)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsim import rtd
from cmsim.errors import ParameterError
from cmsim.unitops import ContinuousBlender, TabletPress

DT = 0.5


def _steady_holdup(model, u):
    m = np.arange(1, 40000) * DT
    return DT * np.asarray(u) * np.sum(model.sf(m))


# ---------------------------------------------------------------- blender
def test_blender_step_response_from_empty_is_F_at_tick_ends():
    model = rtd.TanksInSeries(60.0, 5)
    b = ContinuousBlender(model, DT, 2)
    n = 600
    y = b.step(np.ones((2, n)) * np.array([[0.1], [0.9]]))
    F = model.cdf((np.arange(n) + 1) * DT)
    np.testing.assert_allclose(y[0], 0.1 * F, atol=1e-14)
    np.testing.assert_allclose(y[1], 0.9 * F, atol=1e-14)


def test_blender_steady_state_output_equals_input():
    model = rtd.Series(rtd.PFR(5.0), rtd.TanksInSeries(60.0, 5))
    b = ContinuousBlender(model, DT, 3)
    u = np.array([0.0005, 0.0049, 0.00003])
    b.reset(u)
    y = b.step(np.repeat(u[:, None], 500, axis=1))
    np.testing.assert_allclose(y, np.repeat(u[:, None], 500, axis=1), rtol=1e-12)
    np.testing.assert_allclose(b.holdup, 5.0 * u + _steady_holdup(rtd.TanksInSeries(60.0, 5), u),
                               rtol=1e-9)


@pytest.mark.parametrize("new_speed", [400.0, 150.0])
def test_speed_change_conserves_mass_and_holdup_relaxes(new_speed):
    beta = 0.7
    b = ContinuousBlender(rtd.TanksInSeries(60.0, 5), DT, 2, speed=250.0, speed_exponent=beta)
    u = np.array([0.002, 0.018])
    b.reset(u)
    h0 = b.holdup.copy()
    tau_new = 60.0 * (new_speed / 250.0) ** (-beta)
    assert b.tau_at(new_speed) == pytest.approx(tau_new, rel=1e-14)
    b.set_speed(new_speed)
    assert b.speed == new_speed
    np.testing.assert_allclose(b.holdup, h0, rtol=1e-13)  # masses kept across the change
    n = int(30 * tau_new / DT)
    x = np.repeat(u[:, None], n, axis=1)
    y = b.step(x)
    # mass balance over the transient
    np.testing.assert_allclose(DT * x.sum(axis=1), DT * y.sum(axis=1) + b.holdup - h0,
                               rtol=1e-12, atol=1e-15)
    # hold-up relaxes to the steady hold-up of the new RTD (~ tau_new x flow)
    expected = _steady_holdup(rtd.TanksInSeries(tau_new, 5), u)
    np.testing.assert_allclose(b.holdup, expected, rtol=1e-9)
    np.testing.assert_allclose(expected, u * (tau_new - DT / 2), rtol=1e-3)
    # speeding up empties hold-up: transient outflow surge; slowing down: a deficit
    if new_speed > 250.0:
        assert np.all(y[:, 0] > u)
    else:
        assert np.all(y[:, 0] < u)
    # composition is unaffected (same RTD for every channel)
    np.testing.assert_allclose(y[0] / y.sum(axis=0), u[0] / u.sum(), rtol=1e-12)
    np.testing.assert_allclose(y[:, -1], u, rtol=1e-9)


def test_speed_change_is_chunking_invariant():
    def run(cuts):
        b = ContinuousBlender(rtd.CSTR(40.0), DT, 1, speed=200.0)
        x = np.random.default_rng(2).random((1, 600))
        parts = []
        edges = [0, *cuts, 600]
        for a, c in zip(edges[:-1], edges[1:], strict=True):
            if a == 300:
                b.set_speed(300.0)
            parts.append(b.step(x[:, a:c]))
        return np.concatenate(parts, axis=1)

    np.testing.assert_allclose(run([300]), run([17, 300, 301, 555]), rtol=0, atol=1e-14)


def test_speed_change_unsupported_models_raise_clear_error():
    for model in (rtd.TanksInSeries(60.0, 4.5), rtd.AxialDispersion(60.0, 20.0)):
        b = ContinuousBlender(model, DT, 1, speed=200.0)
        with pytest.raises(ParameterError, match="TanksInSeries with integer n_tanks"):
            b.set_speed(300.0)
    with pytest.raises(ParameterError, match="reference speed"):
        ContinuousBlender(rtd.CSTR(60.0), DT, 1).set_speed(100.0)


# ---------------------------------------------------------------- press
def _press(**kw):
    return TabletPress(rtd.PFR(10.0), rtd.CSTR(30.0), 250e-6, DT, 2, **kw)


def test_tablet_count_equals_mass_over_tablet_mass():
    p = _press()
    rng = np.random.default_rng(4)
    x = 0.005 * (1 + 0.1 * rng.standard_normal((2, 800)))
    y = p.step(x)
    tabs = p.tablets(y)
    np.testing.assert_allclose(tabs, y.sum(axis=0) * DT / 250e-6, rtol=1e-14)
    assert tabs.sum() == pytest.approx(DT * y.sum() / 250e-6, rel=1e-12)
    # 20 kg/h at 250 mg -> 80,000 tablets/h at steady state [V]
    p2 = _press()
    u = np.array([2.0, 18.0]) / 3600
    p2.reset(u)
    tabs = p2.tablets(p2.step(np.repeat(u[:, None], 7200, axis=1)))
    assert tabs.sum() == pytest.approx(80_000.0, rel=1e-9)


def test_press_steady_state_and_holdup():
    p = _press()
    u = np.array([0.001, 0.004])
    p.reset(u)
    np.testing.assert_allclose(p.holdup, 10.0 * u + _steady_holdup(rtd.CSTR(30.0), u),
                               rtol=1e-9)
    y = p.step(np.repeat(u[:, None], 100, axis=1))
    np.testing.assert_allclose(y, np.repeat(u[:, None], 100, axis=1), rtol=1e-12)
    assert p.n_dispersive == 1


def _stop_run(cuts, release_rate=None):
    p = _press(release_rate=release_rate)
    u = np.array([0.001, 0.004])
    p.reset(u)
    x = np.repeat(u[:, None], 4000, axis=1)
    x[0, 1000:1100] = 0.003  # composition differs while stopped
    edges = sorted({0, 1000, 1200, 4000, *cuts})
    ys, holds = [], []
    for a, c in zip(edges[:-1], edges[1:], strict=True):
        if a == 1000:
            p.stop()
        if a == 1200:
            p.start()
        ys.append(p.step(x[:, a:c]))
        holds.append(p.holdup.copy())
    return p, x, np.concatenate(ys, axis=1)


@settings(max_examples=10, deadline=None)
@given(cuts=st.lists(st.integers(1, 3999), max_size=5))
def test_press_stop_start_mass_balance_and_chunking(cuts):
    p0, x, y0 = _stop_run([])
    p, _, y = _stop_run(cuts)
    np.testing.assert_allclose(y, y0, rtol=0, atol=1e-15)
    u = x[:, 0]
    h_start = 10.0 * u + _steady_holdup(rtd.CSTR(30.0), u)
    np.testing.assert_allclose(DT * x.sum(axis=1), DT * y.sum(axis=1) + p.holdup - h_start,
                               rtol=1e-12)


def test_a_stop_that_brings_nothing_keeps_draining_the_buffer_of_an_earlier_one():
    """A second stop and restart within one tick (or with upstream stopped) brought nothing
    into the buffer; the buffer left from the first stop used to get a release rate of 0 and
    the next step failed ('release_rate=0.0: must be > 0'). It keeps draining at its rate,
    and mass is conserved."""
    p = _press()
    u = np.array([0.001, 0.004])
    p.stop()
    p.step(np.repeat(u[:, None], 100, axis=1))
    p.start()
    p.step(np.repeat(u[:, None], 10, axis=1))
    left = p.buffer.copy()
    p.stop()
    p.start()  # no tick in between
    y = p.step(np.repeat(u[:, None], 10, axis=1))
    rate = 0.1 * u.sum()  # restart_boost x the mean inflow of the first stop [kg/s]
    assert p.buffer.sum() == pytest.approx(left.sum() - 10 * DT * rate, rel=1e-12)
    assert np.all(np.isfinite(y))
    p.stop()
    p.step(np.zeros((2, 5)))  # upstream stopped during this stop
    p.start()
    p.step(np.repeat(u[:, None], 10, axis=1))
    assert p.buffer.sum() == pytest.approx(left.sum() - 20 * DT * rate, rel=1e-12)


def test_press_stop_makes_no_tablets_and_catches_up():
    p, x, y = _stop_run([])
    assert np.all(y[:, 1000:1200] == 0.0)
    assert np.all(p.tablets(y[:, 1000:1200]) == 0.0)
    # default release rate: 10 % of the mean inflow during the stop, so a 100-s stop is
    # worked off in 1000 s = 2000 ticks; the buffer drains linearly with its composition
    p = _press()
    u = np.array([0.001, 0.004])
    p.stop()
    p.step(np.repeat(u[:, None], 200, axis=1))
    stopped_mass = 200 * DT * u
    np.testing.assert_allclose(p.buffer, stopped_mass, rtol=1e-14)
    p.start()
    p.step(np.repeat(u[:, None], 1000, axis=1))
    np.testing.assert_allclose(p.buffer, 0.5 * stopped_mass, rtol=1e-12)
    p.step(np.repeat(u[:, None], 999, axis=1))
    assert p.buffer.sum() > 0
    p.step(np.repeat(u[:, None], 1, axis=1))
    assert p.buffer.sum() == pytest.approx(0.0, abs=1e-15)
    # explicit release rate: the buffer is emptied at the predicted tick
    rate = 0.01
    p, x, y = _stop_run([], release_rate=rate)
    stopped_mass = DT * x[:, 1000:1200].sum(axis=1)
    assert p.buffer.sum() == 0.0
    ticks = stopped_mass.sum() / (rate * DT)
    # the outflow after the restart exceeds the inflow while the buffer drains
    late = y[:, 1200 + int(ticks) + 1200:].sum(axis=0)
    np.testing.assert_allclose(late, x[:, -1].sum(), rtol=1e-6)
    assert y[:, 1200 + int(ticks) // 2].sum() > x[:, 0].sum() * 1.5


# ---------------------------------------------------------------- tablets
def test_api_content_fraction_of_target():
    from cmsim.streams import ChannelMap
    from cmsim.unitops.tablets import api_content

    cm = ChannelMap.from_lots({"API": ["a", "b"], "MCC": ["m"]}, api_material="API")
    x = np.array([[0.01, 0.0, 0.0], [0.01, 0.022, 0.0], [0.18, 0.178, 0.0]])
    c = api_content(x, cm, 0.1)
    np.testing.assert_allclose(c[:2], [1.0, 1.1], rtol=1e-14)
    assert np.isnan(c[2])


def test_sample_tablets_statistics():
    from cmsim.unitops.tablets import sample_tablets

    rng = np.random.default_rng(8)
    n = 200_000
    w = np.full(n, 0.105)
    mass, pot = sample_tablets(w, 250e-6, 0.1, rng, mass_rsd=0.01, heterogeneity_rsd=0.015)
    assert mass.mean() == pytest.approx(250e-6, rel=4 * 0.01 / np.sqrt(n))
    assert pot.mean() == pytest.approx(1.05, rel=5 * 0.018 / np.sqrt(n))
    # independent relative errors: RSD^2 = 0.01^2 + 0.015^2 (+ their product, negligible)
    rsd = np.sqrt(0.01**2 + 0.015**2 + (0.01 * 0.015) ** 2)
    assert pot.std() / pot.mean() == pytest.approx(rsd, rel=0.02)
