"""Shipped scenarios and parameter sets: they load, match the top-level copies, and hash stably."""

from __future__ import annotations

import copy
import math
import pickle
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsim.config import (
    ParameterSet,
    Scenario,
    find_parameter_set,
    load_scenario,
    read_toml,
    shipped_scenarios,
)

ROOT = Path(__file__).resolve().parents[2]
TOP_SCENARIOS = ROOT / "scenarios"
TOP_MODELS = ROOT / "models"
SHIPPED = Path(str(resources.files("cmsim.data")))

REQUIRED = {
    "baseline", "api_feeder_stop", "api_feeder_step", "api_feeder_half", "refill_lot_change",
    "excipient_feeder_drift", "blender_speed_step", "press_stop", "start_up_shut_down",
}

TOP_FILES = sorted(TOP_SCENARIOS.glob("*.toml"))


def test_required_scenarios_exist_in_both_places():
    assert REQUIRED <= {p.stem for p in TOP_FILES}
    assert set(shipped_scenarios()) == {p.stem for p in TOP_FILES}


@pytest.mark.parametrize("folder", ["scenarios", "models"])
def test_shipped_copies_are_identical(folder):
    top = {p.name: p.read_bytes() for p in (ROOT / folder).iterdir() if p.is_file()}
    shipped = {p.name: p.read_bytes() for p in (SHIPPED / folder).iterdir() if p.is_file()}
    assert top, f"{folder}/ is empty"
    assert top == shipped


@pytest.mark.parametrize("path", TOP_FILES, ids=lambda p: p.stem)
def test_every_scenario_loads_with_the_example_line(path):
    top = load_scenario(path)
    shipped = load_scenario(shipped_scenarios()[path.stem])
    assert top.sha256() == shipped.sha256()
    assert top.name == path.stem
    # example line: API 2 of 20 kg/h, 250 mg tablets -> 10 % w/w and 80,000 tablets/h [V]
    assert sum(f.role == "api" for f in top.feeders) == 1
    assert top.total_mass_flow == pytest.approx(20 / 3600, rel=1e-12)
    assert top.target_api_fraction == pytest.approx(0.1, rel=1e-12)
    assert top.tablet_rate * 3600 == pytest.approx(80_000, rel=1e-12)
    assert top.specification.api_content_limits == (0.95, 1.05)
    # the line RTD means of the example: 60 + 10 + 30 = 100 s
    means = [t.build().mean for t in (top.blender.rtd, top.press.transfer_rtd,
                                      top.press.feed_frame_rtd)]
    assert sum(means) == pytest.approx(100.0, rel=1e-9)
    assert top.source == path.resolve()


def test_scenario_values_converted_to_si():
    s = load_scenario(TOP_SCENARIOS / "api_feeder_stop.toml")
    assert s.simulation.duration == 900.0
    assert s.simulation.dt == 0.5
    assert s.n_ticks == 1800
    (d,) = s.disturbances
    assert (d.type, d.feeder, d.start, d.duration) == ("feeder_stop", "api", 300.0, 10.0)
    assert s.press.tablet_mass == pytest.approx(250e-6, rel=1e-15)
    assert s.feeder("mcc").mass_flow == pytest.approx(17.9 / 3600, rel=1e-15)
    drift = load_scenario(TOP_SCENARIOS / "excipient_feeder_drift.toml").disturbances[0]
    assert drift.rate_per_hour == pytest.approx(-0.02) and drift.volumetric is True
    start_up = load_scenario(TOP_SCENARIOS / "start_up_shut_down.toml")
    assert start_up.simulation.initial_state == "empty"
    assert {d.feeder for d in start_up.disturbances} == {f.name for f in start_up.feeders}


def test_baseline_refills_about_every_ten_minutes():
    s = load_scenario(TOP_SCENARIOS / "baseline.toml")
    assert s.simulation.duration == 8 * 3600
    for f in s.feeders:
        h = f.hopper
        assert h is not None
        period = (h.refill_high - h.refill_low) * h.capacity / f.mass_flow
        assert 8 * 60 < period < 12 * 60, (f.name, period)
        assert 0 < f.noise_rsd < 0.1


MODEL_MEANS = {
    "blender_tis5_60s": 60.0,
    "blender_gericke_like_axial": 60.0,
    "press_feed_frame_cstr30": 30.0,
    "press_transfer_pfr10": 10.0,
}


@pytest.mark.parametrize("path", sorted(TOP_MODELS.glob("*.toml")), ids=lambda p: p.stem)
def test_parameter_sets_validate_and_build(path):
    raw = tomllib.loads(path.read_text())
    ps = ParameterSet.model_validate(raw, context={"base_dir": path.parent})
    assert len(ps.source) > 20  # states where the numbers come from
    model = ps.rtd.build()
    if path.stem in MODEL_MEANS:
        assert model.mean == pytest.approx(MODEL_MEANS[path.stem], rel=1e-12)


