"""cmsim.plotting: artists checked against closed forms and hand-built results."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from cmsim import plotting, rtd
from cmsim.errors import ParameterError
from cmsim.results import SimulationResult

TAU = 60.0
DELTA = 0.05


def _ax():
    return Figure(figsize=(6, 4)).add_subplot()


def _by_gid(ax, gid, kind="lines"):
    items = {"lines": ax.get_lines(), "patches": ax.patches, "collections": ax.collections}[kind]
    return [a for a in items if a.get_gid() == gid]


def make_result(flow=None, diverted=None, diversion_events=(), event_log=(), **extra):
    """A SimulationResult built by hand (dt = 1 s): API lots A and B, one MCC lot."""
    if flow is None:
        a = np.array([1.0] * 8 + [0.5, 0.5] + [0.0] * 10)
        b = np.array([0.0] * 8 + [0.5, 0.5] + [1.0] * 10)
        a[5], b[5] = 1.0 - 1e-7, 1e-7  # share 1e-7 < epsilon 1e-6: not present
        a[3], b[3] = 1.0 - 2e-6, 2e-6  # share 2e-6 > epsilon: present for one tick
        mcc = np.full(20, 9.0)
        flow = np.vstack([a, b, mcc]) * 1e-4
    n = flow.shape[1]
    channels = (("API", "A"), ("API", "B"), ("MCC", "M"))
    zeros = {m: 0.0 for m in ("API", "MCC")}
    r = SimulationResult(
        dt=1.0, materials=("API", "MCC"), channels=channels, api_material="API",
        gate_flow=flow,
        diverted=np.zeros(n, bool) if diverted is None else np.asarray(diverted, bool),
        tablet_mass=250e-6, target_api_fraction=0.1, api_content_limits=(0.95, 1.05),
        mass={k: dict(zeros) for k in ("fed", "accepted", "diverted", "holdup",
                                        "initial_holdup")},
        channel_mass={k: np.zeros(3) for k in ("fed", "accepted", "diverted", "holdup",
                                                "initial_holdup")},
        mass_balance_max_rel_error=0.0, event_log=list(event_log),
        metadata={"scenario": "hand-made", "trace_epsilon": 1e-6},
        diversion_events=list(diversion_events))
    for k, v in extra.items():
        setattr(r, k, v)
    return r


# ------------------------------------------------------------------------------ funnel
def test_funnel_low_dose_boundary_is_delta_over_cstr_peak():
    model = rtd.CSTR(TAU)
    d = np.geomspace(0.5, 3000.0, 25)
    ax = plotting.funnel(model, DELTA, durations=d, ax=_ax())
    (over,) = _by_gid(ax, "funnel-overfeed")
    (under,) = _by_gid(ax, "funnel-underfeed")
    x = np.asarray(over.get_xdata())
    g = -np.expm1(-x / TAU)  # CSTR: g(d) = F(d) = 1 - exp(-d / tau)
    np.testing.assert_allclose(x, d, rtol=0, atol=0)
    np.testing.assert_allclose(over.get_ydata(), 100.0 * DELTA / g, rtol=1e-9)
    # underfeed drawn negative and clipped at -100 % (a feeder cannot feed less than nothing)
    np.testing.assert_allclose(under.get_ydata(), -np.minimum(100.0 * DELTA / g, 100.0),
                               rtol=1e-9)
    assert np.any(np.asarray(under.get_ydata()) == -100.0)
    assert ax.get_xscale() == "log"
    assert "[s]" in ax.get_xlabel() and "[%" in ax.get_ylabel()
    assert _by_gid(ax, "funnel-acceptable", "collections")


def test_funnel_exact_branches_match_closed_form_and_rtd_funnel_boundary():
    model = rtd.CSTR(TAU)
    w0 = 0.1
    d = np.array([5.0, 20.0, 80.0, 400.0])
    ax = plotting.funnel(model, DELTA, durations=d, ax=_ax(), api_fraction=w0)
    over = np.asarray(_by_gid(ax, "funnel-overfeed")[0].get_ydata())
    under = -np.asarray(_by_gid(ax, "funnel-underfeed")[0].get_ydata())
    g = -np.expm1(-d / TAU)
    exp_over = DELTA / ((1 - w0 * (1 + DELTA)) * g)
    exp_under = DELTA / ((1 - w0 * (1 - DELTA)) * g)
    np.testing.assert_allclose(over, 100 * exp_over, rtol=1e-9)
    np.testing.assert_allclose(under, np.minimum(100 * exp_under, 100.0), rtol=1e-9)
    br = rtd.funnel_boundary(model, DELTA, d, api_fraction=w0)
    np.testing.assert_allclose(over, 100 * br.overfeed, rtol=1e-12)


def test_funnel_asymmetric_limits_use_each_half_width():
    model = rtd.Series(rtd.TanksInSeries(60.0, 5), rtd.CSTR(30.0))
    d = np.array([10.0, 100.0])
    ax = plotting.funnel(model, (0.10, 0.05), durations=d, ax=_ax())
    over = np.asarray(_by_gid(ax, "funnel-overfeed")[0].get_ydata())
    under = -np.asarray(_by_gid(ax, "funnel-underfeed")[0].get_ydata())
    np.testing.assert_allclose(over, 100 * rtd.funnel_boundary(model, 0.05, d), rtol=1e-9)
    np.testing.assert_allclose(under, np.minimum(100 * rtd.funnel_boundary(model, 0.10, d),
                                                 100), rtol=1e-9)


def test_funnel_events_coloured_by_the_boundary():
    model = rtd.CSTR(TAU)
    # 10 s pulses: g = 1 - exp(-1/6) = 0.1535, boundary 0.326; a stop is outside, +20 % inside,
    # and +20 % for 600 s (g ~ 1, boundary 0.05) is outside
    events = [{"duration_s": 10.0, "magnitude": -1.0}, (10.0, 0.2), (600.0, 0.2)]
    ax = plotting.funnel(model, DELTA, ax=_ax(), events=events)
    (pts,) = _by_gid(ax, "funnel-events", "collections")
    np.testing.assert_allclose(pts.get_offsets(), [[10.0, -100.0], [10.0, 20.0],
                                                   [600.0, 20.0]])
    red = np.array([1.0, 0.0, 0.0])
    fc = np.asarray(pts.get_facecolors())[:, :3]
    is_red = [float(np.abs(c - np.array([0.839, 0.153, 0.157])).max()) < 0.01 for c in fc]
    assert is_red == [True, False, True], fc
    assert not np.allclose(fc[1], red)


def test_funnel_default_durations_span_the_mean():
    model = rtd.CSTR(TAU)
    ax = plotting.funnel(model, DELTA, ax=_ax())
    x = np.asarray(_by_gid(ax, "funnel-overfeed")[0].get_xdata())
    assert x[0] < TAU / 100 and x[-1] > 10 * TAU and np.all(np.diff(x) > 0)


@pytest.mark.parametrize("kwargs, name", [
    ({"model": "cstr"}, "model"),
    ({"delta": 1.5}, "delta"),
    ({"delta": (0.05, 0.0)}, "delta[1]"),
    ({"durations": [-1.0, 5.0]}, "durations"),
    ({"events": [(10.0, -2.0)]}, "events[0]"),
    ({"api_fraction": 0.99}, "api_fraction"),
])
def test_funnel_bad_input_names_the_parameter(kwargs, name):
    args = {"model": rtd.CSTR(TAU), "delta": DELTA, "durations": [1.0, 10.0]} | kwargs
    with pytest.raises(ParameterError) as exc:
        plotting.funnel(args.pop("model"), args.pop("delta"), ax=_ax(), **args)
    assert exc.value.name == name


# ------------------------------------------------------------------------------ api_trace
def test_api_trace_lines_spans_and_limits():
    div = np.zeros(20, bool)
    div[4:7] = True
    div[12:14] = True
    windows = [{"start_s": 3.5, "end_s": 7.0, "trigger": "pat_oos", "tablets": 3.0}]
    r = make_result(diverted=div, diversion_events=windows)
    ax = plotting.api_trace(r, ax=_ax())
    (true,) = _by_gid(ax, "api-true")
    api = r.gate_flow[:2].sum(0) / r.gate_flow.sum(0) / 0.1
    np.testing.assert_allclose(true.get_ydata(), 100 * api, rtol=1e-12)
    np.testing.assert_allclose(true.get_xdata(), np.arange(20.0))
    assert sorted(ln.get_ydata()[0] for ln in _by_gid(ax, "spec-limit")) == [95.0, 105.0]
    wins = _by_gid(ax, "diversion-window", "patches")
    assert len(wins) == len(windows)
    x0, x1 = wins[0].get_x(), wins[0].get_x() + wins[0].get_width()
    assert (x0, x1) == pytest.approx((3.5, 7.0))
    spans = _by_gid(ax, "diverted", "patches")
    assert len(spans) == 2
    got = sorted((p.get_x(), p.get_x() + p.get_width()) for p in spans)
    assert got == [pytest.approx((4.0, 7.0)), pytest.approx((12.0, 14.0))]
    assert not _by_gid(ax, "api-measured")  # no readings: no measured trace
    assert "[% of target]" in ax.get_ylabel() and "[s]" in ax.get_xlabel()


def test_api_trace_measured_readings_in_fraction_or_content_skip_dropouts():
    t = np.array([0.0, 2.0, 4.0, 6.0])
    frac = np.array([0.1, np.nan, 0.095, 0.102])
    r = make_result(nir_readings={"time_s": t, "api_fraction": frac, "location": "probe"})
    (meas,) = _by_gid(plotting.api_trace(r, ax=_ax()), "api-measured")
    np.testing.assert_allclose(meas.get_xdata(), [0.0, 4.0, 6.0])
    np.testing.assert_allclose(meas.get_ydata(), [100.0, 95.0, 102.0], rtol=1e-12)
    assert "probe" in meas.get_label()
    r2 = make_result(nir_readings={"time_s": t, "api_content": frac * 10})
    (meas2,) = _by_gid(plotting.api_trace(r2, ax=_ax()), "api-measured")
    np.testing.assert_allclose(meas2.get_ydata(), [100.0, 95.0, 102.0], rtol=1e-12)


def test_api_trace_scales_time_axis_for_long_runs():
    n = 4 * 3600  # 4 h at dt = 1 s -> hours
    flow = np.vstack([np.full(n, 1e-4), np.zeros(n), np.full(n, 9e-4)])
    windows = [{"start_s": 3600.0, "end_s": 7200.0, "trigger": "x", "tablets": 1.0}]
    ax = plotting.api_trace(make_result(flow=flow, diversion_events=windows), ax=_ax())
    assert ax.get_xlabel() == "time [h]"
    (w,) = _by_gid(ax, "diversion-window", "patches")
    assert (w.get_x(), w.get_x() + w.get_width()) == pytest.approx((1.0, 2.0))


# ------------------------------------------------------------------------------ lots
def _bars(ax, gid):
    (coll,) = _by_gid(ax, gid, "collections")
    out = []
    for p in coll.get_paths():
        xs = p.vertices[:, 0]
        out.append((float(xs.min()), float(xs.max())))
    return sorted(out)


def test_lot_intervals_and_gantt_bars_follow_the_trace_epsilon():
    refill = {"time_s": 2.0, "type": "refill_start", "source": "feeder.api",
              "data": {"material": "API", "lot": "B"}}
    other = {"time_s": 2.0, "type": "refill_start", "source": "feeder.x",
             "data": {"material": "XYZ", "lot": "Q"}}  # not a channel: not drawn
    r = make_result(event_log=[refill, other])
    iv = plotting.lot_intervals(r)
    assert iv == {("API", "A"): [(0.0, 10.0)], ("API", "B"): [(3.0, 4.0), (8.0, 20.0)],
                  ("MCC", "M"): [(0.0, 20.0)]}
    ax = plotting.lot_gantt(r, ax=_ax())
    for (m, lot), spans in iv.items():
        assert _bars(ax, f"lot:{m}/{lot}") == [pytest.approx(s) for s in spans]
    (charge,) = _by_gid(ax, "charge")
    assert list(charge.get_xdata()) == [2.0]
    pos = {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)}
    # the refill marker sits on its lot's row, not between two rows
    assert list(charge.get_ydata()) == [pos["API / B"]]
    assert pos["API / A"] > pos["API / B"] > pos["MCC / M"]  # first channel on top
    assert "tablet time [s]" in ax.get_xlabel()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=30))
def test_lot_intervals_cover_exactly_the_ticks_above_epsilon(pairs):
    a, b = np.array(pairs).T * 1e-4
    flow = np.vstack([a, b, np.full(a.size, 1e-3)])
    r = make_result(flow=flow)
    iv = plotting.lot_intervals(r)
    for row, key in enumerate(r.channels):
        comp = flow[:2].sum(0) if key[0] == "API" else flow[2]
        expect = {k for k in range(a.size)
                  if comp[k] > 0 and flow[row, k] / comp[k] > 1e-6}
        got = set()
        last_end = -1.0
        for s, e in iv[key]:
            assert s > last_end  # sorted, disjoint, maximal (never touching)
            last_end = e
            got |= set(range(int(s), int(e)))
        assert got == expect


def test_disturbance_points_from_event_log():
    log = [
        {"time_s": 300.0, "type": "feeder_stop", "source": "feeder.api",
         "data": {"target": "feeder.api", "duration_s": 10.0}},
        {"time_s": 310.0, "type": "feeder_start", "source": "feeder.api", "data": {}},
        {"time_s": 400.0, "type": "feeder_step", "source": "feeder.api",
         "data": {"target": "feeder.api", "mass_flow_kg_s": 1.2e-3, "previous_kg_s": 1e-3,
                  "duration_s": 20.0}},
        {"time_s": 500.0, "type": "feeder_step", "source": "feeder.api",  # permanent: no pulse
         "data": {"target": "feeder.api", "mass_flow_kg_s": 2e-3, "previous_kg_s": 1e-3}},
        {"time_s": 600.0, "type": "feeder_stop", "source": "feeder.mcc",
         "data": {"target": "feeder.mcc", "duration_s": 5.0}},
    ]
    r = make_result(event_log=log)
    pts = plotting.disturbance_points(r)
    assert [(p["feeder"], p["duration_s"]) for p in pts] == [("api", 10.0), ("api", 20.0),
                                                            ("mcc", 5.0)]
    assert pts[0]["magnitude"] == -1.0
    assert math.isclose(pts[1]["magnitude"], 0.2, rel_tol=1e-12)
    assert [p["feeder"] for p in plotting.disturbance_points(r, ["api"])] == ["api", "api"]


def test_existing_helpers_and_overview_still_draw():
    r = make_result()
    ax = plotting.api_content(r, ax=_ax())
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), 100 * r.api_content)
    ax = plotting.mass_flow(r, ax=_ax())
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), r.mass_flow * 3600.0)
    ax = plotting.lot_shares(r, ax=_ax())
    assert len(ax.get_lines()) == 3
    fig = plotting.overview(r, fig=Figure())
    assert len(fig.axes) == 3


def test_constant_flow_has_no_offset_notation_and_a_readable_range():
    r = make_result()
    r.gate_flow[:] = 20.0 / 3600.0 / r.gate_flow.shape[0]  # exactly constant 20 kg/h
    r._cache.clear()
    ax = plotting.mass_flow(r, ax=_ax())
    ax.figure.canvas.draw()
    assert ax.yaxis.get_major_formatter().get_offset() == ""
    lo, hi = ax.get_ylim()
    assert lo <= 19.0 and hi >= 21.0  # +-5 % of the level, not +-1e-12
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert all("e" not in s for s in labels), labels
