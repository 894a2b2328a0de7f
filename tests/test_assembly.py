"""cmsim.assembly: a run reads the scenario's RTD models, channel map and plan once."""

from __future__ import annotations

import numpy as np
import pytest

import cmsim
from cmsim import disturbances as dist
from cmsim.assembly import RTD_PATHS, assemble, build_models
from cmsim.config import load_scenario, schema
from cmsim.errors import ScenarioError
from cmsim.line import build_line

SHORT = ["simulation.duration=20 min"]


@pytest.fixture
def count_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every top-level ``build()`` of a scenario RTD table (nested builds of a
    parameter set or series table are part of the same build)."""
    calls: list[str] = []
    depth = [0]

    def counting(orig, name):
        def wrapped(self):
            if depth[0] == 0:
                calls.append(name)
            depth[0] += 1
            try:
                return orig(self)
            finally:
                depth[0] -= 1
        return wrapped

    for cls in vars(schema).values():
        if isinstance(cls, type) and issubclass(cls, schema._RTDBase) and "build" in vars(cls):
            monkeypatch.setattr(cls, "build", counting(vars(cls)["build"], cls.__name__))
    return calls


@pytest.mark.parametrize("name", ["baseline", "control_combined", "control_nir_feedback"])
def test_a_run_builds_each_rtd_table_once(name: str, count_builds: list[str]) -> None:
    sc = load_scenario(f"scenarios/{name}.toml", overrides=SHORT)
    assert count_builds == []  # validation builds nothing
    cmsim.run(sc, seed=1)
    # one build per table: blender, transfer, feed frame (line, control, monitor, metadata
    # all share them)
    assert len(count_builds) == len(RTD_PATHS) == 3


def test_quantile_monitor_shares_the_models(count_builds: list[str]) -> None:
    sc = load_scenario("scenarios/baseline.toml",
                       overrides=[*SHORT, "diversion.policy=quantile"])
    r = cmsim.run(sc, seed=1)
    assert r.metadata["monitor"]["policy"] == "quantile"
    assert len(count_builds) == 3


def test_assembly_matches_the_scenario_and_the_line() -> None:
    sc = load_scenario("scenarios/refill_lot_change.toml")
    asm = assemble(sc)
    assert asm.dt == float(sc.simulation.dt)
    assert asm.n_ticks == sc.n_ticks
    m = asm.models
    # the mean of a series of independent stages is the sum of the stage means
    assert m.line.mean == pytest.approx(m.blender.mean + m.transfer.mean + m.feed_frame.mean,
                                        rel=1e-9)
    assert list(m.by_path()) == list(RTD_PATHS)
    # the same plan as the disturbances module makes from the scenario
    assert list(asm.disturbances) == dist.from_scenario(sc.disturbances, sc.feeders)
    # a refill brings a second API lot: one more channel than feeders
    assert asm.channel_map.n_channels == len(sc.feeders) + 1
    gens = {f"feeder.{f.name}": np.random.default_rng(0) for f in sc.feeders}
    line = build_line(sc, gens, assembly=asm)
    assert line.channel_map is asm.channel_map
    assert line.nodes["blender"].unit.n_dispersive == build_line(sc, gens).nodes[
        "blender"].unit.n_dispersive


def test_a_refused_model_is_a_scenario_error_naming_the_path(monkeypatch) -> None:
    sc = load_scenario("scenarios/control_combined.toml", overrides=SHORT)
    from cmsim.errors import ParameterError

    def refuse(self):
        raise ParameterError("delay", 1e9, "too long for this test")

    monkeypatch.setattr(schema.PFRRTD, "build", refuse)
    with pytest.raises(ScenarioError, match=r"press\.transfer_rtd\.delay") as info:
        build_models(sc)
    assert "too long for this test" in str(info.value)
    with pytest.raises(ScenarioError, match=r"press\.transfer_rtd\.delay"):
        cmsim.run(sc, seed=1)


@pytest.mark.parametrize("rtd, ok", [
    ({"model": "axial_dispersion", "mean_residence_time": 60.0, "peclet": 10.0}, False),
    ({"model": "tanks_in_series", "mean_residence_time": 60.0, "n_tanks": 2.5}, False),
    ({"model": "series", "stages": [{"model": "cstr", "mean_residence_time": 30.0},
                                    {"model": "cstr", "mean_residence_time": 30.0}]}, False),
    ({"model": "series", "stages": [{"model": "pfr", "delay": 5.0},
                                    {"model": "tanks_in_series", "mean_residence_time": 55.0,
                                     "n_tanks": 4}]}, True),
    ({"model": "cstr", "mean_residence_time": 60.0}, True),
])
def test_a_blender_speed_change_needs_a_blender_that_can_follow_it(rtd, ok) -> None:
    """Refused before the run (it used to fail mid-run, from inside the engine), naming the
    disturbance; a blender of one CSTR or integer tanks-in-series element runs."""
    import tomllib

    with open("scenarios/blender_speed_step.toml", "rb") as fh:
        d = tomllib.load(fh)
    d["blender"]["rtd"] = rtd
    d["simulation"]["duration"] = "15 min"
    sc = load_scenario(d)
    if ok:
        assert build_models(sc).blender.mean == pytest.approx(60.0)
        cmsim.run(sc)
        return
    with pytest.raises(ScenarioError, match=r"disturbances\[0\]\.type") as info:
        build_models(sc)
    assert "cannot follow a speed change" in str(info.value)


def test_the_monitors_own_blender_must_follow_a_speed_change_too() -> None:
    import tomllib

    with open("scenarios/blender_speed_step.toml", "rb") as fh:
        d = tomllib.load(fh)
    d["simulation"]["duration"] = "15 min"
    d.setdefault("monitor", {})["rtd"] = {
        "blender": {"model": "axial_dispersion", "mean_residence_time": 60.0, "peclet": 10.0}}
    with pytest.raises(ScenarioError, match=r"monitor\.rtd\.blender"):
        build_models(load_scenario(d))
    d["monitor"]["rtd"]["blender"] = {"model": "cstr", "mean_residence_time": 60.0}
    assert build_models(load_scenario(d)).monitor["blender"].mean == pytest.approx(60.0)
