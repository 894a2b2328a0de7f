"""Diversion windows: the worked example of docs/monitor.md#diversion-windows (row 16 of
docs/reference-values.md) and the union."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from cmsim import rtd
from cmsim.errors import ParameterError
from cmsim.monitor.windows import (
    DiversionWindow,
    cached_quantile,
    default_margin,
    merge_windows,
    oos_intervals,
    pat_window,
    predicted_window,
    quantile_window,
    rtd_envelope,
    scale_residence_times,
)

LINE = rtd.Series(rtd.PFR(10.0), rtd.TanksInSeries(60.0, 5), rtd.CSTR(30.0))


def line_cdf(t):
    """Closed-form F of PFR 10 s + Gamma(5, 12 s) + Exp(30 s), independent of cmsim.rtd.

    P(G + X <= s) = F_G(s; 12) - exp(-s/30) (20/12)^5 F_G(s; 20), because
    f_G(g) exp(g/30) = (20/12)^5 * Gamma(5, scale 20) pdf.
    """
    s = np.clip(np.asarray(t, dtype=float) - 10.0, 0.0, None)
    return (stats.gamma.cdf(s, 5, scale=12.0)
            - np.exp(-s / 30.0) * (20.0 / 12.0) ** 5 * stats.gamma.cdf(s, 5, scale=20.0))


def test_independent_line_cdf_reproduces_published_quantiles():
    # docs/monitor.md#diversion-windows: t_0.5% = 31.732 s, t_50% = 93.418 s, t_99.5% = 245.444 s
    for t, q in [(31.732, 0.005), (93.418, 0.5), (245.444, 0.995), (25.602, 0.001)]:
        root = optimize.brentq(lambda x, q=q: line_cdf(x) - q, 10.0, 1000.0, xtol=1e-10)
        assert root == pytest.approx(t, abs=6e-4)


def test_method_b_worked_example():
    w = quantile_window(300.0, 320.0, LINE, alpha=0.005)
    # exactly t0 + t_alpha and t1 + t_(1-alpha) of the model
    assert w.start_s == 300.0 + LINE.quantile(0.005)
    assert w.end_s == 320.0 + LINE.quantile(0.995)
    assert w.start_s == pytest.approx(331.73, abs=0.005)
    assert w.end_s == pytest.approx(565.44, abs=0.005)
    assert w.duration_s == pytest.approx(233.71, abs=0.01)
    assert w.method == "B" and w.alpha == 0.005
    assert w.rtd_params == (LINE.params,)
    # at most alpha of the disturbed mass leaves before / after the window (independent F)
    d = np.linspace(300.0, 320.0, 2001)
    assert np.all(line_cdf(w.start_s - d) <= 0.005 + 1e-9)
    assert np.all(1 - line_cdf(w.end_s - d) <= 0.005 + 1e-9)


def test_method_b_envelope_and_margins():
    slow = rtd.Series(rtd.PFR(12.0), rtd.TanksInSeries(70.0, 5), rtd.CSTR(30.0))
    fast = rtd.Series(rtd.PFR(8.0), rtd.TanksInSeries(50.0, 5), rtd.CSTR(30.0))
    w = quantile_window(300.0, 320.0, [LINE, slow, fast], alpha=0.005, margin_start=5.0,
                        margin_end=7.0)
    assert w.start_s == pytest.approx(300.0 + fast.quantile(0.005) - 5.0)
    assert w.end_s == pytest.approx(320.0 + slow.quantile(0.995) + 7.0)
    assert len(w.rtd_params) == 3 and w.margins == (5.0, 7.0)
    alone = quantile_window(300.0, 320.0, LINE, alpha=0.005)
    assert w.start_s < alone.start_s and w.end_s > alone.end_s


def _content_by_convolution(dt, api_factor, t_start, duration, horizon=900.0):
    """Predicted API content (fraction of target) at the diverter from the component flows.

    ZOH tick flows convolved with the bin kernel w[j] = F((j+1)dt) - F(j dt) of the
    independent closed-form F; y[k] is the outflow at time (k+1) dt (design.md convention).
    """
    n = int(round(horizon / dt))
    t_in = np.arange(n) * dt
    api = np.full(n, 2.0 / 3600.0)
    exc = np.full(n, 18.0 / 3600.0)
    hit = (t_in >= t_start - 1e-9) & (t_in < t_start + duration - 1e-9)
    api[hit] *= api_factor
    edges = np.arange(n + 1) * dt
    w = np.diff(line_cdf(edges))
    steady_api = 2.0 / 3600.0
    # deviation form keeps the steady state exact despite the finite horizon
    api_out = steady_api + np.convolve(api - steady_api, w)[:n]
    exc_out = 18.0 / 3600.0 + np.convolve(exc - 18.0 / 3600.0, w)[:n]
    content = api_out / (api_out + exc_out) / 0.1
    return t_in + dt, content


@pytest.mark.parametrize(("factor", "duration", "window", "minimum"), [
    (0.5, 20.0, (358.65, 440.89), (0.8976, 391.7)),   # API feeder at 50 % for 20 s
    (0.0, 10.0, (353.65, 435.72), (0.8964, 386.3)),   # API stop for 10 s
])
def test_method_a_worked_example(factor, duration, window, minimum):
    dt = 0.1
    t, content = _content_by_convolution(dt, factor, 300.0, duration)
    # the oracle series itself reproduces the published minimum
    k = int(np.argmin(content))
    assert content[k] == pytest.approx(minimum[0], abs=2e-4)
    assert t[k] == pytest.approx(minimum[1], abs=0.5)
    (w,) = predicted_window(t, content, (0.95, 1.05), rtd_params=[LINE.params])
    assert w.method == "A" and w.details["limits"] == [0.95, 1.05]
    assert abs(w.start_s - window[0]) <= dt
    assert abs(w.end_s - window[1]) <= dt
    # with margins the window grows by exactly the margins
    (wm,) = predicted_window(t, content, (0.95, 1.05), (2.0, 3.0))
    assert wm.start_s == pytest.approx(w.start_s - 2.0) and wm.end_s == pytest.approx(
        w.end_s + 3.0)
    # method A lies inside method B for the same disturbance
    b = quantile_window(300.0, 300.0 + duration, LINE, alpha=0.005)
    assert b.start_s < w.start_s and w.end_s < b.end_s


def test_method_a_envelope_is_union_of_rows():
    t = np.linspace(0.0, 100.0, 1001)
    a = np.where((t > 20) & (t < 30), 0.9, 1.0)
    b = np.where((t > 25) & (t < 40), 1.1, 1.0)
    c = np.where((t > 60) & (t < 70), 0.9, 1.0)
    ws = predicted_window(t, np.vstack([a, b, c]), (0.95, 1.05))
    assert [(round(w.start_s, 6), round(w.end_s, 6)) for w in ws] == [(20.05, 39.95),
                                                                     (60.05, 69.95)]


def test_oos_intervals_interpolation_and_edges():
    t = np.arange(6.0)
    # upper excursion: crossing of 1.05 between t=0 (1.0) and t=1 (1.1) at 0.5
    assert np.allclose(oos_intervals(t, [1.0, 1.1, 1.1, 1.0, 1.0, 1.0], (0.95, 1.05)),
                       [(0.5, 2.5)])
    # excursions touching the ends of the grid are clipped to the grid
    got = oos_intervals(t, [0.9, 1.0, 1.0, 1.0, 1.0, 1.2], (0.95, 1.05))
    assert np.allclose(got, [(0.0, 0.5), (4.25, 5.0)])
    # values exactly at a limit are in specification
    assert oos_intervals(t, [0.95, 1.05, 1.0, 1.0, 1.0, 1.0], (0.95, 1.05)) == []
    with pytest.raises(ParameterError, match="limits"):
        oos_intervals(t, np.ones(6), (1.05, 0.95))
    with pytest.raises(ParameterError, match="values"):
        oos_intervals(t, np.ones(5), (0.95, 1.05))


def test_pat_window():
    probe = rtd.Series(rtd.PFR(9.0), rtd.CSTR(30.0))
    w = pat_window(400.0, 460.0, 2.0, probe, alpha=0.005, latency=3.0, margin_start=1.0,
                   margin_end=2.0)
    assert w.start_s == pytest.approx(400.0 - 2.0 - 3.0 + probe.quantile(0.005) - 1.0)
    assert w.end_s == pytest.approx(460.0 + probe.quantile(0.995) + 2.0)
    assert w.method == "PAT"
    # t_alpha of PFR 9 + CSTR 30 is 9.15 s > latency + period + margin: nothing escapes
    assert w.details["escaped_s"] == 0.0
    # a feed-frame probe (CSTR only) has no lead time: the early part escapes
    ff = pat_window(400.0, 460.0, 2.0, rtd.CSTR(30.0), latency=3.0)
    assert ff.details["escaped_s"] == pytest.approx(5.0 - rtd.CSTR(30.0).quantile(0.005))


def test_merge_windows_keeps_triggers_and_never_shortens():
    a = DiversionWindow(10.0, 20.0, "pat_oos", "PAT", alpha=0.005)
    b = DiversionWindow(15.0, 30.0, "feeder_fault:api", "B", margins=(1.0, 2.0), alpha=0.005)
    c = DiversionWindow(40.0, 50.0, "model_predicted_oos", "A")
    merged = merge_windows([c, b, a])
    assert len(merged) == 2
    m, last = merged
    assert (m.start_s, m.end_s) == (10.0, 30.0)
    assert m.triggers == ("pat_oos", "feeder_fault:api") and m.method == "PAT+B"
    assert m.margins == (0.0, 2.0) and m.alpha == 0.005
    assert last is c
    # merging a merged window with a new one flattens the sources
    again = merge_windows([m, DiversionWindow(29.0, 45.0, "equipment", "B")])
    assert len(again) == 1 and again[0].end_s == 45.0
    assert again[0].triggers == ("pat_oos", "feeder_fault:api", "equipment")
    # touching windows merge; a gap merges nearby ones
    assert len(merge_windows([DiversionWindow(0, 1, "x", "A"), DiversionWindow(1, 2, "y", "A")
                              ])) == 1
    assert len(merge_windows([DiversionWindow(0, 1, "x", "A"), DiversionWindow(3, 4, "y", "A")
                              ], gap=2.0)) == 1
    rec = m.to_record()
    assert rec["sources"][0]["trigger"] == "pat_oos" and rec["margins_s"] == [0.0, 2.0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1000), st.floats(0, 100)), min_size=1, max_size=8))
def test_merge_is_the_union(spans):
    ws = [DiversionWindow(a, a + d, f"t{i}", "A") for i, (a, d) in enumerate(spans)]
    merged = merge_windows(ws)
    probe = np.linspace(-1.0, 1101.0, 4001)
    inside_any = np.any([w.contains(probe) for w in ws], axis=0)
    inside_merged = np.any([w.contains(probe) for w in merged], axis=0)
    np.testing.assert_array_equal(inside_any, inside_merged)
    assert all(x.end_s < y.start_s for x, y in zip(merged, merged[1:], strict=False))
    assert sorted(t for w in merged for t in w.triggers) == sorted(w.trigger for w in ws)


def test_bad_inputs():
    with pytest.raises(ParameterError, match="alpha"):
        quantile_window(0.0, 1.0, LINE, alpha=0.6)
    with pytest.raises(ParameterError, match="t1"):
        quantile_window(5.0, 1.0, LINE)
    with pytest.raises(ParameterError, match="model"):
        quantile_window(0.0, 1.0, [])
    with pytest.raises(ParameterError, match="margin_start"):
        quantile_window(0.0, 1.0, LINE, margin_start=-1.0)
    with pytest.raises(ParameterError, match="end_s"):
        DiversionWindow(5.0, 1.0, "x", "A")
    assert default_margin(0.5, 100.0, gate_delay=1.0) == 6.0
    assert default_margin(5.0, 100.0) == 10.0


def test_window_record_goes_into_the_audit_trail(tmp_path):
    from cmsim.eventlog import EventLog, read_log, verify_log

    b = quantile_window(300.0, 320.0, LINE, alpha=0.005, margin_start=5.0, margin_end=5.0,
                        trigger="feeder_fault:api")
    pat = pat_window(400.0, 430.0, 2.0, rtd.Series(rtd.PFR(9.0), rtd.CSTR(30.0)))
    (merged,) = merge_windows([b, pat])
    log = EventLog()
    log.append(merged.start_s, "diversion_window", merged.to_record())
    path = tmp_path / "events.jsonl"
    log.write(path)
    assert verify_log(path).ok
    (rec,) = read_log(path)
    data = rec["data"]
    assert data["trigger"] == "feeder_fault:api+pat_oos" and data["method"] == "B+PAT"
    assert [s["trigger"] for s in data["sources"]] == ["feeder_fault:api", "pat_oos"]
    # RTD parameters survive as plain JSON (tuples become lists)
    assert data["sources"][0]["rtd_params"][0]["stages"][0] == {"model": "PFR", "delay": 10.0}
    assert len(data["sources"][0]["rtd_params"][0]["stages"]) == 3
    assert data["start_s"] == merged.start_s and data["end_s"] == merged.end_s


@settings(max_examples=30, deadline=None)
@given(st.floats(0.5, 1.5), st.floats(0.001, 0.999))
def test_scaled_rtd_quantiles_scale_linearly(s, p):
    # closed forms: CSTR quantile -tau ln(1-p); PFR its delay
    c = scale_residence_times(rtd.CSTR(30.0), s)
    assert c.quantile(p) == pytest.approx(-30.0 * s * np.log1p(-p), rel=1e-9)
    assert scale_residence_times(rtd.PFR(10.0), s).quantile(p) == pytest.approx(10.0 * s)
    line = rtd.Series(rtd.PFR(10.0), rtd.TanksInSeries(60.0, 5), rtd.CSTR(30.0))
    scaled = scale_residence_times(line, s)
    assert scaled.mean == pytest.approx(100.0 * s, rel=1e-12)
    assert scaled.variance == pytest.approx(line.variance * s * s, rel=1e-9)
    assert scaled.quantile(p) == pytest.approx(s * line.quantile(p), rel=1e-7, abs=1e-9)


def test_rtd_envelope_and_cached_quantile():
    line = rtd.Series(rtd.PFR(10.0), rtd.TanksInSeries(60.0, 5), rtd.CSTR(30.0))
    assert rtd_envelope(line, 0.0) == (line,)
    lo, mid, hi = rtd_envelope(line, 0.1)
    assert mid is line and lo.mean == pytest.approx(90.0) and hi.mean == pytest.approx(110.0)
    w0 = quantile_window(300.0, 320.0, line, 0.005)
    widths = [quantile_window(300.0, 320.0, rtd_envelope(line, u), 0.005) for u in
              (0.0, 0.05, 0.1, 0.3)]
    assert (widths[0].start_s, widths[0].end_s) == (w0.start_s, w0.end_s)
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        assert b.start_s < a.start_s and b.end_s > a.end_s
    # the envelope's extremes are the scaled nominal quantiles (7.3: min/max over Theta)
    assert widths[2].start_s == pytest.approx(300.0 + 0.9 * 31.732377755897687, abs=1e-6)
    assert cached_quantile(line, 0.5) == pytest.approx(93.418, abs=1e-3)
    for bad in (-0.1, 1.0):
        with pytest.raises(ParameterError, match="rtd_uncertainty"):
            rtd_envelope(line, bad)
    with pytest.raises(ParameterError, match="factor"):
        scale_residence_times(line, 0.0)


@pytest.mark.parametrize("kind", [float, np.float64, np.float32, np.array, int])
def test_window_times_of_any_real_scalar_type_give_the_same_window(kind):
    """Plain floats take a fast path; numpy scalars, 0-d arrays and ints the general one:
    the windows are equal field by field."""
    model = rtd.Series(rtd.PFR(10.0), rtd.CSTR(30.0))
    ref_p = pat_window(100.0, 120.0, 2.0, model, 0.005, latency=3.0, margin_start=5.0,
                       margin_end=5.0, decision_s=104.0)
    ref_q = quantile_window(100.0, 120.0, model, 0.005, 5.0, 5.0)
    p = pat_window(kind(100), kind(120), 2.0, model, 0.005, latency=3.0, margin_start=5.0,
                   margin_end=5.0, decision_s=kind(104))
    q = quantile_window(kind(100), kind(120), model, 0.005, 5.0, 5.0)
    assert (p.start_s, p.end_s, p.details) == (ref_p.start_s, ref_p.end_s, ref_p.details)
    assert (q.start_s, q.end_s) == (ref_q.start_s, ref_q.end_s)
    assert all(type(v) is float for v in (p.details["t_first_oos_s"], p.details["t_clear_s"]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"),
                                 np.array([1.0, 2.0]), None])
def test_window_times_must_be_finite_real_scalars(bad):
    model = rtd.CSTR(30.0)
    with pytest.raises(ParameterError, match="t_first_oos"):
        pat_window(bad, 120.0, 2.0, model)
    with pytest.raises(ParameterError, match="decision_s"):
        pat_window(100.0, 120.0, 2.0, model, decision_s=bad) if bad is not None else \
            pat_window(100.0, 120.0, 2.0, model, decision_s=[bad])
    with pytest.raises(ParameterError, match="t0"):
        quantile_window(bad, 120.0, model)
