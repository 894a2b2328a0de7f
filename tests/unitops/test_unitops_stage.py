"""RTDStage: form selection, exact responses, mass balance, chunking invariance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsim import rtd
from cmsim.errors import ParameterError
from cmsim.unitops import RTDStage

DT = 0.5


def _models():
    return {
        "cstr": rtd.CSTR(20.0),
        "tis": rtd.TanksInSeries(30.0, 4),
        "pfr": rtd.PFR(6.0),
        "gamma": rtd.TanksInSeries(15.0, 2.5),
        "series": rtd.Series(rtd.PFR(3.0), rtd.TanksInSeries(20.0, 3), rtd.PFR(1.5),
                             rtd.CSTR(5.0)),
        "series_fir": rtd.Series(rtd.PFR(2.0), rtd.TanksInSeries(10.0, 1.5)),
    }


def test_form_selection():
    m = _models()
    assert RTDStage(m["cstr"], DT, 2).kinds == ("tis",)
    assert RTDStage(m["tis"], DT, 2).kinds == ("tis",)
    assert RTDStage(m["pfr"], DT, 2).kinds == ("pfr",)
    assert RTDStage(m["gamma"], DT, 2).kinds == ("fir",)
    s = RTDStage(m["series"], DT, 2)
    assert s.kinds == ("pfr", "tis", "tis")  # both delays merged into one shift
    assert s.delays_applied == (4.5,)
    assert s.n_dispersive == 2
    assert RTDStage(m["series_fir"], DT, 2).kinds == ("pfr", "fir")
    assert RTDStage(rtd.AxialDispersion(20.0, 10.0), DT, 1).kinds == ("fir",)


def test_tis_step_response_equals_F_at_tick_ends():
    model = rtd.TanksInSeries(30.0, 4)
    s = RTDStage(model, DT, 1)
    n = 400
    y = s.step(np.ones((1, n)))[0]
    t_end = (np.arange(n) + 1) * DT
    np.testing.assert_allclose(y, model.cdf(t_end), rtol=0, atol=1e-13)


def test_pfr_is_integer_shift():
    s = RTDStage(rtd.PFR(6.0), DT, 1)
    x = np.random.default_rng(0).random((1, 50))
    y = s.step(x)
    np.testing.assert_array_equal(y[0, 12:], x[0, :-12])
    np.testing.assert_array_equal(y[0, :12], 0.0)
    assert s.mean_delay_ticks == 12


def test_fir_kernel_renormalised_and_recorded():
    model = rtd.TanksInSeries(15.0, 2.5)
    tail = 1e-4
    s = RTDStage(model, DT, 1, tail=tail)
    k = model.kernel(DT, tail)
    assert s.renormalised_mass == pytest.approx(1.0 - np.sum(k), abs=1e-15)
    assert 0 < s.renormalised_mass < tail
    # unit step settles at exactly 1 (mass conserving kernel), impulse sums to 1
    y = s.step(np.ones((1, k.size + 5)))[0]
    assert y[-1] == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(np.diff(y[: k.size]), np.asarray(k)[1:] / np.sum(k), atol=1e-15)


def test_mean_delay_ticks():
    # CSTR: sum_j j (1 - a) a^j = a / (1 - a), a = exp(-dt/tau)
    a = np.exp(-DT / 20.0)
    assert RTDStage(rtd.CSTR(20.0), DT, 1).mean_delay_ticks == pytest.approx(a / (1 - a),
                                                                          rel=1e-12)
    # single TIS / gamma: index mean of the model's own bin kernel
    for model in (rtd.TanksInSeries(30.0, 4), rtd.TanksInSeries(15.0, 2.5)):
        w = np.asarray(model.kernel(DT, 1e-15))
        expected = np.dot(np.arange(w.size), w) / w.sum()
        assert RTDStage(model, DT, 1).mean_delay_ticks == pytest.approx(expected, abs=1e-9)
    # chain: index means add; about tau/dt - 1/2 per dispersive element
    s = RTDStage(_models()["series"], DT, 1)
    assert s.mean_delay_ticks == pytest.approx(4.5 / DT + 25.0 / DT - 0.5 * 2, abs=0.01)
    # and it is the index mean of the stage's own impulse response
    x = np.zeros((1, 2000))
    x[0, 0] = 1.0
    y = s.step(x)[0]
    assert np.dot(np.arange(y.size), y) / y.sum() == pytest.approx(s.mean_delay_ticks, abs=1e-8)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(sorted(_models())), seed=st.integers(0, 2**31 - 1),
       cuts=st.lists(st.integers(0, 300), max_size=6))
def test_mass_balance_and_chunking_invariance(name, seed, cuts):
    model = _models()[name]
    rng = np.random.default_rng(seed)
    n = 300
    x = rng.random((3, n)) * (rng.random((3, n)) > 0.3)
    one = RTDStage(model, DT, 3)
    y1 = one.step(x)
    chunked = RTDStage(model, DT, 3)
    edges = [0, *sorted(cuts), n]
    y2 = np.concatenate([chunked.step(x[:, a:b]) for a, b in zip(edges[:-1], edges[1:],
                                                                  strict=True)], axis=1)
    np.testing.assert_allclose(y2, y1, rtol=0, atol=1e-12 * x.max())
    fed = DT * x.sum(axis=1)
    out = DT * y1.sum(axis=1)
    np.testing.assert_allclose(fed, out + one.holdup, rtol=1e-12)
    np.testing.assert_allclose(chunked.holdup, one.holdup, rtol=1e-12)
    assert (y1 >= 0).all()


@pytest.mark.parametrize("name", ["cstr", "tis", "pfr", "gamma", "series_fir"])
def test_reset_steady_state(name):
    model = _models()[name]
    s = RTDStage(model, DT, 2)
    u = np.array([0.3, 0.02])
    s.reset(u)
    h0 = s.holdup.copy()
    y = s.step(np.repeat(u[:, None], 200, axis=1))
    np.testing.assert_allclose(y, np.repeat(u[:, None], 200, axis=1), rtol=1e-12)
    np.testing.assert_allclose(s.holdup, h0, rtol=1e-12)
    if name != "pfr":
        # hold-up dt u sum_{m>=1} (1 - F(m dt)), which is u (tau - dt/2) to O(dt^2)
        m = np.arange(1, 20000) * DT
        expected = DT * u * np.sum(model.sf(m))
        np.testing.assert_allclose(h0, expected, rtol=1e-9)
    s.reset()
    assert np.all(s.holdup == 0.0)


def test_set_mean_residence_time_support():
    s = RTDStage(rtd.Series(rtd.PFR(2.0), rtd.TanksInSeries(20.0, 3)), DT, 1)
    assert s.supports_residence_time_change
    s.set_mean_residence_time(10.0)
    assert s.tis_mean_residence_time == 10.0
    assert s.model.mean == pytest.approx(12.0)
    for model in (rtd.TanksInSeries(15.0, 2.5), rtd.Series(rtd.CSTR(5.0), rtd.CSTR(6.0))):
        with pytest.raises(ParameterError, match="supported models"):
            RTDStage(model, DT, 1).set_mean_residence_time(10.0)


def test_bad_arguments():
    with pytest.raises(ParameterError, match="n_channels"):
        RTDStage(rtd.CSTR(10.0), DT, 0)
    with pytest.raises(ParameterError, match="model"):
        RTDStage("cstr", DT, 1)
    with pytest.raises(ParameterError, match="inflow"):
        RTDStage(rtd.CSTR(10.0), DT, 2).step(np.zeros((3, 4)))
    with pytest.raises(ParameterError, match="steady_inflow"):
        RTDStage(rtd.CSTR(10.0), DT, 2).reset([1.0, 2.0, 3.0])


def test_long_tank_chains_stream_through_their_bin_kernel():
    """Up to MAX_RECURSIVE_TANKS tanks the stage is the exact recursion (and can change its
    residence time); beyond, the recursion costs n^2 per tick, and the stage convolves with
    the bin kernel: both give the tanks-in-series step response."""
    from cmsim.unitops.stage import MAX_RECURSIVE_TANKS, speed_capable  # noqa: PLC0415

    n = MAX_RECURSIVE_TANKS
    rec = RTDStage(rtd.TanksInSeries(60.0, n), DT, 1)
    fir = RTDStage(rtd.TanksInSeries(60.0, n + 1), DT, 1)
    assert rec.kinds == ("tis",) and fir.kinds == ("fir",)
    assert speed_capable(rtd.TanksInSeries(60.0, n))
    assert not speed_capable(rtd.TanksInSeries(60.0, n + 1))
    x = np.ones((1, 400))
    for stage, model in ((rec, rtd.TanksInSeries(60.0, n)), (fir, rtd.TanksInSeries(60.0, n + 1))):
        y = stage.step(x)[0]
        # y[k] is the outflow at (k + 1) dt: the step response F((k + 1) dt)
        np.testing.assert_allclose(y, model.cdf((np.arange(400) + 1) * DT), atol=2e-9)
