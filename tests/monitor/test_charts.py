"""Control charts: average run lengths against theory, exact statistics, chunking invariance."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from cmsim.errors import ParameterError
from cmsim.monitor.charts import CUSUMChart, EWMAChart, MovingAverageChart, ShewhartChart


def _run_lengths(chart, shift: float, rows: int, chunk: int, seed: int) -> np.ndarray:
    """Run ``rows`` independent charts on N(shift, 1) data until each has signalled once.

    Streams the data chunk by chunk through the chart (so this also exercises state carrying).
    """
    rng = np.random.default_rng(seed)
    rl = np.full(rows, -1)
    offset = 0
    while (rl < 0).any():
        assert offset < 200 * chunk, "charts never signal"
        alarm = chart.run(rng.standard_normal((rows, chunk)) + shift)
        first = np.where(alarm.any(axis=1), alarm.argmax(axis=1), -1)
        new = (rl < 0) & (first >= 0)
        rl[new] = offset + first[new] + 1
        offset += chunk
    return rl


SHEWHART_ARL0 = 1.0 / (2.0 * norm.sf(3.0))  # 370.40
SHEWHART_ARL1 = 1.0 / (norm.sf(2.0) + norm.cdf(-4.0))  # 43.89

# (name, factory, shift [sigma], reference ARL, rows, chunk); references:
# docs/monitor.md#control-charts / docs/reference-values.md
ARL_CASES = [
    ("shewhart-0", lambda b: ShewhartChart(0.0, 1.0, batch=b), 0.0, SHEWHART_ARL0, 4000, 1000),
    ("shewhart-1", lambda b: ShewhartChart(0.0, 1.0, batch=b), 1.0, SHEWHART_ARL1, 4000, 100),
    ("cusum4-0", lambda b: CUSUMChart(0.0, 1.0, 0.5, 4.0, batch=b), 0.0, 168.0, 4000, 500),
    ("cusum4-1", lambda b: CUSUMChart(0.0, 1.0, 0.5, 4.0, batch=b), 1.0, 8.38, 4000, 40),
    ("cusum5-0", lambda b: CUSUMChart(0.0, 1.0, 0.5, 5.0, batch=b), 0.0, 465.0, 4000, 1000),
    ("cusum5-1", lambda b: CUSUMChart(0.0, 1.0, 0.5, 5.0, batch=b), 1.0, 10.4, 4000, 40),
    ("ewma-0", lambda b: EWMAChart(0.0, 1.0, 0.1, 2.7, batch=b), 0.0, 357.0, 4000, 1000),
    ("ewma-1", lambda b: EWMAChart(0.0, 1.0, 0.1, 2.7, batch=b), 1.0, 7.6, 4000, 40),
    ("western-electric-0",
     lambda b: ShewhartChart(0.0, 1.0, run_rules=True, batch=b), 0.0, 91.0, 4000, 300),
    ("western-electric-1",
     lambda b: ShewhartChart(0.0, 1.0, run_rules=True, batch=b), 1.0, 9.3, 4000, 40),
]


@pytest.mark.parametrize(("name", "factory", "shift", "reference", "rows", "chunk"), ARL_CASES,
                         ids=[c[0] for c in ARL_CASES])
def test_average_run_length_matches_theory(name, factory, shift, reference, rows, chunk):
    rl = _run_lengths(factory(rows), shift, rows, chunk, seed=zlib.crc32(name.encode()))
    se = rl.std(ddof=1) / np.sqrt(rows)
    assert se / reference < 0.03  # the test has the resolution it claims
    assert abs(rl.mean() - reference) < 4.0 * se, (rl.mean(), reference, se)


def test_shewhart_limits_and_scaling():
    c = ShewhartChart(target=0.1, sigma=0.002, L=3.0)
    out = c.trace([0.1, 0.1059, 0.1061, 0.0939, 0.0941])
    assert out["alarm"].tolist() == [False, False, True, True, False]
    np.testing.assert_allclose(out["upper"], 0.106)
    np.testing.assert_allclose(out["lower"], 0.094)


@pytest.mark.parametrize(("seq", "bit", "index"), [
    ([2.5, 0.0, 2.5], 2, 2),            # 2 of 3 beyond 2 sigma
    ([-2.5, -2.1], 2, 1),
    ([1.5, 1.5, 0.0, 1.5, 1.5], 4, 4),  # 4 of 5 beyond 1 sigma
    ([0.5] * 8, 8, 7),                  # 8 on one side
    ([-0.1] * 8, 8, 7),
])
def test_western_electric_rules(seq, bit, index):
    out = ShewhartChart(0.0, 1.0, run_rules=True).trace(seq)
    first = int(np.argmax(out["alarm"]))
    assert out["alarm"].any() and first == index
    assert out["rule"][first] & bit
    # without run rules none of these sequences signals (no point beyond 3 sigma)
    assert not ShewhartChart(0.0, 1.0).run(seq).any()


def test_run_rules_need_same_side():
    seq = [2.5, -2.5, 0.0, 1.5, -1.5, 1.5, -1.5, 0.5, -0.5, 0.5]
    assert not ShewhartChart(0.0, 1.0, run_rules=True).run(seq).any()


def test_ewma_statistic_and_limits_closed_form():
    rng = np.random.default_rng(3)
    x = rng.normal(5.0, 2.0, 50)
    lam, L, mu, sd = 0.2, 2.86, 5.0, 2.0
    out = EWMAChart(mu, sd, lam, L).trace(x)
    k = np.arange(1, 51)
    # z_k = (1-lam)^k mu + sum_i lam (1-lam)^(k-i) x_i, written as an explicit double sum
    weights = np.tril(lam * (1 - lam) ** (k[:, None] - k[None, :]))
    z = (1 - lam) ** k * mu + weights @ x
    np.testing.assert_allclose(out["statistic"], z, rtol=1e-12)
    half = L * sd * np.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * k)))
    np.testing.assert_allclose(out["upper"], mu + half, rtol=1e-12)
    np.testing.assert_array_equal(out["alarm"], np.abs(z - mu) > half)


def test_cusum_matches_reference_loop():
    rng = np.random.default_rng(4)
    x = rng.normal(0.3, 1.0, 300)
    out = CUSUMChart(0.0, 1.0, k=0.5, h=4.0).trace(x)
    cp = cm = 0.0
    for i, v in enumerate(x):
        cp = max(0.0, cp + v - 0.5)
        cm = max(0.0, cm - v - 0.5)
        assert out["upper_statistic"][i] == pytest.approx(cp, abs=1e-12)
        assert out["lower_statistic"][i] == pytest.approx(cm, abs=1e-12)
        assert out["alarm"][i] == (cp > 4.0 or cm > 4.0)


def test_moving_average_matches_convolution():
    rng = np.random.default_rng(5)
    x = rng.normal(10.0, 1.0, 40)
    w = 5
    out = MovingAverageChart(10.0, 1.0, window=w, L=3.0).trace(x)
    full = np.convolve(x, np.ones(w) / w, mode="valid")
    np.testing.assert_allclose(out["statistic"][w - 1:], full, rtol=1e-12)
    m = np.minimum(np.arange(1, 41), w)
    np.testing.assert_allclose(out["statistic"][: w - 1], np.cumsum(x)[: w - 1] / m[: w - 1])
    np.testing.assert_allclose(out["upper"], 10.0 + 3.0 / np.sqrt(m))


def _make(kind: str):
    return {
        "shewhart": lambda: ShewhartChart(0.0, 1.0, run_rules=True),
        "ewma": lambda: EWMAChart(0.0, 1.0, 0.2, 2.0),
        "cusum": lambda: CUSUMChart(0.0, 1.0, 0.5, 2.0),
        "ma": lambda: MovingAverageChart(0.0, 1.0, 4, 2.0),
    }[kind]()


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(["shewhart", "ewma", "cusum", "ma"]),
       cuts=st.lists(st.integers(0, 60), max_size=5), seed=st.integers(0, 2**16))
def test_chunking_equals_one_shot(kind, cuts, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.3, 1.0, (3, 60))
    x[rng.random(x.shape) < 0.1] = np.nan
    ref = _make(kind).trace(x)
    chart = _make(kind)
    pieces = [chart.trace(p) for p in np.split(x, sorted(cuts), axis=1)]
    for key, val in ref.items():
        np.testing.assert_array_equal(np.concatenate([p[key] for p in pieces], axis=1), val)
    # update() one reading at a time gives the same alarms
    chart = _make(kind)
    one = np.stack([chart.update(x[:, j]) for j in range(x.shape[1])], axis=1)
    np.testing.assert_array_equal(one, ref["alarm"])


@pytest.mark.parametrize("kind", ["shewhart", "ewma", "cusum", "ma"])
def test_missing_readings_are_skipped(kind):
    rng = np.random.default_rng(6)
    x = rng.normal(0.5, 1.0, 80)
    holes = np.insert(x, [10, 10, 30, 55], np.nan)
    full = _make(kind).run(x)
    with_holes = _make(kind).run(holes)
    nan = np.isnan(holes)
    assert not with_holes[nan].any()
    np.testing.assert_array_equal(with_holes[~nan], full)


def test_bad_parameters_and_shapes():
    with pytest.raises(ParameterError, match="sigma"):
        ShewhartChart(0.0, 0.0)
    with pytest.raises(ParameterError, match="lam"):
        EWMAChart(0.0, 1.0, lam=1.5)
    with pytest.raises(ParameterError, match="window"):
        MovingAverageChart(0.0, 1.0, window=0)
    with pytest.raises(ParameterError, match="target"):
        CUSUMChart(float("nan"), 1.0)
    c = EWMAChart(0.0, 1.0, batch=3)
    with pytest.raises(ParameterError, match="batch shape"):
        c.run(np.zeros(5))
    with pytest.raises(ParameterError, match="shape"):
        ShewhartChart(0.0, 1.0).run(np.zeros((2, 2, 2)))
    with pytest.raises(ParameterError, match="infinity"):
        ShewhartChart(0.0, 1.0).run([np.inf])


def test_reset_restarts_the_chart():
    c = CUSUMChart(0.0, 1.0, 0.5, 4.0)
    assert c.run(np.full(10, 2.0))[-1]
    c.reset()
    assert not c.update(0.0)
    assert c.trace([0.0])["upper_statistic"][0] == 0.0