def test_empirical_example_is_the_tis5_curve():
    ps = ParameterSet.model_validate(
        read_toml(TOP_MODELS / "blender_empirical_example.toml"), context={"base_dir": TOP_MODELS}
    )
    t, e = ps.rtd.t, ps.rtd.e
    area = sum(0.5 * (e[i] + e[i + 1]) * (t[i + 1] - t[i]) for i in range(len(t) - 1))
    mean = sum(0.5 * (t[i] * e[i] + t[i + 1] * e[i + 1]) * (t[i + 1] - t[i])
               for i in range(len(t) - 1)) / area
    assert area == pytest.approx(1.0, abs=1e-3)  # TIS(5, 60 s) is normalised
    assert mean == pytest.approx(60.0, abs=0.1)


def test_find_parameter_set_order(tmp_path):
    assert find_parameter_set("blender_tis5_60s", tmp_path) == (
        SHIPPED / "models" / "blender_tis5_60s.toml"
    )
    local = tmp_path / "models" / "blender_tis5_60s.toml"
    local.parent.mkdir()
    local.write_text((TOP_MODELS / "blender_tis5_60s.toml").read_text())
    assert find_parameter_set("blender_tis5_60s.toml", tmp_path) == local
    assert find_parameter_set("no_such_model", tmp_path) is None


# --------------------------------------------------------------------------- identity


@pytest.fixture
def baseline() -> Scenario:
    return load_scenario(TOP_SCENARIOS / "baseline.toml")


def test_pickle_round_trip(baseline):
    again = pickle.loads(pickle.dumps(baseline))
    assert again == baseline
    assert again.sha256() == baseline.sha256()
    assert again.source == baseline.source
    assert again.blender.rtd.build().mean == pytest.approx(60.0)


def test_to_dict_round_trip(baseline):
    d = baseline.to_dict()
    again = load_scenario(d, source=baseline.source)
    assert again == baseline
    assert again.sha256() == baseline.sha256()


def test_sha256_ignores_spelling_and_key_order(tmp_path):
    text = (TOP_SCENARIOS / "api_feeder_stop.toml").read_text()
    a = load_scenario(TOP_SCENARIOS / "api_feeder_stop.toml")
    respelled = text.replace('duration = "15 min"', "duration = 900").replace(
        'start = "300 s"', 'start = "5 min"')
    assert respelled != text
    (tmp_path / "b.toml").write_text(respelled)
    b = load_scenario(tmp_path / "b.toml")
    assert b.sha256() == a.sha256()
    raw = read_toml(TOP_SCENARIOS / "api_feeder_stop.toml")
    shuffled = dict(reversed(list(raw.items())))
    assert load_scenario(shuffled).sha256() == a.sha256()


def test_sha256_sees_value_changes_and_referenced_files(tmp_path, baseline):
    changed = load_scenario(baseline, overrides=["feeders[0].noise_rsd=0.05"])
    assert changed.sha256() != baseline.sha256()
    # same scenario text, but its named parameter set differs -> different hash
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "models").mkdir()
    scn = tmp_path / "scenarios" / "baseline.toml"
    scn.write_text((TOP_SCENARIOS / "baseline.toml").read_text())
    for p in TOP_MODELS.iterdir():
        (tmp_path / "models" / p.name).write_bytes(p.read_bytes())
    assert load_scenario(scn).sha256() == baseline.sha256()
    ps = tmp_path / "models" / "blender_tis5_60s.toml"
    ps.write_text(ps.read_text().replace("n_tanks = 5", "n_tanks = 6"))
    other = load_scenario(scn)
    assert other.blender.rtd.resolved.n_tanks == 6
    assert other.sha256() != baseline.sha256()


def test_defaults_apply():
    raw = read_toml(TOP_SCENARIOS / "api_feeder_stop.toml")
    raw = copy.deepcopy(raw)
    del raw["pat"], raw["diversion"], raw["specification"]
    raw["simulation"] = {"duration": "10 min"}
    s = load_scenario(raw)
    assert s.pat is None and s.diversion is None
    assert s.specification.api_content_limits == (0.95, 1.05)
    assert s.simulation.dt == 0.5 and s.simulation.seed is None
    assert s.simulation.initial_state == "steady" and s.simulation.trace_epsilon == 1e-6
    f = s.feeder("mcc")
    assert (f.role, f.lot, f.noise_rsd, f.noise_correlation_time) == ("excipient", "L0", 0.0, 2.0)
    assert s.press.gate_delay == 0.5 and s.blender.speed_exponent == 0.5
    assert s.source is None


