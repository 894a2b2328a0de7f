"""Benchmark metrics against hand-made results: escape rate, waste ratio, false diversions,
detection delay, Wilson intervals."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binomtest

from cmsim.faultbench import detection_time, read_run, summarize_case, wilson_interval


def _result(*, produced=1000.0, nonconforming=0.0, escapes=0.0, waste=0.0, diverted=None,
            events=(), windows=0, duration=1200.0, diversion=None):
    """A stand-in for SimulationResult: summary() and event_log only."""
    summary = {
        "duration_s": duration,
        "tablets": {"produced": produced, "accepted": produced - (diverted or 0.0),
                    "diverted": waste + nonconforming - escapes if diverted is None
                    else diverted,
                    "nonconforming_produced": nonconforming,
                    "nonconforming_accepted": escapes, "conforming_diverted": waste},
        "diversion_events": [{"start_s": 0.0, "end_s": 1.0}] * windows,
    }
    if diversion is not None:
        summary["diversion"] = diversion
    return SimpleNamespace(summary=lambda: summary, event_log=list(events))


def _ev(t, kind, source="monitor", **data):
    return {"time_s": t, "type": kind, "source": source, "data": data}


# --------------------------------------------------------------------------- detection


def test_detection_ignores_records_before_the_fault_and_other_types():
    events = [_ev(100.0, "alarm"), _ev(290.0, "diversion_request"),
              _ev(301.0, "state_of_control"), _ev(305.0, "spc_signal"),
              _ev(307.5, "alarm"), _ev(320.0, "diversion_request")]
    assert detection_time(events, 300.0) == 307.5
    assert detection_time(events, 307.5) == 307.5  # "at or after" the start


def test_detection_uses_the_decision_time_of_diversion_windows():
    # the gate moves at 331 s on a decision taken at 302 s: the decision counts
    div = _ev(331.0, "diversion", source="diversion",
              windows=[{"decision_s": 310.0}, {"decision_s": 302.0}, {"decision_s": 250.0}])
    assert detection_time([div, _ev(305.0, "alarm")], 300.0) == 302.0
    # without windows the record's own decision time counts, else its time
    assert detection_time([_ev(331.0, "diversion", source="diversion", decision_s=330.5,
                               windows=[])], 300.0) == 330.5
    assert detection_time([_ev(331.0, "diversion", source="diversion")], 300.0) == 331.0


def test_a_decision_before_the_run_counts_at_its_start():
    # start-up: the gate starts diverted on a decision stamped one gate delay before t = 0
    div = _ev(0.0, "diversion", source="diversion", decision_s=-0.5, windows=[])
    assert detection_time([div], 0.0) == 0.0
    assert math.isnan(detection_time([div], 10.0))


def test_no_detection_is_nan():
    assert math.isnan(detection_time([_ev(100.0, "alarm")], 300.0))
    assert math.isnan(detection_time([_ev(400.0, "alarm")], None))


# --------------------------------------------------------------------------- one run


def test_read_run_takes_the_summary_counts_and_the_detection():
    res = _result(produced=26000.0, nonconforming=2000.0, escapes=12.0, waste=3000.0,
                  windows=2, events=[_ev(301.0, "alarm")],
                  diversion={"expected_escapes": 10.5, "policy": "risk"})
    row = read_run(res, 300.0)
    assert row["produced"] == 26000.0
    assert (row["nonconforming"], row["escapes"], row["waste"]) == (2000.0, 12.0, 3000.0)
    assert row["diverted"] == 3000.0 + 2000.0 - 12.0
    assert row["diversion_events"] == 2.0
    assert (row["expected_escapes"], row["policy"]) == (10.5, "risk")
    assert (row["detection_s"], row["detection_delay_s"]) == (301.0, 1.0)


def test_read_run_without_the_v2_summary_keys():
    row = read_run(_result(), None)
    assert math.isnan(row["expected_escapes"]) and row["policy"] == ""
    assert math.isnan(row["detection_s"]) and math.isnan(row["detection_delay_s"])


# --------------------------------------------------------------------------- aggregation


def _rows(specs, start=300.0):
    return [read_run(_result(**spec), start) for spec in specs]


def test_escape_rate_is_pooled_and_escape_replicates_use_half_a_tablet():
    runs = _rows([
        dict(nonconforming=1000.0, escapes=0.0, waste=500.0, events=[_ev(301.0, "alarm")]),
        dict(nonconforming=3000.0, escapes=30.0, waste=9000.0, events=[_ev(305.0, "alarm")]),
        dict(nonconforming=2000.0, escapes=0.4, waste=1000.0, events=[_ev(303.0, "alarm")]),
        dict(nonconforming=0.2, escapes=0.0, waste=100.0),
    ])
    out = summarize_case(runs, reference=False, nonconforming_expected=True)
    assert out["replicates"] == 4
    assert out["replicates_nonconforming"] == 3          # 0.2 tablet is none
    assert out["replicates_with_escape"] == 1            # 0.4 tablet is none
    assert out["escape_rate"] == pytest.approx(30.4 / 6000.2)
    # waste ratios of the replicates that made nonconforming tablets: 0.5, 3, 0.5 -> 0.5
    assert out["waste_ratio_median"] == pytest.approx(0.5)
    assert out["waste_median"] == pytest.approx(750.0)   # median of 500, 9000, 1000, 100
    assert out["detected"] == 3
    assert out["detection_delay_median_s"] == pytest.approx(3.0)
    assert out["true_escapes"] == pytest.approx(30.4)
    assert math.isnan(out["expected_escapes"])           # not reported by the monitor
    assert math.isnan(out["false_diversion_pct"])
    assert out["target_escape"] == "fail"
    assert out["target_waste"] == "pass"
    assert out["target_false_diversion"] == "n/a"
    assert out["escape_ci95_high"] == pytest.approx(wilson_interval(1, 4)[1])


def test_waste_target_fails_above_1_5_and_is_na_without_nonconforming_label():
    runs = _rows([dict(nonconforming=1000.0, waste=1600.0), dict(nonconforming=1000.0,
                                                                 waste=1400.0),
                  dict(nonconforming=1000.0, waste=1550.0)])
    out = summarize_case(runs, reference=False, nonconforming_expected=True)
    assert out["waste_ratio_median"] == pytest.approx(1.55)
    assert (out["target_escape"], out["target_waste"]) == ("pass", "fail")
    out = summarize_case(_rows([dict(waste=800.0), dict(waste=200.0)]), reference=False,
                         nonconforming_expected=False)
    assert math.isnan(out["waste_ratio_median"]) and math.isnan(out["escape_rate"])
    assert out["waste_median"] == 500.0
    assert out["target_waste"] == "n/a"


def test_expected_escapes_are_summed_when_every_run_reports_them():
    runs = _rows([dict(nonconforming=100.0, escapes=1.0, diversion={"expected_escapes": 0.7}),
                  dict(nonconforming=100.0, diversion={"expected_escapes": 0.2})])
    out = summarize_case(runs, reference=False, nonconforming_expected=True)
    assert out["expected_escapes"] == pytest.approx(0.9)
    assert out["true_escapes"] == 1.0


def test_false_diversion_of_the_no_fault_case_scales_to_8_hours():
    # 2 h runs: 3 and 1 diversion events -> 12 and 4 per 8 h; waste 0.2 % and 0.05 %
    runs = _rows([dict(produced=160000.0, waste=320.0, windows=3, duration=7200.0),
                  dict(produced=160000.0, waste=80.0, windows=1, duration=7200.0)],
                 start=None)
    out = summarize_case(runs, reference=True, nonconforming_expected=False)
    assert out["false_diversion_pct"] == pytest.approx(0.125)
    assert out["false_diversion_pct_max"] == pytest.approx(0.2)
    assert out["false_events_per_8h"] == pytest.approx(8.0)
    assert out["target_false_diversion"] == "fail"
    assert out["detected"] == 0 and math.isnan(out["detection_delay_median_s"])
    runs = _rows([dict(produced=160000.0, waste=160.0, duration=7200.0)], start=None)
    assert summarize_case(runs, reference=True, nonconforming_expected=False)[
        "target_false_diversion"] == "pass"                 # exactly 0.1 %


def test_summarize_needs_runs():
    with pytest.raises(ValueError, match="at least one run"):
        summarize_case([], reference=False, nonconforming_expected=True)


# --------------------------------------------------------------------------- Wilson


@pytest.mark.parametrize("n", [1, 5, 20, 200])
def test_wilson_matches_scipy(n):
    for k in sorted({0, 1, n // 2, n - 1, n}):
        if k < 0:
            continue
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_zero_of_n_upper_bound_closed_form():
    z2 = 1.959963984540054 ** 2
    assert wilson_interval(0, 200) == pytest.approx((0.0, z2 / (200 + z2)), rel=1e-12)


@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_estimate_and_grows_with_k(kn):
    k, n = kn
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    if k < n:
        lo2, hi2 = wilson_interval(k + 1, n)
        assert lo2 >= lo and hi2 >= hi


@pytest.mark.parametrize(("k", "n", "conf"), [(3, 2, 0.95), (-1, 5, 0.95), (0, 0, 0.95),
                                              (1, 5, 1.0)])
def test_wilson_rejects_bad_input(k, n, conf):
    with pytest.raises(ValueError):
        wilson_interval(k, n, conf)
