"""``--set path=value`` overrides and field paths."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsim.config import apply_overrides, load_scenario, parse_field_path, read_toml
from cmsim.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[2]
GOOD = ROOT / "scenarios" / "api_feeder_stop.toml"
RAW = read_toml(GOOD)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("simulation.duration", ["simulation", "duration"]),
        ("feeders[0].mass_flow", ["feeders", 0, "mass_flow"]),
        ("feeders[api].hopper.capacity", ["feeders", "[api]", "hopper", "capacity"]),
        ("press.transfer_rtd.stages[1].delay", ["press", "transfer_rtd", "stages", 1, "delay"]),
        ("disturbances[-1].start", ["disturbances", -1, "start"]),
        (" name ", ["name"]),
    ],
)
def test_parse_field_path(text, parts):
    assert parse_field_path(text) == parts


@pytest.mark.parametrize("text", ["", ".a", "a..b", "a[]", "a[0", "a]"])
def test_parse_field_path_rejects_malformed(text):
    with pytest.raises(ValueError):
        parse_field_path(text)


def test_overrides_apply_and_convert():
    s = load_scenario(GOOD, overrides=[
        "simulation.duration=2 h",
        "feeders[0].mass_flow=3 kg/h",
        "feeders[mcc].noise_rsd=0.02",
        "simulation.seed=17",
        "specification.api_content_limits=[0.9, 1.1]",
        "feeders[1].lot=\"M-7\"",
        "disturbances[0].start = 10 min",
    ])
    assert s.simulation.duration == 7200.0
    assert s.feeders[0].mass_flow == pytest.approx(3 / 3600, rel=1e-15)
    assert s.feeder("mcc").noise_rsd == 0.02
    assert s.simulation.seed == 17
    assert s.specification.api_content_limits == (0.9, 1.1)
    assert s.feeders[1].lot == "M-7"
    assert s.disturbances[0].start == 600.0
    # target API content follows the new nominal flows: 3 / (3 + 17.9 + 0.1)
    assert s.target_api_fraction == pytest.approx(3 / 21, rel=1e-12)


def test_overrides_do_not_touch_the_input_and_create_tables():
    raw = copy.deepcopy(RAW)
    del raw["pat"]
    out = apply_overrides(raw, ["pat.noise_sd=0.5 %", "simulation.initial_state=empty"])
    assert "pat" not in raw and raw["simulation"].get("initial_state") is None
    assert out["pat"] == {"noise_sd": "0.5 %"}
    s = load_scenario(out)
    assert s.pat.noise_sd == pytest.approx(0.005) and s.pat.sample_period == 2.0
    assert s.simulation.initial_state == "empty"


def test_override_values_are_toml_literals_when_possible():
    out = apply_overrides({"a": {}}, ["a.i=3", "a.f=2.5", "a.b=true", "a.l=[1, 2]",
                                      "a.s='x y'", "a.u=2 h", "a.t={ k = 1 }"])
    assert out["a"] == {"i": 3, "f": 2.5, "b": True, "l": [1, 2], "s": "x y", "u": "2 h",
                        "t": {"k": 1}}


def test_bad_override_paths_are_collected():
    with pytest.raises(ScenarioError) as info:
        apply_overrides(RAW, [
            "feeders[7].mass_flow=1",
            "simulation.duration.value=3",
            "name[0]=x",
            "feeders[lactose].mass_flow=1",
            "no_equals_sign",
            "a..b=1",
        ], source="scenario.toml")
    err = info.value
    assert err.source == "scenario.toml"
    paths = [p[0] for p in err.problems]
    assert paths == ["--set feeders[7].mass_flow", "--set simulation.duration.value",
                     "--set name[0]", "--set feeders[lactose].mass_flow",
                     "--set no_equals_sign", "--set a..b"]
    rules = [p[2] for p in err.problems]
    assert "out of range" in rules[0] and "3 element(s)" in rules[0]
    assert "not a table" in rules[1]
    assert "not an array" in rules[2]
    assert "'lactose'" in rules[3] and "api" in rules[3]
    assert "path=value" in rules[4]


def test_override_with_invalid_value_reports_field_path():
    with pytest.raises(ScenarioError) as info:
        load_scenario(GOOD, overrides=["feeders[api].mass_flow=2 kg", "simulation.dtt=1"])
    paths = {p[0] for p in info.value.problems}
    assert paths == {"feeders[0].mass_flow", "simulation.dtt"}
    assert info.value.source == str(GOOD)


def test_overrides_on_a_scenario_object():
    s = load_scenario(GOOD)
    assert load_scenario(s) is s
    t = load_scenario(s, overrides=["simulation.duration=20 min"])
    assert t.simulation.duration == 1200.0 and s.simulation.duration == 900.0
    assert t.source == s.source


@settings(max_examples=25, deadline=None)
@given(seconds=st.floats(min_value=1.0, max_value=1e6, allow_nan=False))
def test_duration_override_property(seconds):
    raw = apply_overrides(RAW, [f"simulation.duration={seconds!r} s",
                                "disturbances[0].start=0"])
    s = load_scenario(raw)
    assert s.simulation.duration == seconds
    assert s.n_ticks == round(seconds / 0.5)
