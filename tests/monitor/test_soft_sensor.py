"""RTD soft sensor: exact against a closed-form line F, worked diversion example, chunking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from cmsim import rtd
from cmsim.errors import ParameterError
from cmsim.monitor.soft_sensor import RTDSoftSensor, midpoint_kernel
from cmsim.monitor.windows import predicted_window

LINE = rtd.Series(rtd.PFR(10.0), rtd.TanksInSeries(60.0, 5), rtd.CSTR(30.0))
API, EXC = 2.0 / 3600.0, 18.0 / 3600.0


def line_cdf(t):
    """F of PFR 10 + Gamma(5, 12) + Exp(30) in closed form (independent of cmsim.rtd)."""
    s = np.clip(np.asarray(t, dtype=float) - 10.0, 0.0, None)
    return (stats.gamma.cdf(s, 5, scale=12.0)
            - np.exp(-s / 30.0) * (20.0 / 12.0) ** 5 * stats.gamma.cdf(s, 5, scale=20.0))


def _flows(dt, factor, t0, duration, horizon=900.0):
    n = int(round(horizon / dt))
    t_in = np.arange(n) * dt
    api = np.full(n, API)
    api[(t_in >= t0 - 1e-9) & (t_in < t0 + duration - 1e-9)] *= factor
    return np.vstack([api, np.full(n, EXC)])


def _run(sensor, flows, cuts=()):
    ts, cs = [], []
    for piece in np.split(flows, list(cuts), axis=1):
        t, c = sensor.step(piece)
        ts.append(t)
        cs.append(c)
    return np.concatenate(ts), np.concatenate(cs, axis=-1)


def test_prediction_equals_closed_form_for_zoh_input():
    dt = 0.5
    flows = _flows(dt, 0.5, 300.0, 20.0)
    s = RTDSoftSensor(LINE, dt, initial_flows=[API, EXC])
    t, c = _run(s, flows, cuts=[7, 100, 1000])
    assert t[0] == dt and np.allclose(np.diff(t), dt)
    # the rectangular API dip of 0.5 * API over [300, 320) leaves as 0.5 API (F(t-300)-F(t-320))
    d = 0.5 * API * (line_cdf(t - 300.0) - line_cdf(t - 320.0))
    exact = (API - d) / (API + EXC - d) / 0.1
    np.testing.assert_allclose(c, exact, rtol=0, atol=1e-8)  # kernel tail cut at 1e-9


@pytest.mark.parametrize(("factor", "duration", "window", "minimum"), [
    (0.5, 20.0, (358.65, 440.89), (0.8976, 391.7)),
    (0.0, 10.0, (353.65, 435.72), (0.8964, 386.3)),
])
def test_worked_example_windows_within_one_tick(factor, duration, window, minimum):
    dt = 0.5
    s = RTDSoftSensor(LINE, dt, initial_flows=[API, EXC])
    t, c = _run(s, _flows(dt, factor, 300.0, duration), cuts=[333, 801])
    k = int(np.argmin(c))
    assert c[k] == pytest.approx(minimum[0], abs=2e-4)
    assert t[k] == pytest.approx(minimum[1], abs=dt)
    (w,) = predicted_window(t, c, (0.95, 1.05))
    assert abs(w.start_s - window[0]) <= dt and abs(w.end_s - window[1]) <= dt


def test_envelope_rows_equal_single_model_sensors():
    dt = 1.0
    models = [LINE, rtd.Series(rtd.PFR(8.0), rtd.TanksInSeries(50.0, 5), rtd.CSTR(30.0))]
    flows = _flows(dt, 1.3, 200.0, 15.0, horizon=600.0)
    sensor = RTDSoftSensor(models, dt, initial_flows=[API, EXC])
    t, env = _run(sensor, flows)
    assert sensor.lead_ticks == 8  # the common plug-flow delay (8 s) is known ahead
    assert env.shape == (2, flows.shape[1] + 8)
    for row, m in zip(env, models, strict=True):
        single_sensor = RTDSoftSensor(m, dt, initial_flows=[API, EXC])
        _, single = _run(single_sensor, flows)
        n = min(single.size, row.size)
        np.testing.assert_allclose(row[:n], single[:n], rtol=0, atol=1e-14)
    windows = predicted_window(t, env, (0.95, 1.05))
    assert len(windows) == 1  # overlapping excursions of the two models merge


def test_empty_line_start_and_constant_composition():
    dt = 1.0
    flows = np.vstack([np.full(200, API), np.full(200, EXC)])
    s = RTDSoftSensor(LINE, dt, target_fraction=0.1)
    t, c = s.step(flows)
    # nothing reaches the diverter before the 10 s plug-flow delay
    assert np.all(np.isnan(c[t <= 10.0]))
    np.testing.assert_allclose(c[t > 11.0], 1.0, rtol=1e-12)
    assert s.ticks == 200
    s.reset()
    t, c = s.step(flows[:, :3])
    assert s.ticks == 0 + 3 and t.size == 3 + s.lead_ticks == 13
    assert np.isnan(c[t <= 10.0]).all() and np.allclose(c[t > 11.0], 1.0)


def test_three_components_and_api_row():
    dt = 1.0
    base = np.array([[15.0], [2.0], [3.0]]) / 3600.0  # API is row 1
    flows = np.tile(base, 1200)
    flows[1, 100:110] = 0.0
    s = RTDSoftSensor(LINE, dt, api_index=1, n_components=3, initial_flows=base[:, 0])
    assert s.target_fraction == pytest.approx(0.1)
    flow_out = s.predict_flows(flows)
    assert flow_out.shape == (1, 3, 1200 + s.lead_ticks) and s.lead_ticks == 10
    # mass conservation: the API outflow deficit equals the 10 s stop once it has all left
    deficit = np.sum(base[1, 0] - flow_out[0, 1]) * dt
    assert deficit == pytest.approx(10.0 * base[1, 0], rel=1e-6)


def test_bad_arguments():
    with pytest.raises(ParameterError, match="model"):
        RTDSoftSensor([], 1.0, target_fraction=0.1)
    with pytest.raises(ParameterError, match="api_index"):
        RTDSoftSensor(LINE, 1.0, api_index=2, target_fraction=0.1)
    with pytest.raises(ParameterError, match="target_fraction"):
        RTDSoftSensor(LINE, 1.0)
    with pytest.raises(ParameterError, match="initial_flows"):
        RTDSoftSensor(LINE, 1.0, initial_flows=[1.0, -1.0])
    s = RTDSoftSensor(LINE, 1.0, target_fraction=0.1)
    with pytest.raises(ParameterError, match="component rows"):
        s.step(np.zeros((3, 5)))


def test_lead_outputs_equal_the_delayed_prediction():
    """With a 10 s dead time, outputs up to input tick + 10 are known early; they equal the
    outputs of the same sensor fed further (causality of the lead)."""
    dt = 1.0
    flows = _flows(dt, 0.5, 100.0, 20.0, horizon=400.0)
    a = RTDSoftSensor(LINE, dt, initial_flows=[API, EXC], timing="tick_average")
    t1, c1 = a.step(flows[:, :150])
    assert t1.size == 160 and t1[0] == 0.5 and np.allclose(np.diff(t1), dt)
    b = RTDSoftSensor(LINE, dt, initial_flows=[API, EXC], timing="tick_average")
    t2, c2 = _run(b, flows, cuts=[37, 151])
    np.testing.assert_allclose(c2[:160], c1, rtol=0, atol=1e-14)
    # tick-average convention: mid-point kernel of the line, sum 1, mean = MRT (100 s)
    w = midpoint_kernel(LINE, dt)
    assert abs(w.sum() - 1.0) < 1e-9
    assert np.sum(np.arange(w.size) * w) * dt == pytest.approx(100.0, abs=1e-6)


@settings(max_examples=15, deadline=None)
@given(st.integers(50, 350), st.sampled_from([40.0, 80.0]))
def test_set_models_applies_the_new_rtd_to_the_history(k_change, tau_new):
    """After set_models the outputs equal those of a sensor that always had the new RTD
    (history kept), and outputs already returned are never repeated or changed."""
    dt = 1.0
    new = rtd.Series(rtd.PFR(10.0), rtd.TanksInSeries(tau_new, 5), rtd.CSTR(30.0))
    flows = _flows(dt, 0.0, 120.0, 10.0, horizon=500.0)
    s = RTDSoftSensor(LINE, dt, initial_flows=[API, EXC], timing="tick_average")
    t1, c1 = s.step(flows[:, :k_change])
    s.set_models(new)
    t2, c2 = s.step(flows[:, k_change:])
    t = np.concatenate([t1, t2])
    assert np.allclose(np.diff(t), dt) and t.size == flows.shape[1] + 10
    ref = RTDSoftSensor(new, dt, initial_flows=[API, EXC], timing="tick_average")
    _, cref = ref.step(flows)
    np.testing.assert_allclose(c2, cref[t1.size:], rtol=0, atol=1e-12)
    old = RTDSoftSensor(LINE, dt, initial_flows=[API, EXC], timing="tick_average")
    np.testing.assert_allclose(c1, old.step(flows)[1][:t1.size], rtol=0, atol=1e-14)


def _fir_sensor(monkeypatch, *args, **kwargs):
    """A sensor built with the recursive path switched off: every model runs as the FIR
    convolution of its kernel (also after ``set_models``)."""
    import cmsim.monitor.soft_sensor as mod  # noqa: PLC0415

    with monkeypatch.context() as m:
        m.setattr(mod, "_state_space", lambda *a: None)
        sensor = RTDSoftSensor(*args, **kwargs)
    original = sensor.set_models

    def set_models(model):
        with monkeypatch.context() as m:
            m.setattr(mod, "_state_space", lambda *a: None)
            original(model)

    sensor.set_models = set_models
    return sensor


CHAINS = [LINE, rtd.CSTR(30.0), rtd.Series(rtd.PFR(3.3), rtd.TanksInSeries(20.0, 3)),
          rtd.TanksInSeries(40.0, 8), rtd.Series(rtd.TanksInSeries(18.0, 9), rtd.CSTR(5.0)),
          rtd.Series(rtd.PFR(2.0), rtd.CSTR(7.0), rtd.CSTR(19.0))]


@pytest.mark.parametrize("timing", ["tick_average", "point"])
@pytest.mark.parametrize("model", CHAINS, ids=repr)
def test_tank_chains_run_recursively_and_equal_the_fir_prediction(model, timing, monkeypatch):
    """PFR + CSTR + integer tanks-in-series lines run as an exact state-space recursion
    (8-state register kernel and the general one): same times and content as the truncated
    FIR convolution of the kernel (from the model's F) to 1e-12, in any chunks."""
    from cmsim.monitor.soft_sensor import _ChainFilter  # noqa: PLC0415
    from cmsim.rtd.convolution import Convolver  # noqa: PLC0415

    rng = np.random.default_rng(4)
    n = 1500
    flows = np.vstack([API * (1 + 0.05 * rng.standard_normal(n)),
                       EXC * (1 + 0.05 * rng.standard_normal(n))])
    flows[0, 300:420] *= 1.3  # an API step
    flows[:, 900:905] = 0.0   # a stop of the whole line
    kw = {"initial_flows": [API, EXC], "tail": 1e-12, "timing": timing}
    iir = RTDSoftSensor(model, 1.0, **kw)
    fir = _fir_sensor(monkeypatch, model, 1.0, **kw)
    assert all(isinstance(f, _ChainFilter) for f in iir._filters)
    assert all(isinstance(f, Convolver) for f in fir._filters)
    assert iir.lead_ticks == fir.lead_ticks
    t1, c1 = _run(iir, flows, cuts=(1, 7, 400, 401, 1111))
    t2, c2 = _run(fir, flows)
    assert np.array_equal(t1, t2)
    np.testing.assert_allclose(c1, c2, rtol=0, atol=1e-12)
    assert np.all(np.isfinite(c1))


def test_other_models_use_the_convolution():
    """Non-integer tanks, dispersion, and kernels whose first tap lies below the lead
    threshold keep the FIR path (no approximation)."""
    from cmsim.rtd.convolution import Convolver  # noqa: PLC0415

    for model in (rtd.TanksInSeries(60.0, 4.5),
                  rtd.Series(rtd.PFR(5.0), rtd.AxialDispersion(40.0, 20.0)),
                  rtd.Series(rtd.TanksInSeries(50.0, 9), rtd.CSTR(5.0))):  # F(dt/2) ~ 1e-17
        s = RTDSoftSensor(model, 1.0, initial_flows=[API, EXC], timing="tick_average")
        assert all(isinstance(f, Convolver) for f in s._filters)


def test_recursive_envelope_with_model_change_equals_fir(monkeypatch):
    """An envelope (three models, different delays: one recursive, two FIR) and a model change
    mid-run: the same outputs as all-FIR sensors (new filters primed with the history)."""
    rng = np.random.default_rng(9)
    flows = np.vstack([API * (1 + 0.05 * rng.standard_normal(800)), np.full(800, EXC)])
    env = [rtd.Series(rtd.PFR(10.0 * f), rtd.TanksInSeries(60.0 * f, 5), rtd.CSTR(30.0 * f))
           for f in (0.9, 1.0, 1.1)]
    new = rtd.Series(rtd.PFR(10.0), rtd.TanksInSeries(45.0, 5), rtd.CSTR(30.0))
    kw = {"initial_flows": [API, EXC], "tail": 1e-12, "timing": "tick_average"}
    out = []
    for s in (RTDSoftSensor(env, 1.0, **kw), _fir_sensor(monkeypatch, env, 1.0, **kw)):
        t_a, c_a = s.step(flows[:, :500])
        s.set_models(new)
        t_b, c_b = s.step(flows[:, 500:])
        out.append((t_a, c_a, t_b, c_b))
    for a, b in zip(out[0], out[1], strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("timing", ["tick_average", "point"])
@pytest.mark.parametrize("model", CHAINS, ids=repr)
def test_cascade_form_equals_the_state_space_form(model, timing, monkeypatch):
    """Where the cascade form (first-order sections + positive numerator) is accepted, it
    gives the state-space recursion's outputs to rounding (two exact realisations); the
    baseline line at tick_average must use it."""
    import cmsim.monitor.soft_sensor as mod  # noqa: PLC0415

    rng = np.random.default_rng(8)
    flows = np.vstack([API * (1 + 0.1 * rng.standard_normal(700)),
                       EXC * (1 + 0.1 * rng.standard_normal(700))])
    kw = {"initial_flows": [API, EXC], "tail": 1e-12, "timing": timing}
    fast = RTDSoftSensor(model, 1.0, **kw)
    used = fast._filters[0]._cascade is not None
    if model is LINE and timing == "tick_average":
        assert used
    with monkeypatch.context() as m:
        m.setattr(mod, "_cascade", lambda *a: None)
        slow = RTDSoftSensor(model, 1.0, **kw)
    assert slow._filters[0]._cascade is None
    ya = fast.predict_flows(flows)
    yb = slow.predict_flows(flows)
    np.testing.assert_allclose(ya, yb, rtol=1e-13, atol=0)
