"""Control charts on the estimator's innovations (monitor/rules.py) and the [monitor] keys
that act on them: restart semantics, chunk invariance, warn and divert, the retired
policy."""

from __future__ import annotations

import tomllib
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cmsim
from cmsim.config import load_scenario
from cmsim.errors import ScenarioError, ScenarioWarning
from cmsim.monitor.charts import CUSUMChart, EWMAChart, ShewhartChart
from cmsim.monitor.rules import ChartRule, MSPCRule

STOP = "scenarios/api_feeder_stop.toml"


def _restarting_cusum(x: np.ndarray, k: float, h: float) -> list[int]:
    """Indices of the signals of a two-sided tabular CUSUM restarted after each (plain loop)."""
    hi = lo = 0.0
    out = []
    for i, v in enumerate(x.tolist()):
        hi, lo = max(0.0, hi + v - k), max(0.0, lo - v - k)
        if hi > h or lo > h:
            out.append(i)
            hi = lo = 0.0
    return out


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.lists(st.integers(1, 1999), max_size=6),
       st.floats(0.0, 1.5), st.sampled_from([1, 7, 512]))
def test_chart_rule_restarts_after_each_signal_in_any_chunking(seed, cuts, shift, block):
    x = np.random.default_rng(seed).standard_normal(2000) + shift
    t = np.arange(x.size) * 2.0
    rule = ChartRule("cusum", CUSUMChart(0.0, 1.0, 0.5, 4.0))
    rule.block = block  # readings run at a time: no effect on the signals
    edges = [0, *sorted(set(cuts)), x.size]
    got = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        got += rule.feed(t[a:b], x[a:b])
    ref = _restarting_cusum(x, 0.5, 4.0)
    assert [s.time_s for s in got] == [float(t[i]) for i in ref]
    assert all(s.rule == "cusum" and s.data["innovation"] == x[int(s.time_s / 2)]
               for s in got)


def test_shewhart_rule_signals_every_reading_beyond_its_limit():
    x = np.array([0.0, 3.5, 3.5, -0.1, -3.2, 2.9])
    got = ChartRule("shewhart", ShewhartChart(0.0, 1.0, 3.0)).feed(np.arange(6.0), x)
    assert [s.time_s for s in got] == [1.0, 2.0, 4.0]


def test_ewma_rule_signals_a_one_sigma_shift_within_a_few_readings():
    rule = ChartRule("ewma", EWMAChart(0.0, 1.0, 0.2, 2.86))
    x = np.random.default_rng(3).standard_normal(400)
    x[200:] += 1.0
    times = [s.time_s for s in rule.feed(np.arange(400.0), x)]
    # ARL1 of EWMA(0.2, 2.86) at a 1-sigma shift is about 11 readings
    assert any(200.0 <= t <= 260.0 for t in times)


def test_mspc_rule_leaves_out_constant_variables_and_signals_onsets():
    rng = np.random.default_rng(0)
    n = 600
    t = np.arange(n) * 2.0
    x = np.column_stack((rng.standard_normal(n), 0.05 * rng.standard_normal(n),
                         np.zeros(n)))
    x[400:420, 1] += 0.5  # a flow residual of 10 sigma for 20 readings
    rule = MSPCRule(["innovation", "flow:a", "flow:b"], (0.0, 400.0), 0.001)
    got = []
    for a in range(0, n, 37):
        got += rule.feed(t[a:a + 37], x[a:a + 37])
    assert rule.record["variables"] == ["innovation", "flow:a"]  # flow:b never moved
    assert rule.record["n_observations"] == 200
    first = [s for s in got if s.time_s >= 800.0][0]
    assert first.time_s == 800.0 and first.data["largest_deviation"] == "flow:a"
    # one onset for the whole excursion (no memory, no repeated signals while beyond)
    assert len([s for s in got if 800.0 <= s.time_s < 840.0]) == 1


# --------------------------------------------------------------------------- in the monitor


def _biased(policy: str, action: str, **monitor) -> dict:
    """API stop scenario without the stop: a 0.3 % w/w NIR bias (3 % of target) from 400 s
    (the material is in limits; the readings no longer fit the model)."""
    with open(STOP, "rb") as fh:
        d = tomllib.load(fh)
    d["simulation"]["duration"] = "15 min"
    d["pat"]["noise_sd"] = "0.25 %"
    d["disturbances"] = [{"type": "nir_fault", "kind": "bias", "start": "400 s",
                          "value": 0.003}]
    d["diversion"]["policy"] = policy
    d["monitor"] = {"ewma": True, "cusum": True, "chart_action": action,
                    "innovation_cusum_h": 1e6, **monitor}  # the estimator's CUSUM off
    return d


