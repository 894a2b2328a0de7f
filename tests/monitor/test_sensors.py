"""Sensor models: exact window averages, latency, noise statistics, chunking invariance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsim.errors import ParameterError
from cmsim.monitor.sensors import LoadCellBank, LoadCellSignal, NIRSensor, TabletWeightSignal


def _smooth(t):
    return 0.1 + 0.02 * np.sin(t / 5.0)


def _smooth_mean(a, b):
    """Analytic mean of 0.1 + 0.02 sin(t/5) over [a, b]."""
    return 0.1 + 0.02 * 5.0 * (np.cos(a / 5.0) - np.cos(b / 5.0)) / (b - a)


def test_noise_free_reading_is_the_analytic_window_average():
    t = np.arange(0.0, 200.0, 0.01)
    nir = NIRSensor(2.0, latency=1.5, integration_time=1.0, rng=1)
    ts, y = nir.measure(t, _smooth(t))
    ok = ts >= 2.5
    assert np.all(np.isnan(y[~ok]))  # window starts before the data
    expected = _smooth_mean(ts[ok] - 2.5, ts[ok] - 1.5)
    # linear interpolation between grid points: error <= dt^2/8 max|w''| = 1e-5 * 8e-4
    np.testing.assert_allclose(y[ok], expected, atol=1e-8, rtol=0)


def test_piecewise_linear_signal_is_integrated_exactly():
    t = np.array([0.0, 1.0, 4.0, 5.0, 9.0, 12.0])
    w = np.array([0.1, 0.1, 0.16, 0.05, 0.05, 0.2])
    nir = NIRSensor(1.0, integration_time=3.0, rng=0, start=3.0)
    ts, y = nir.measure(t, w)
    for tk, yk in zip(ts, y, strict=True):
        # the trapezoid rule is exact for a linear function between consecutive knots
        knots = np.concatenate([[tk - 3.0], t[(t > tk - 3.0) & (t < tk)], [tk]])
        ref = np.trapezoid(np.interp(knots, t, w), knots) / 3.0
        assert yk == pytest.approx(ref, abs=1e-15)
    assert ts.tolist() == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]


def test_latency_shifts_a_step_by_exactly_the_latency():
    dt = 0.01
    t = np.arange(0.0, 300.0, dt)
    w = np.where(t < 100.0, 0.10, 0.12)
    lat = 2.5
    ts, y = NIRSensor(0.01, latency=lat, rng=0).measure(t, w)
    ok = ~np.isnan(y)
    np.testing.assert_allclose(y[ok], np.interp(ts[ok] - lat, t, w), rtol=0, atol=1e-15)
    first_high = ts[np.argmax(y > 0.11)]
    assert first_high == pytest.approx(100.0 + lat, abs=dt)
    # a delayed sensor started `lat` later reads exactly what the undelayed one read
    a = NIRSensor(2.0, latency=lat, integration_time=1.0, rng=0, start=lat)
    b = NIRSensor(2.0, latency=0.0, integration_time=1.0, rng=0, start=0.0)
    ta, ya = a.measure(t, w)
    tb, yb = b.measure(t, w)
    n = min(ta.size, tb.size)
    np.testing.assert_allclose(ta[:n] - lat, tb[:n], atol=1e-12)
    np.testing.assert_allclose(ya[:n], yb[:n], atol=1e-15, equal_nan=True)


def test_noise_bias_drift_and_dropouts_statistics():
    t = np.arange(0.0, 40_000.0, 1.0)
    sd, p = 0.0025, 0.05
    nir = NIRSensor(2.0, noise_sd=sd, bias=0.003, drift_per_s=1e-7, dropout_probability=p,
                    rng=np.random.default_rng(7))
    ts, y, true = nir.measure(t, np.full(t.size, 0.1), return_noise_free=True)
    np.testing.assert_allclose(true, 0.1)
    miss = np.isnan(y)
    n = ts.size
    assert abs(miss.mean() - p) < 4 * np.sqrt(p * (1 - p) / n)
    resid = y[~miss] - (0.1 + 0.003 + 1e-7 * ts[~miss])
    m = resid.size
    assert abs(resid.mean()) < 4 * sd / np.sqrt(m)
    assert abs(resid.std(ddof=1) / sd - 1) < 4 / np.sqrt(2 * m)
    # noise-free sensor: exactly the truth plus bias and drift
    nir0 = NIRSensor(2.0, bias=0.003, drift_per_s=1e-7, rng=1)
    ts0, y0 = nir0.measure(t, np.full(t.size, 0.1))
    np.testing.assert_allclose(y0, 0.103 + 1e-7 * ts0, rtol=1e-14)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 1999), max_size=6, unique=True), seed=st.integers(0, 999))
def test_chunking_does_not_change_readings(cuts, seed):
    t = np.arange(2000) * 0.25
    w = _smooth(t) + 0.01 * (t > 170)
    mass = 20.0 - 0.004 * t + 0.01 * np.sin(t)
    tab = 250e-6 * (1 + 0.01 * np.sin(t / 30))

    def run(pieces):
        nir = NIRSensor(1.7, 0.002, latency=2.1, integration_time=1.3, dropout_probability=0.1,
                        rng=seed)
        nir.add_fault("bias", 100.0, 200.0, 0.01)
        nir.add_fault("spike", 250.0, value=0.05)
        nir.add_fault("frozen", 300.0, 330.0)
        nir.add_fault("dropout", 400.0, 410.0)
        lc = LoadCellSignal(0.6, 0.001, window=6.0, rng=seed)
        tw = TabletWeightSignal(4.0, 0.02, n_tablets=3, rng=seed)
        out = {k: [] for k in ("nt", "ny", "lt", "lm", "lf", "tt", "tm")}
        for sl in pieces:
            a, b = nir.measure(t[sl], w[sl])
            out["nt"].append(a)
            out["ny"].append(b)
            a, b, c = lc.measure(t[sl], mass[sl])
            out["lt"].append(a)
            out["lm"].append(b)
            out["lf"].append(c)
            a, b = tw.measure(t[sl], tab[sl])
            out["tt"].append(a)
            out["tm"].append(b)
        return {k: np.concatenate(v) for k, v in out.items()}

    edges = [0, *sorted(cuts), t.size]
    chunked = run([slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)])
    whole = run([slice(0, t.size)])
    for key in whole:
        np.testing.assert_allclose(chunked[key], whole[key], rtol=1e-12, atol=1e-15,
                                   equal_nan=True, err_msg=key)


def test_scheduled_faults():
    t = np.arange(0.0, 600.0, 0.5)
    w = _smooth(t)

    def make():
        return NIRSensor(2.0, latency=1.0, rng=3)

    ts, ref = make().measure(t, w)
    nir = make()
    nir.add_fault("bias", 100.0, 200.0, 0.01)
    nir.add_fault("spike", 251.0, value=0.05)
    nir.add_fault("frozen", 300.0, 330.0)
    nir.add_fault("dropout", 400.0, 410.0)
    nir.add_fault("bias", 500.0, value=-0.002)  # a bias step that never ends
    _, y = nir.measure(t, w)
    expect = ref.copy()
    expect[(ts >= 100.0) & (ts < 200.0)] += 0.01
    expect[ts == 252.0] += 0.05
    expect[(ts >= 300.0) & (ts < 330.0)] = ref[ts == 298.0][0]
    expect[(ts >= 400.0) & (ts < 410.0)] = np.nan
    expect[ts >= 500.0] -= 0.002
    np.testing.assert_allclose(y, expect, rtol=0, atol=1e-15, equal_nan=True)
    with pytest.raises(ParameterError, match="kind"):
        nir.add_fault("stuck", 1.0)
    with pytest.raises(ParameterError, match="end"):
        nir.add_fault("bias", 5.0, 1.0)


def test_load_cell_flow_estimate():
    t = np.arange(0.0, 600.0, 0.1)
    lc = LoadCellSignal(0.5, 0.0, window=10.0, rng=0)
    ts, m, flow = lc.measure(t, 15.0 - 0.0055 * t)
    n = lc.n_window
    assert n == 20
    assert np.all(np.isnan(flow[: n - 1]))
    np.testing.assert_allclose(flow[n - 1:], 0.0055, rtol=1e-9)
    np.testing.assert_allclose(m, 15.0 - 0.0055 * ts, rtol=1e-12)
    # noisy weighings: SD of the slope = sigma sqrt(12 / (N (N^2 - 1))) / period,
    # checked on non-overlapping windows (independent estimates)
    sigma = 0.002
    lc = LoadCellSignal(0.5, sigma, window=10.0, rng=np.random.default_rng(3))
    t = np.arange(0.0, 100_000.0, 0.5)
    ts, m, flow = lc.measure(t, 15.0 - 0.0055 * t)
    est = flow[n - 1:: n]
    theory = sigma * np.sqrt(12.0 / (n * (n * n - 1))) / 0.5
    k = est.size
    assert abs(est.mean() - 0.0055) < 4 * theory / np.sqrt(k)
    assert abs(est.std(ddof=1) / theory - 1) < 4 / np.sqrt(2 * k)


def test_tablet_weight_rsd():
    t = np.arange(0.0, 50_000.0, 1.0)
    for n_tab in (1, 4):
        tw = TabletWeightSignal(2.0, rsd=0.015, n_tablets=n_tab, rng=np.random.default_rng(5))
        ts, wgt = tw.measure(t, np.full(t.size, 250e-6))
        k = ts.size
        rel = wgt / 250e-6 - 1.0
        target = 0.015 / np.sqrt(n_tab)
        assert abs(rel.mean()) < 4 * target / np.sqrt(k)
        assert abs(rel.std(ddof=1) / target - 1) < 4 / np.sqrt(2 * k)


def test_bad_parameters():
    with pytest.raises(ParameterError, match="sample_period"):
        NIRSensor(0.0)
    with pytest.raises(ParameterError, match="noise_sd"):
        NIRSensor(1.0, noise_sd=-1.0)
    with pytest.raises(ParameterError, match="dropout_probability"):
        NIRSensor(1.0, dropout_probability=1.0)
    with pytest.raises(ParameterError, match="window"):
        LoadCellSignal(1.0, window=1.0)
    with pytest.raises(ParameterError, match="n_tablets"):
        TabletWeightSignal(1.0, n_tablets=0)
    with pytest.raises(ParameterError, match="rng"):
        NIRSensor(1.0, rng="seed")
    nir = NIRSensor(1.0, rng=0)
    nir.measure([0.0, 1.0], [0.1, 0.1])
    with pytest.raises(ParameterError, match="continue"):
        nir.measure([0.5, 2.0], [0.1, 0.1])
    with pytest.raises(ParameterError, match="shape"):
        nir.measure([3.0, 4.0], [0.1])
    with pytest.raises(ParameterError, match="finite"):
        nir.measure([3.0, 4.0], [0.1, np.nan])


@settings(max_examples=25, deadline=None)
@given(period_ticks=st.integers(1, 3), start_ticks=st.integers(0, 7),
       noisy=st.booleans(), cuts=st.lists(st.integers(1, 299), max_size=6))
def test_load_cell_bank_equals_one_load_cell_per_feeder(period_ticks, start_ticks, noisy, cuts):
    """The bank's readings are those of a LoadCellSignal per feeder fed with the net hopper
    mass on the tick-end grid (an independent, interpolating implementation), in any chunks."""
    dt, n = 0.5, 300
    flows = np.abs(np.random.default_rng(5).normal(0.01, 0.002, (3, n)))
    sd = 1e-3 if noisy else 0.0
    period, start = period_ticks * dt, start_ticks * dt
    bank = LoadCellBank(period, sd, 4.0, dt, [11, 12, 13], start=start)
    edges = [0, *sorted(set(cuts)), n]
    outs = [bank.measure(flows[:, a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    ts = np.concatenate([o[0] for o in outs])
    mass = np.concatenate([o[1] for o in outs], axis=1)
    flow = np.concatenate([o[2] for o in outs], axis=1)
    t = np.arange(1, n + 1) * dt
    for c, seed in enumerate((11, 12, 13)):
        ref = LoadCellSignal(period, sd, 4.0, rng=seed, start=start)
        t_ref, m_ref, f_ref = ref.measure(t, -np.cumsum(flows[c]) * dt)
        assert np.array_equal(ts, t_ref)
        np.testing.assert_allclose(mass[c], m_ref, rtol=1e-12, atol=0)
        assert np.array_equal(np.isnan(flow[c]), np.isnan(f_ref))
        np.testing.assert_allclose(flow[c], f_ref, rtol=0, atol=1e-12)
    again = LoadCellBank(period, sd, 4.0, dt, [11, 12, 13], start=start)
    t_only, f_only = again.measure(list(flows), return_mass=False)  # rows given separately
    assert np.array_equal(t_only, ts)
    np.testing.assert_allclose(f_only, flow, rtol=0, atol=1e-12)
    if not noisy:  # the flow estimate of a constant discharge is that discharge
        bank = LoadCellBank(period, 0.0, 4.0, dt, [1, 2, 3], start=start)
        _, _, est = bank.measure(np.full((3, n), 0.004))
        ok = ~np.isnan(est)
        np.testing.assert_allclose(est[ok], 0.004, rtol=1e-9)
        assert ok[:, -1].all()


def test_load_cell_bank_bad_parameters():
    with pytest.raises(ParameterError, match="sample_period"):
        LoadCellBank(0.75, 0.0, 5.0, dt=0.5, rngs=[0])
    with pytest.raises(ParameterError, match="start"):
        LoadCellBank(1.0, 0.0, 5.0, dt=0.5, rngs=[0], start=0.25)
    with pytest.raises(ParameterError, match="window"):
        LoadCellBank(1.0, 0.0, 1.0, dt=0.5, rngs=[0])
    with pytest.raises(ParameterError, match="rngs"):
        LoadCellBank(1.0, 0.0, 5.0, dt=0.5, rngs=[])
    bank = LoadCellBank(1.0, 0.0, 5.0, dt=0.5, rngs=[0, 1])
    with pytest.raises(ParameterError, match="flows"):
        bank.measure(np.zeros((3, 4)))
    with pytest.raises(ParameterError, match="flows"):
        bank.measure(np.array([[0.0, np.nan], [0.0, 0.0]]))
    with pytest.raises(ParameterError, match="flows"):
        bank.measure([np.zeros(3), np.zeros(4)])
    with pytest.raises(ParameterError, match="flows"):
        bank.measure([np.zeros(3), np.array([0.0, np.inf, 0.0])])


def test_interpolation_on_and_between_grid_points():
    """Weighings interpolate the mass linearly (exact for a linear mass), also off the grid
    points, and chunks reuse their buffers safely (the history is copied)."""
    lc = LoadCellSignal(0.3, 0.0, window=3.0, rng=0)
    buf_t = np.arange(0.0, 10.0, 0.25)
    buf_m = 5.0 - 0.01 * buf_t
    ts1, m1, _ = lc.measure(buf_t, buf_m)
    buf_t += 10.0  # the same buffers, overwritten for the next chunk
    buf_m[:] = 5.0 - 0.01 * buf_t
    ts2, m2, f2 = lc.measure(buf_t, buf_m)
    ts, m = np.concatenate([ts1, ts2]), np.concatenate([m1, m2])
    np.testing.assert_allclose(m, 5.0 - 0.01 * ts, rtol=0, atol=1e-13)
    np.testing.assert_allclose(f2[~np.isnan(f2)], 0.01, rtol=1e-9)


@settings(max_examples=20, deadline=None)
@given(n_cells=st.integers(1, 9), period_ticks=st.integers(1, 3), start_ticks=st.integers(0, 5),
       noisy=st.booleans(), cuts=st.lists(st.integers(1, 199), max_size=4))
def test_load_cell_bank_cells_are_independent_of_their_neighbours(n_cells, period_ticks,
                                                                  start_ticks, noisy, cuts):
    """A bank of n cells (summed in groups of four) gives, bit for bit, the weighings and
    flow estimates of n one-cell banks (the ungrouped path), in any chunks."""
    dt, n = 0.5, 200
    flows = np.abs(np.random.default_rng(n_cells).normal(0.01, 0.003, (n_cells, n)))
    sd = 1e-3 if noisy else 0.0
    period, start = period_ticks * dt, start_ticks * dt
    seeds = list(range(20, 20 + n_cells))
    bank = LoadCellBank(period, sd, 3.0, dt, seeds, start=start)
    singles = [LoadCellBank(period, sd, 3.0, dt, [s], start=start) for s in seeds]
    edges = [0, *sorted(set(cuts)), n]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        ts, mass, flow = bank.measure(list(flows[:, a:b]))
        for c, one in enumerate(singles):
            t1, m1, f1 = one.measure(flows[c:c + 1, a:b])
            assert np.array_equal(ts, t1)
            assert np.array_equal(mass[c], m1[0], equal_nan=True)
            assert np.array_equal(flow[c], f1[0], equal_nan=True)
