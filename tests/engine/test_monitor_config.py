"""Scenario options of [diversion] and [monitor] reach the monitor through cmsim.run."""

import pytest

import cmsim
from cmsim.api import monitor_config
from cmsim.config import load_scenario
from cmsim.errors import ScenarioError

# these tests pin down the rule-based monitor of cmsim 0.1 (diversion.policy = "rules")
pytestmark = pytest.mark.usefixtures("rules_policy")

SHORT = ["simulation.duration=12 min"]


def _window(result):
    (event,) = result.summary()["diversion_events"]
    return event["start_s"], event["end_s"]


def test_rtd_uncertainty_from_the_scenario_widens_the_diversion_window():
    nominal = cmsim.run("api_feeder_stop", overrides=SHORT)
    wide = cmsim.run("api_feeder_stop", overrides=SHORT + ["diversion.rtd_uncertainty=0.2"])
    (s0, e0), (s1, e1) = _window(nominal), _window(wide)
    assert s1 < s0 and e1 > e0
    assert wide.summary()["tablets"]["nonconforming_accepted"] == 0
    assert wide.summary()["tablets"]["diverted"] > nominal.summary()["tablets"]["diverted"]


def test_monitor_options_map_onto_the_monitor_config():
    sc = load_scenario("api_feeder_stop", overrides=[
        "diversion.rtd_uncertainty=0.1", "monitor.chart_action=divert",
        "monitor.feeder_reference=nominal"])
    cfg = monitor_config(sc)
    assert (cfg.rtd_uncertainty, cfg.chart_action, cfg.feeder_reference) == \
        (0.1, "divert", "nominal")


def test_unknown_chart_action_is_a_field_error():
    with pytest.raises(ScenarioError, match=r"monitor\.chart_action"):
        load_scenario("api_feeder_stop", overrides=["monitor.chart_action=ignore"])


def test_summary_diversion_events_name_their_methods():
    result = cmsim.run("api_feeder_stop", overrides=SHORT)
    (event,) = result.summary()["diversion_events"]
    methods = event["method"].split("+")
    assert methods and all(methods)
    window_methods = {w["method"] for rec in result.event_records() if rec["type"] == "diversion"
                      for w in rec["data"]["windows"]}
    assert set(methods) == window_methods


def test_every_monitor_key_reaches_the_monitor_config():
    import dataclasses
    import inspect

    from cmsim.config.schema import Monitor
    from cmsim.monitor import setup
    from cmsim.monitor.pat import MonitorConfig

    config_fields = {f.name for f in dataclasses.fields(MonitorConfig)}
    mapped_elsewhere = {"action_limits": "limits"}
    # keys of the line-state estimator only: read by cmsim.monitor.setup
    estimator_only = {"model_sd", "lot_assay_sd", "fault_sd", "innovation_cusum_k",
                      "innovation_cusum_h", "innovation_shewhart_L"}
    source = inspect.getsource(setup)
    for key in Monitor.model_fields:
        if key in estimator_only:
            assert f"mon.{key}" in source, key
        else:
            assert mapped_elsewhere.get(key, key) in config_fields, key
    # non-default values of the copied keys arrive unchanged
    sc = load_scenario("api_feeder_stop", overrides=[
        "monitor.persistence=5", "monitor.cusum=true", "monitor.cusum_h=4.5",
        "monitor.load_cell_window=12 s", "monitor.action_limits=[0.96, 1.04]"])
    cfg = monitor_config(sc)
    assert (cfg.persistence, cfg.cusum, cfg.cusum_h, cfg.load_cell_window) == (5, True, 4.5, 12.0)
    assert cfg.limits == (0.96, 1.04)
