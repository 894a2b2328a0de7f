"""Bad scenario input: every problem is a ScenarioError naming file, field path, value and rule."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cmsim.config import Scenario, load_scenario, read_toml
from cmsim.errors import InputError, ScenarioError

ROOT = Path(__file__).resolve().parents[2]
GOOD = ROOT / "scenarios" / "api_feeder_stop.toml"


def good_raw() -> dict:
    return copy.deepcopy(read_toml(GOOD))


def problems_of(raw: dict, tmp_path: Path) -> tuple[ScenarioError, str]:
    """Validate ``raw`` as if read from tmp_path/scenario.toml; return the error and text."""
    src = tmp_path / "scenario.toml"
    with pytest.raises(ScenarioError) as info:
        load_scenario(raw, source=src)
    err = info.value
    assert isinstance(err, InputError) and isinstance(err, ValueError)
    assert err.source == str(src)
    return err, str(err)


def assert_problem(err: ScenarioError, path: str, value_repr: str, *rule_words: str) -> None:
    hits = [p for p in err.problems if p[0] == path]
    assert hits, f"no problem at {path!r}; got {[p[0] for p in err.problems]}"
    _, value, rule = hits[0]
    assert repr(value) == value_repr
    for w in rule_words:
        assert w in rule, (w, rule)
    # and the rendered message carries all four parts on one line
    line = f"  {path} = {value_repr}: {rule}"
    assert line in str(err)
    assert str(err).startswith(err.source)


def test_unknown_key_nested_with_suggestion(tmp_path):
    raw = good_raw()
    raw["feeders"][1]["mas_flow"] = 3
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, "feeders[1].mas_flow", "3", "unknown key", "did you mean 'mass_flow'",
                   "noise_rsd")


def test_unknown_key_top_level_and_in_rtd_table(tmp_path):
    raw = good_raw()
    raw["colour"] = "red"
    raw["press"]["feed_frame_rtd"]["n_tanks"] = 3
    raw["disturbances"][0]["duratoin"] = "5 s"
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, "colour", "'red'", "unknown key", "simulation")
    assert_problem(err, "press.feed_frame_rtd.n_tanks", "3", "unknown key",
                   "allowed: model, mean_residence_time")
    assert_problem(err, "disturbances[0].duratoin", "'5 s'", "did you mean 'duration'")


@pytest.mark.parametrize(
    ("mutate", "path", "value_repr", "words"),
    [
        (lambda r: r["simulation"].__setitem__("seed", "abc"), "simulation.seed", "'abc'",
         ["integer"]),
        (lambda r: r["simulation"].__setitem__("seed", True), "simulation.seed", "True",
         ["integer"]),
        (lambda r: r["simulation"].__setitem__("seed", 1.5), "simulation.seed", "1.5",
         ["integer"]),
        (lambda r: r["feeders"][0].__setitem__("name", 5), "feeders[0].name", "5", ["string"]),
        (lambda r: r["feeders"][0].__setitem__("role", "active"), "feeders[0].role", "'active'",
         ["'api'", "'excipient'", "'lubricant'"]),
        (lambda r: r.__setitem__("blender", "tis"), "blender", "'tis'", ["must be a table"]),
        (lambda r: r.__setitem__("feeders", {"name": "x"}), "feeders", "{'name': 'x'}",
         ["must be an array"]),
        (lambda r: r["simulation"].__setitem__("initial_state", "full"),
         "simulation.initial_state", "'full'", ["'steady'", "'empty'"]),
        (lambda r: r["feeders"][2].__setitem__("material", "Mg.St"), "feeders[2].material",
         "'Mg.St'", ["without '.'"]),
    ],
)
def test_wrong_type(tmp_path, mutate, path, value_repr, words):
    raw = good_raw()
    mutate(raw)
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, path, value_repr, *words)


@pytest.mark.parametrize(
    ("mutate", "path", "value_repr", "words"),
    [
        (lambda r: r["feeders"][0].__setitem__("noise_rsd", 2), "feeders[0].noise_rsd", "2",
         [">= 0 and < 1"]),
        (lambda r: r["feeders"][1].__setitem__("mass_flow", "-18 kg/h"),
         "feeders[1].mass_flow", "'-18 kg/h'", ["must be > 0 kg/s", "-0.005 kg/s"]),
        (lambda r: r["simulation"].__setitem__("dt", 0), "simulation.dt", "0", ["> 0 s"]),
        (lambda r: r["blender"]["rtd"].__setitem__("n_tanks", -1), "blender.rtd.n_tanks", "-1",
         ["> 0"]),
        (lambda r: r["press"].__setitem__("tablet_mass", "0 mg"), "press.tablet_mass", "'0 mg'",
         ["> 0 kg"]),
        (lambda r: r["diversion"].__setitem__("quantile", 0.7), "diversion.quantile", "0.7",
         ["< 0.5"]),
        (lambda r: r["specification"].__setitem__("api_content_limits", [1.02, 1.05]),
         "specification.api_content_limits", "[1.02, 1.05]", ["lo < 1 < hi"]),
        (lambda r: r["specification"].__setitem__("api_content_limits", [0.9]),
         "specification.api_content_limits[1]", "<missing>", ["array too short"]),
        (lambda r: r["disturbances"][0].__setitem__("start", "-5 s"), "disturbances[0].start",
         "'-5 s'", [">= 0 s"]),
    ],
)
def test_out_of_range(tmp_path, mutate, path, value_repr, words):
    raw = good_raw()
    mutate(raw)
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, path, value_repr, *words)


def test_bad_unit(tmp_path):
    raw = good_raw()
    raw["feeders"][0]["mass_flow"] = "2 kg"
    raw["simulation"]["duration"] = "15 minutes"
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, "feeders[0].mass_flow", "'2 kg'", "'kg' is a mass", "kg/h")
    assert_problem(err, "simulation.duration", "'15 minutes'", "unknown unit", "min")


def test_dangling_reference_and_duplicates(tmp_path):
    raw = good_raw()
    raw["disturbances"].append({"type": "feeder_stop", "feeder": "lactose", "start": "1 min",
                                "duration": "5 s"})
    raw["disturbances"].append({"type": "refill", "feeder": "API", "start": "2 min",
                                "lot": "L9"})
    raw["feeders"][2]["name"] = "mcc"
    raw["feeders"][2]["material"] = "MCC"
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, "disturbances[1].feeder", "'lactose'", "no feeder of that name",
                   "api, mcc")
    assert_problem(err, "disturbances[2].feeder", "'API'", "no feeder of that name")
    assert_problem(err, "feeders[2].name", "'mcc'", "duplicate feeder name", "feeders[1]")
    assert_problem(err, "feeders[2].material", "'MCC'", "duplicate material")


def test_api_feeder_count(tmp_path):
    raw = good_raw()
    raw["feeders"][0]["role"] = "excipient"
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, "feeders", "['excipient', 'excipient', 'lubricant']",
                   "exactly one feeder must have role = \"api\"")
    raw = good_raw()
    raw["feeders"][1]["role"] = "api"
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, "feeders[1].role", "'api'", "exactly one", "feeders[0]")


def test_cross_field_rules(tmp_path):
    raw = good_raw()
    raw["simulation"]["dt"] = "20 min"
    raw["disturbances"][0]["start"] = "1 h"
    raw["feeders"][0]["hopper"] = {"capacity": "1 kg", "initial": "2 kg", "refill_rate":
                                   "1 kg/min", "refill_low": 0.8, "refill_high": "50 %"}
    raw["pat"]["sample_period"] = "0.1 s"
    raw["blender"].pop("speed")
    raw["disturbances"].append({"type": "blender_speed", "start": "5 min", "speed": "150 rpm"})
    raw["disturbances"].append({"type": "refill", "feeder": "mcc", "start": "5 min",
                                "lot": "M2", "mass": "1 kg"})
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, "simulation.dt", "'20 min'", "<= simulation.duration (900 s)")
    assert_problem(err, "disturbances[0].start", "'1 h'", "< simulation.duration (900 s)")
    assert_problem(err, "feeders[0].hopper.refill_high", "'50 %'", "> refill_low (0.8)")
    assert_problem(err, "feeders[0].hopper.initial", "'2 kg'", "<= capacity (1 kg)")
    assert_problem(err, "pat.sample_period", "'0.1 s'", ">= simulation.dt")
    assert_problem(err, "disturbances[1].type", "'blender_speed'", "blender.speed")
    assert_problem(err, "disturbances[2].mass", "'1 kg'", "no [feeders.hopper]")


def test_missing_and_unknown_tags(tmp_path):
    raw = good_raw()
    del raw["press"]["tablet_mass"]
    raw["blender"]["rtd"]["model"] = "tanks_in_seres"
    raw["disturbances"].append({"type": "explode", "start": 1})
    raw["disturbances"].append({"feeder": "api", "start": 1})
    raw["press"]["transfer_rtd"] = {"model": "pfr"}
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, "press.tablet_mass", "<missing>", "required")
    assert_problem(err, "press.transfer_rtd.delay", "<missing>", "required")
    assert_problem(err, "blender.rtd.model", "'tanks_in_seres'", "did you mean 'tanks_in_series'")
    assert_problem(err, "disturbances[1].type", "'explode'", "'feeder_stop'", "'press_stop'")
    assert_problem(err, "disturbances[2].type", "<missing>", "required")


def test_all_problems_are_collected_in_file_order(tmp_path):
    raw = good_raw()
    raw["simulation"]["seed"] = "x"
    raw["feeders"][1]["mass_flow"] = "fast"
    raw["disturbances"][0]["feeder"] = "nope"
    err, _ = problems_of(raw, tmp_path)
    assert [p[0] for p in err.problems] == [
        "simulation.seed", "feeders[1].mass_flow", "disturbances[0].feeder"]
    assert "3 problem(s)" in str(err)


def test_rtd_file_and_parameter_set_errors(tmp_path):
    raw = good_raw()
    raw["blender"]["rtd"] = {"model": "empirical", "file": "missing.csv"}
    raw["press"]["feed_frame_rtd"] = {"model": "model", "name": "no_such_set"}
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, "blender.rtd.file", "'missing.csv'", "file not found",
                   str(tmp_path / "missing.csv"))
    assert_problem(err, "press.feed_frame_rtd.name", "'no_such_set'", "no parameter set",
                   "blender_tis5_60s")
    (tmp_path / "bad.csv").write_text("t,e\n0,0\n10,1\n5,0\n")
    raw["blender"]["rtd"]["file"] = "bad.csv"
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, "blender.rtd.file", "'bad.csv'", "strictly increasing")
    (tmp_path / "bad.csv").write_text("time,conc\n0,0\n")
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, "blender.rtd.file", "'bad.csv'", "'t'", "'e'")


def test_broken_parameter_set(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.toml").write_text(
        'source = "test"\n[rtd]\nmodel = "cstr"\nmean_residence_time = "-3 s"\n')
    raw = good_raw()
    raw["blender"]["rtd"] = {"model": "model", "name": "mine"}
    err, _ = problems_of(raw, tmp_path)
    assert_problem(err, "blender.rtd.name", "'mine'", "mine.toml", "rtd.mean_residence_time")


def test_toml_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[simulation]\nduration = 15 min\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    assert err.source == str(path)
    ((where, value, rule),) = err.problems
    assert where.startswith("line 3, column ")
    col = int(where.rsplit(" ", 1)[1])
    assert value == "duration = 15 min"
    assert value[col - 1] == "m"  # tomllib stops at the unit after the number
    assert rule.startswith("TOML syntax error")
    assert str(path) in str(err) and where in str(err)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "nope.toml")
    with pytest.raises(ScenarioError, match="is a directory"):
        load_scenario(tmp_path)
    (tmp_path / "latin1.toml").write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ScenarioError, match="UTF-8"):
        load_scenario(tmp_path / "latin1.toml")
    with pytest.raises(ScenarioError, match="must be a file path, a dict or a Scenario"):
        load_scenario(42)  # type: ignore[arg-type]


def test_direct_model_validate_still_applies_cross_field_rules():
    raw = good_raw()
    raw["disturbances"][0]["feeder"] = "nope"
    with pytest.raises(ValidationError, match="disturbances\\[0\\].feeder"):
        Scenario.model_validate(raw)


def test_good_file_has_no_problems():
    raw = tomllib.loads(GOOD.read_text())
    assert load_scenario(raw, source=GOOD).name == "api_feeder_stop"


# --------------------------------------------------------------------------- fuzz


def _leaf_paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaf_paths(v, (*prefix, k))
    elif isinstance(node, list) and node and isinstance(node[0], dict):
        for i, v in enumerate(node):
            yield from _leaf_paths(v, (*prefix, i))
    else:
        yield prefix


LEAVES = list(_leaf_paths(read_toml(GOOD)))
toml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats()
    | st.text(max_size=12) | st.sampled_from(["2 kg/h", "5 %", "-1 s", "3 kg", "api", "cstr"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=5,
)


@settings(max_examples=60, deadline=None)
@given(leaf=st.sampled_from(LEAVES), value=toml_values)
def test_any_garbage_value_gives_scenario_error_or_valid_scenario(leaf, value):
    raw = good_raw()
    node = raw
    for k in leaf[:-1]:
        node = node[k]
    node[leaf[-1]] = value
    try:
        s = load_scenario(raw)
    except ScenarioError as err:
        assert err.problems
        for path, _, rule in err.problems:
            assert isinstance(path, str) and rule
        # every path starts at a key of the file (no invented or garbled paths)
        for path, _, _ in err.problems:
            assert re.split(r"[.\[]", path)[0] in raw, (path, err.problems)
    else:
        assert isinstance(s, Scenario)


def test_nir_feedback_sensor_fields_conflict_with_a_pat_table():
    from cmsim.config import load_scenario
    from cmsim.errors import ScenarioError

    raw = load_scenario("control_nir_feedback").to_dict()
    assert isinstance(raw.get("pat"), dict)
    load_scenario(raw, source="nir.toml")  # the resolved scenario itself is valid
    raw.setdefault("control", {}).setdefault("nir_feedback", {})["latency"] = "3 s"
    with pytest.raises(ScenarioError) as info:
        load_scenario(raw, source="nir.toml")
    text = str(info.value)
    assert "control.nir_feedback.latency" in text and "[pat]" in text


def test_a_zero_dt_is_reported_once_even_with_control_periods():
    """The control periods are checked in whole ticks of dt; a dt of 0 is its own problem
    (it used to divide by zero in that check)."""
    with pytest.raises(ScenarioError) as info:
        load_scenario("scenarios/control_nir_feedback.toml", overrides=["simulation.dt=0 s"])
    assert [p[0] for p in info.value.problems] == ["simulation.dt"]


def test_more_tanks_than_a_plug_flow_needs_are_refused():
    with pytest.raises(ScenarioError) as info:
        load_scenario("scenarios/api_feeder_half.toml", overrides=["blender.rtd.n_tanks=1e6"])
    (path, value, rule), = info.value.problems
    assert path == "blender.rtd.n_tanks" and value == 1e6
    assert "<= 100000" in rule and "pfr" in rule