def test_empirical_and_series_tables(tmp_path):
    csv = tmp_path / "tracer.csv"
    csv.write_text("t,e\n0,0\n10,0.05\n20,0.05\n30,0\n")
    raw = read_toml(TOP_SCENARIOS / "api_feeder_stop.toml")
    raw["blender"]["rtd"] = {
        "model": "series",
        "stages": [{"model": "empirical", "file": "tracer.csv"},
                   {"model": "model", "name": "press_transfer_pfr10"}],
    }
    s = load_scenario(raw, source=tmp_path / "x.toml")
    stage0 = s.blender.rtd.stages[0]
    assert stage0.t == (0.0, 10.0, 20.0, 30.0)
    assert stage0.path == csv.resolve()
    # the data travel with the object: the CSV is not needed after validation
    blob = pickle.dumps(s)
    csv.unlink()
    again = pickle.loads(blob)
    assert again.blender.rtd.stages[0].e == (0.0, 0.05, 0.05, 0.0)
    # trapezoid of that E is symmetric about 15 s: mean 15 s, plus the 10 s PFR
    assert again.blender.rtd.build().mean == pytest.approx(25.0, rel=1e-6)


CONTRACT_EXAMPLE = '''
name = "api-stop"

[simulation]
duration = "1 h"
dt = "0.5 s"
seed = 1

[[feeders]]                  # one per component; the API feeder has role = "api"
name = "api"
material = "API"
role = "api"
mass_flow = "2 kg/h"

[[feeders]]
name = "excipient"
material = "MCC"
mass_flow = "18 kg/h"

[blender]
rtd = { model = "tanks_in_series", mean_residence_time = "60 s", n_tanks = 5 }

[press]
transfer_rtd = { model = "pfr", delay = "10 s" }
feed_frame_rtd = { model = "cstr", mean_residence_time = "30 s" }
tablet_mass = "250 mg"

[specification]
api_content_limits = [0.95, 1.05]   # fraction of target API content (label claim)

[pat]
location = "blender_outlet"
sample_period = "2 s"
noise_sd = 0.0                      # absolute mass fraction

[diversion]
quantile = 0.005
margin = "2 s"

[[disturbances]]
type = "feeder_stop"
feeder = "api"
start = "600 s"
duration = "20 s"
'''


def test_contract_minimal_example(tmp_path):
    """The minimal complete scenario file of the file contract (kept verbatim) validates."""
    path = tmp_path / "api-stop.toml"
    path.write_text(CONTRACT_EXAMPLE)
    s = load_scenario(path)
    assert s.name == "api-stop"
    assert (s.simulation.duration, s.simulation.dt, s.simulation.seed) == (3600.0, 0.5, 1)
    assert s.target_api_fraction == pytest.approx(0.1, rel=1e-12)
    assert s.pat.sample_period == 2.0 and s.diversion.margin == 2.0
    d = s.disturbances[0]
    assert (d.type, d.feeder, d.start, d.duration) == ("feeder_stop", "api", 600.0, 20.0)


def test_json_schema_export_accepts_numbers_and_unit_strings():
    schema = Scenario.model_json_schema()
    assert set(schema["properties"]) >= {"simulation", "feeders", "blender", "press"}
    sim = schema["$defs"]["Simulation"]["properties"]["duration"]
    assert {"type": "number", "exclusiveMinimum": 0} in sim["anyOf"]
    assert {"type": "string"} in sim["anyOf"]
    assert schema["$defs"]["Feeder"]["additionalProperties"] is False


@settings(max_examples=30, deadline=None)
@given(
    flows=st.lists(st.floats(min_value=1e-3, max_value=100.0), min_size=1, max_size=4),
    api=st.integers(min_value=0, max_value=3),
    duration=st.floats(min_value=10.0, max_value=1e5),
    tau=st.floats(min_value=0.5, max_value=500.0),
)
def test_random_scenarios_round_trip(flows, api, duration, tau):
    api %= len(flows)
    raw = {
        "name": "random",
        "simulation": {"duration": duration, "dt": "0.5 s"},
        "feeders": [{"name": f"f{i}", "material": f"M{i}", "role": "api" if i == api else
                     "excipient", "mass_flow": f"{q!r} kg/h"} for i, q in enumerate(flows)],
        "blender": {"rtd": {"model": "cstr", "mean_residence_time": tau}},
        "press": {"transfer_rtd": {"model": "pfr", "delay": 0},
                  "feed_frame_rtd": {"model": "tanks_in_series", "mean_residence_time": tau,
                                     "n_tanks": 2.5},
                  "tablet_mass": "250 mg"},
    }
    s = load_scenario(raw)
    assert s.target_api_fraction == pytest.approx(flows[api] / math.fsum(flows), rel=1e-12)
    again = load_scenario(s.to_dict())
    assert again == s and again.sha256() == s.sha256()
    assert pickle.loads(pickle.dumps(s)).sha256() == s.sha256()
