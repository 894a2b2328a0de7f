"""Study results: binomial intervals, per grid point statistics, custom metrics, figures, HTML."""

from __future__ import annotations

import math
import operator

import matplotlib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

import cmsim
from cmsim.errors import ParameterError
from cmsim.sweep import binomial_interval, case_metrics, plot_hist, plot_metric, summarize
from cmsim.sweep.runner import assemble
from cmsim.sweep.worker import rows_to_arrow

matplotlib.use("Agg")

SCEN = "scenarios/control_none.toml"


# --------------------------------------------------------------------------- intervals


@pytest.mark.parametrize(("method", "scipy_method"), [("wilson", "wilson"),
                                                      ("clopper-pearson", "exact")])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_binomial_interval_matches_scipy_binomtest(method, scipy_method, confidence):
    for n in (1, 2, 7, 30, 200):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            lo, hi = binomial_interval(k, n, confidence, method)
            ref = binomtest(k, n).proportion_ci(confidence, scipy_method)
            assert float(lo) == pytest.approx(ref.low, abs=1e-12)
            assert float(hi) == pytest.approx(ref.high, abs=1e-12)


def test_wilson_interval_closed_forms():
    z = 1.959963984540054  # normal quantile of 0.975
    n = 40
    lo, hi = binomial_interval(0, n)
    assert float(lo) == 0.0 and float(hi) == pytest.approx(z * z / (n + z * z), rel=1e-12)
    lo, hi = binomial_interval(n, n)
    assert float(hi) == 1.0 and float(lo) == pytest.approx(n / (n + z * z), rel=1e-12)
    # Clopper-Pearson with k = 0: upper bound 1 - (alpha / 2)^(1/n)
    _, hi = binomial_interval(0, n, method="clopper-pearson")
    assert float(hi) == pytest.approx(1.0 - 0.025 ** (1.0 / n), rel=1e-12)
    lo, hi = binomial_interval(np.array([1, 0]), np.array([4, 0]))
    assert math.isnan(lo[1]) and math.isnan(hi[1]) and 0 < lo[0] < 0.25 < hi[0] < 1
    with pytest.raises(ParameterError, match="k"):
        binomial_interval(5, 4)
    with pytest.raises(ParameterError, match="method"):
        binomial_interval(1, 4, method="wald")


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5000), frac=st.floats(0, 1), conf=st.floats(0.5, 0.999))
def test_intervals_contain_the_estimate_and_nest(n, frac, conf):
    k = int(round(frac * n))
    for method in ("wilson", "clopper-pearson"):
        lo, hi = binomial_interval(k, n, conf, method)
        assert 0.0 <= lo <= k / n + 1e-12 and k / n - 1e-12 <= hi <= 1.0
        lo2, hi2 = binomial_interval(k, n, min(0.9999, conf + 0.0005), method)
        assert lo2 <= lo + 1e-12 and hi2 >= hi - 1e-12  # higher confidence: wider


# --------------------------------------------------------------------------- summarize


def _synthetic_table(rng):
    """A sweep table of 2 x 2 grid points x 50 replicates with known escapes and one error."""
    rows = []
    for case in range(4):
        for rep in range(50):
            rows.append({"case": case, "replicate": rep,
                         "escapes": float(rng.poisson(0.3 * case)),
                         "waste": float(rng.gamma(2.0, 10.0 + case)),
                         "error_type": None, "error_message": None})
    rows[7].update(escapes=float("nan"), waste=float("nan"), error_type="ValueError",
                   error_message="boom")
    definition = {"grid": [["a", [1.0, 2.0]], ["b", ["x", "y"]]], "seed": 3, "metrics": []}
    return assemble([rows_to_arrow(rows)], definition)


def test_summarize_against_numpy_and_the_binomial_count():
    table = _synthetic_table(np.random.default_rng(1))
    s = summarize(table, quantiles=(0.05, 0.5, 0.95))
    assert list(s["case"]) == [0, 1, 2, 3] and list(s["a"]) == [1.0, 1.0, 2.0, 2.0]
    assert list(s["b"]) == ["x", "y", "x", "y"]
    assert list(s["replicates"]) == [50] * 4 and list(s["failed"]) == [1, 0, 0, 0]
    for case in range(4):
        rows = table[(table["case"] == case) & table["error_type"].isna()]
        w = rows["waste"].to_numpy()
        assert s.loc[case, "waste_mean"] == pytest.approx(w.mean(), rel=1e-12)
        assert s.loc[case, "waste_std"] == pytest.approx(w.std(ddof=1), rel=1e-12)
        for q in (0.05, 0.5, 0.95):
            assert s.loc[case, f"waste_q{100 * q:g}"] == pytest.approx(np.quantile(w, q),
                                                                       rel=1e-12)
        k = int((rows["escapes"] > 0).sum())
        n = len(rows)
        assert s.loc[case, "escape_replicates"] == k
        assert s.loc[case, "escape_probability"] == pytest.approx(k / n, rel=1e-12)
        ref = binomtest(k, n).proportion_ci(0.95, "wilson")
        assert s.loc[case, "escape_ci_low"] == pytest.approx(ref.low, abs=1e-12)
        assert s.loc[case, "escape_ci_high"] == pytest.approx(ref.high, abs=1e-12)
    assert s.loc[0, "escape_probability"] == 0.0  # Poisson(0) never escapes
    # a threshold: "more than 1 escaped tablet"
    s1 = summarize(table, ["escapes"], threshold=1.0)
    assert list(s1["escape_replicates"]) == [
        int((table[(table["case"] == c)]["escapes"] > 1).sum()) for c in range(4)]
    with pytest.raises(ParameterError, match="nope"):
        summarize(table, ["nope"])