@pytest.mark.parametrize("policy", ["risk", "quantile"])
def test_chart_signals_warn_or_divert_as_chart_action_says(policy):
    warn = cmsim.run(_biased(policy, "warn"), seed=1)
    divert = cmsim.run(_biased(policy, "divert"), seed=1)
    charts = {"ewma", "cusum"}
    for r in (warn, divert):
        signals = [e for e in r.event_log if e["type"] == "spc_signal"]
        after = [e for e in signals if e["time_s"] >= 400.0]
        assert after and after[0]["time_s"] < 460.0  # found within 30 readings
        assert all(e["data"]["rule"] in charts for e in signals)
        # out of the state of control at the first signal after the fault
        changes = r.metadata["monitor"]["state_changes"]
        assert [after[0]["time_s"], False] in changes
        assert r.summary()["tablets"]["nonconforming_produced"] == 0.0
    assert not any(charts & set(ev["trigger"].split("+")) for ev in warn.diversion_events)
    assert all(e["data"]["action"] == "warn" for e in warn.event_log
               if e["type"] == "spc_signal")
    diverting = [ev for ev in divert.diversion_events
                 if charts & set(ev["trigger"].split("+"))]
    assert diverting and diverting[0]["start_s"] >= 300.0
    assert divert.diverted.sum() > warn.diverted.sum()
    assert not (warn.diverted & ~divert.diverted).any()  # divert only adds windows


def test_a_diverting_chart_opens_the_pat_window_of_its_signal():
    """The window of a chart signal at reading time t: probe-to-gate RTD quantiles from the
    material read at t to clear_readings sample periods later (the model-mismatch window of
    the quantile policy)."""
    from cmsim.monitor.windows import pat_window

    r = cmsim.run(_biased("risk", "divert"), seed=1)
    sig = next(e for e in r.event_log if e["type"] == "spc_signal" and e["time_s"] >= 400.0)
    windows = [w for e in r.event_log if e["type"] == "diversion"
               for w in e["data"]["windows"] if w["decision_s"] == sig["time_s"]]
    assert windows
    sc = load_scenario(_biased("risk", "divert"))
    probe = cmsim.rtd.Series(sc.press.transfer_rtd.build(), sc.press.feed_frame_rtd.build())
    t = sig["time_s"]
    exp = pat_window(t, t + 3 * 2.0, 2.0, probe, 0.005, latency=3.0, margin_start=5.0,
                     margin_end=5.0)
    assert windows[0]["start_s"] == pytest.approx(exp.start_s, abs=1e-9)
    assert windows[0]["end_s"] == pytest.approx(exp.end_s, abs=1e-9)
    assert windows[0]["method"] == "PAT" and windows[0]["trigger"] == sig["data"]["rule"]


def test_pat_grace_takes_the_line_out_of_control_while_the_nir_is_blind():
    d = _biased("risk", "warn", ewma=False, cusum=False, pat_grace="10 s")
    d["disturbances"] = [{"type": "nir_fault", "kind": "dropout", "start": "400 s",
                          "end": "460 s"}]
    r = cmsim.run(d, seed=1)
    changes = r.metadata["monitor"]["state_changes"]
    # the last valid reading before the blackout is at 398 s at the latest: out of control
    # once it is 10 s old, back with the first reading after 460 s
    out = [t for t, ok in changes if not ok]
    back = [t for t, ok in changes if ok]
    assert out and 398.0 < out[0] <= 410.0
    assert back and 460.0 <= back[0] <= 466.0
    assert not r.diverted.any()  # it diverts nothing by itself


def test_keys_of_the_retired_monitor_load_and_change_nothing():
    base = cmsim.run(STOP, overrides=["pat.noise_sd=0.25 %"], seed=2)
    inert = ["monitor.soft_sensor=false", "monitor.chart_sigma=0.02",
             "monitor.tablet_weight_period=0", "monitor.tablet_weight_rsd=0.01"]
    with warnings.catch_warnings():  # the defaults, as a dump of a scenario holds them
        warnings.simplefilter("error", ScenarioWarning)
        cmsim.config.load_scenario(cmsim.config.load_scenario(STOP).to_dict())
    with pytest.warns(ScenarioWarning) as caught:  # each named, with why it does nothing
        old = cmsim.run(STOP, overrides=["pat.noise_sd=0.25 %", *inert], seed=2)
    said = " ".join(str(w.message) for w in caught)
    for item in inert:
        assert f"{item.split('=')[0]} = " in said
    assert said.count("has no effect") == len(inert)
    np.testing.assert_array_equal(base.diverted, old.diverted)
    assert base.diversion_events == old.diversion_events


def test_the_retired_rules_policy_is_refused_with_its_replacements_named(tmp_path):
    with open(STOP, "rb") as fh:
        text = fh.read().decode()
    p = tmp_path / "old.toml"
    p.write_text(text.replace("[diversion]", '[diversion]\npolicy = "rules"'))
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    msg = str(err.value)
    assert "old.toml" in msg and "diversion.policy = 'rules'" in msg
    assert "retired" in msg and "'quantile'" in msg and "'risk'" in msg
