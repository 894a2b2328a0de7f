"""cmsim.footprint: a run that cannot fit in memory is refused before it starts, naming the
field that makes it too large (it used to fail in numpy's allocator part way, or be ended by
the operating system)."""

from __future__ import annotations

import pytest

import cmsim
from cmsim.assembly import build_models, scenario_channel_map
from cmsim.config import load_scenario
from cmsim.errors import ScenarioError
from cmsim.footprint import (
    BYTES_PER_STATE_TICK_CHANNEL,
    BYTES_PER_TICK,
    BYTES_PER_TICK_CHANNEL,
    memory_problems,
)

START_UP = "scenarios/faults/start_up.toml"  # 3 channels, dt = 0.5 s, monitor and NIR


def _problems(path: str, overrides: list[str], limit: float, **kw) -> list:
    sc = load_scenario(path, overrides=overrides)
    return memory_problems(sc, float(sc.simulation.dt), int(sc.n_ticks),
                           scenario_channel_map(sc).n_channels, build_models(sc), limit=limit,
                           **kw)


def test_the_records_of_a_long_run_name_the_duration():
    # 30 days at dt = 0.5 s: 5,184,000 ticks x (80 + 8 x 3) bytes = 0.50 GiB at least
    records = 5_184_000 * (BYTES_PER_TICK + 3 * BYTES_PER_TICK_CHANNEL)
    assert records / 2**30 == pytest.approx(0.502, abs=1e-3)
    assert _problems(START_UP, ["simulation.duration=30 d"], limit=2**30) == []
    (path, value, rule), = _problems(START_UP, ["simulation.duration=30 d"], limit=2**28)
    assert path == "simulation.duration" and value == "2.592e+06 s"
    assert "at dt = 0.5 s this part of the run needs at least 0.5 GiB" in rule
    assert "this machine has 0.2 GiB: shorten the run or take a longer dt" in rule


def test_a_residence_time_beyond_memory_names_its_rtd_table():
    (path, value, rule), = _problems(START_UP, ["press.transfer_rtd.delay=1e9 s"],
                                     limit=2**34)
    assert path == "press.transfer_rtd" and value == "reaches 1e+09 s"
    # 1e9 s / 0.5 s x 16 bytes x 3 channels
    part = 1e9 / 0.5 * BYTES_PER_STATE_TICK_CHANNEL * 3 / 2**30
    assert f"needs at least {part:,.1f} GiB" in rule and "check the value's unit" in rule


@pytest.mark.parametrize("field", ["press.gate_delay", "pat.latency", "pat.integration_time",
                                   "monitor.load_cell_period", "monitor.load_cell_window"])
def test_a_monitor_time_setting_beyond_memory_names_its_field(field):
    """Each of these sized an array of the monitor by value / dt (numpy asked for 7-477 GiB
    at 1e9 s)."""
    (path, value, _), = _problems(START_UP, [f"{field}=1e9 s"], limit=2**32)
    assert (path, value) == (field, "1e+09 s")
    assert _problems(START_UP, [f"{field}=2 min"], limit=2**32) == []


def test_a_controller_window_beyond_memory_names_it():
    """The gravimetric PI's load-cell ring holds a weighing per tick of its window (1e9 s asked
    numpy for 14.9 GiB per feeder)."""
    ctl = "scenarios/control_combined.toml"
    (path, value, _), = _problems(ctl, ["control.feeder_pi.window=1e9 s"], limit=2**34)
    assert (path, value) == ("control.feeder_pi.window", "1e+09 s")
    assert _problems(ctl, ["control.feeder_pi.window=1 min"], limit=2**34) == []


def test_a_blender_slowed_beyond_memory_names_the_speed_change():
    """A blender_speed disturbance stretches the blender's tank times by (nominal / speed) ^
    speed_exponent; 1 rpm with an exponent of 3 makes the 60 s blender 1.6e7 times slower."""
    path = "scenarios/blender_speed_step.toml"
    slow = ["disturbances[0].speed=1 rpm", "blender.speed_exponent=3"]
    (where, value, _), = _problems(path, slow, limit=2**34)
    assert (where, value) == ("disturbances[0].speed", "1 rpm")
    assert _problems(path, slow, limit=2**34, speeds=[("x", 150.0)]) == []


def test_run_refuses_before_allocating_and_before_claiming_the_output_dir(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ScenarioError) as info:  # 1e13 ticks: no machine has 1 PB
        cmsim.run(START_UP, overrides=["simulation.duration=5e12 s"], out=out)
    assert info.value.problems[0][0] == "simulation.duration"
    assert not out.exists()
    with pytest.raises(ScenarioError) as info:
        cmsim.run(START_UP, overrides=["pat.integration_time=1e11 s"])
    assert info.value.problems[0][0] == "pat.integration_time"