# --------------------------------------------------------------------------- metrics


def test_case_metrics_equal_the_summary_tablet_counts():
    result = cmsim.run("scenarios/api_feeder_stop.toml")
    m = case_metrics(result)
    tab = result.summary()["tablets"]
    assert m["escapes"] == tab["nonconforming_accepted"]
    assert m["waste"] == tab["conforming_diverted"]
    assert m["tablets_produced"] == tab["produced"]
    assert m["tablets_accepted"] == tab["accepted"] and m["tablets_diverted"] == tab["diverted"]
    assert m["tablets_accepted"] + m["tablets_diverted"] == pytest.approx(m["tablets_produced"],
                                                                          rel=1e-12)
    assert m["tablets_diverted"] > 0  # this scenario diverts: the counts are not trivially 0


def test_custom_metrics_mapping_and_callable():
    grid = {"simulation.duration": ["6 min", "8 min"]}
    table = cmsim.sweep(SCEN, grid=grid, metrics={"ticks": operator.attrgetter("n_ticks"),
                                                  "dt": operator.attrgetter("dt")})
    assert list(table.columns[-4:]) == ["ticks", "dt", "error_type", "error_message"]
    assert (table["ticks"] * table["dt"]).tolist() == [360.0, 480.0]

    def two(result):
        return {"z_last": 1.0, "a_first": float(result.n_ticks)}

    table = cmsim.sweep(SCEN, grid=grid, metrics=two)
    assert list(table.columns[-4:]) == ["a_first", "z_last", "error_type", "error_message"]


def test_bad_metrics_are_refused_before_any_run():
    grid = {"simulation.duration": ["6 min"]}
    with pytest.raises(ParameterError, match="built-in column"):
        cmsim.sweep(SCEN, grid=grid, metrics={"escapes": len})
    with pytest.raises(ParameterError, match="callable"):
        cmsim.sweep(SCEN, grid=grid, metrics={"x": 3})
    with pytest.raises(ParameterError, match="picklable"):
        cmsim.sweep(SCEN, grid=grid, metrics={"x": lambda r: 1.0}, workers=2)
    with pytest.raises(ParameterError, match="picklable"):
        cmsim.sweep(SCEN, grid=grid, keep=lambda row: True, workers=2)
    with pytest.raises(ParameterError, match="workers"):
        cmsim.sweep(SCEN, grid=grid, workers=0)
    with pytest.raises(ParameterError, match="task_seconds"):
        cmsim.sweep(SCEN, grid=grid, task_seconds=0)


# --------------------------------------------------------------------------- figures, HTML


def test_plot_metric_draws_the_summary_with_its_interval():
    table = _synthetic_table(np.random.default_rng(2))
    s = summarize(table)
    ax = plot_metric(table, "escape_probability", "a")
    assert ax.get_xlabel() == "a" and "escape probability" in ax.get_ylabel()
    assert len(ax.containers) == 2  # one errorbar line per value of the other axis (b)
    for container, b in zip(ax.containers, ("x", "y"), strict=True):
        line = container.lines[0]
        rows = s[s["b"] == b]
        assert list(line.get_xdata()) == [1.0, 2.0]
        assert np.allclose(line.get_ydata(), rows["escape_probability"])
        seg = container.lines[2][0].get_segments()  # vertical bars: (x, lo) -> (x, hi)
        assert np.allclose([p[0][1] for p in seg], rows["escape_ci_low"])
        assert np.allclose([p[1][1] for p in seg], rows["escape_ci_high"])
    # a given Axes is drawn on and returned; a categorical axis is placed in grid order
    import matplotlib.pyplot as plt

    fig, given_ax = plt.subplots()
    out = plot_metric(table, "waste", "b", ax=given_ax, interval="quantiles")
    assert out is given_ax
    assert [t.get_text() for t in out.get_xticklabels()] == ["x", "y"]
    plt.close("all")
    with pytest.raises(ParameterError, match="grid axis"):
        plot_metric(table, "waste", "c")


def test_plot_hist_counts_every_replicate():
    table = _synthetic_table(np.random.default_rng(3))
    ax = plot_hist(table, "waste", bins=10)
    assert len(ax.patches) == 4  # one outline per grid point
    ok = table[table["error_type"].isna()]
    edges = np.histogram_bin_edges(ok["waste"], bins=10)
    for patch, case in zip(ax.patches, range(4), strict=True):
        counts, _ = np.histogram(ok[ok["case"] == case]["waste"], bins=edges)
        heights = patch.get_xy()[1:-1:2, 1]  # the step outline's levels
        assert np.array_equal(heights[: len(counts)], counts)
    assert len(plot_hist(table, "waste", cases=[1, 3]).patches) == 2
    with pytest.raises(ParameterError, match=r"\[99\] are not cases of the table"):
        plot_hist(table, "waste", cases=[1, 99])  # drew an empty figure before
    import matplotlib.pyplot as plt

    plt.close("all")


def test_repr_html_shows_the_study_above_the_rows():
    table = _synthetic_table(np.random.default_rng(4))
    html = table._repr_html_()
    assert "cmsim sweep" in html and "200 runs = 4 grid point(s)" in html
    assert "1 failed" in html and "escape_probability" in html and "escape_ci_high" in html
    sub = table[["case", "waste"]]  # a derived frame: the plain pandas view
    assert "cmsim sweep" not in sub._repr_html_()
    assert isinstance(table, pd.DataFrame)
