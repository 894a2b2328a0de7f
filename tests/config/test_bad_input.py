"""Bad input that used to escape as a traceback or run silently: nesting, impossible and
implausible quantities, and the two meanings of "%"."""

from __future__ import annotations

import warnings

import pytest

from cmsim.cli import main
from cmsim.config import load_scenario
from cmsim.config.plausibility import MAX_PLAUSIBLE_MASS_FLOW
from cmsim.config.schema import MAX_MASS_FLOW
from cmsim.errors import ScenarioError, ScenarioWarning
from cmsim.units import UnitError, parse_quantity


def test_deeply_nested_toml_is_invalid_input_not_a_crash(tmp_path, capsys):
    f = tmp_path / "deep.toml"
    f.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err and "Traceback" not in err
    with pytest.raises(ScenarioError, match="nested too deeply"):
        load_scenario({"name": "x", "a": _nested(5000)})


def _nested(depth):
    x: list = []
    for _ in range(depth):
        x = [x]
    return x


@pytest.mark.parametrize("flow", ["1e300 kg/h", "1e308 kg/h", "101 t/h", 1e9])
def test_impossible_mass_flow_is_refused(flow, capsys):
    value = flow if isinstance(flow, float) else f'"{flow}"' if "t/h" not in flow else None
    if value is None:  # t/h is no accepted unit: the bound is tested with 1e5 kg/h + 1
        value = f'"{1e5 + 1} kg/h"'
    assert main(["validate", "baseline", "--set", f"feeders[0].mass_flow={value}"]) == 2
    err = capsys.readouterr().err
    assert "feeders[0].mass_flow" in err and "100 t/h" in err and "Traceback" not in err


def test_impossible_flow_bound_is_just_above_100_t_per_h():
    assert MAX_MASS_FLOW * 3600.0 == pytest.approx(1e5)
    with pytest.warns(ScenarioWarning):  # possible, but implausible
        load_scenario("baseline", overrides=["feeders[0].mass_flow=99000 kg/h"])
    with pytest.raises(ScenarioError, match="mass_flow"):
        load_scenario("baseline", overrides=["feeders[0].mass_flow=100001 kg/h"])


def test_implausible_settings_warn_but_validate(capsys):
    with pytest.warns(ScenarioWarning, match=r"feeders\[0\]\.mass_flow = 2000 kg/h"):
        sc = load_scenario("baseline", overrides=["feeders[0].mass_flow=2000 kg/h"])
    assert sc.feeders[0].mass_flow == pytest.approx(2000 / 3600)
    assert MAX_PLAUSIBLE_MASS_FLOW * 3600 == pytest.approx(1000)
    # NIR noise wider than the half-width of the specification (absolute w/w)
    base = load_scenario("baseline")
    lo, hi = base.specification.api_content_limits
    half = 0.5 * (hi - lo) * base.target_api_fraction
    with pytest.warns(ScenarioWarning, match="half-width of the specification"):
        load_scenario("baseline", overrides=[f"pat.noise_sd={1.01 * half!r}"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_scenario("baseline", overrides=[f"pat.noise_sd={0.99 * half!r}"])
    assert main(["validate", "baseline", "--set", "press.tablet_mass=250 g"]) == 0
    assert "warning: " in capsys.readouterr().err


def test_percent_of_target_and_percent_w_w_only_where_they_apply():
    assert parse_quantity("2 % of target", "relative") == pytest.approx(0.02)
    assert parse_quantity("0.2 % w/w", "mass_fraction") == pytest.approx(0.002)
    assert parse_quantity("0.2  %  w / w", "mass_fraction") == pytest.approx(0.002)
    assert parse_quantity("2 %", "relative") == parse_quantity("2 %", "mass_fraction") == 0.02
    with pytest.raises(UnitError, match="absolute mass fraction"):
        parse_quantity("2 % w/w", "relative")
    with pytest.raises(UnitError, match="relative to the target"):
        parse_quantity("2 % of target", "mass_fraction")
    sc = load_scenario("baseline", overrides=["feeders[0].noise_rsd=3 % of target",
                                              "pat.noise_sd=0.25 % w/w"])
    assert sc.feeders[0].noise_rsd == pytest.approx(0.03)
    assert sc.pat.noise_sd == pytest.approx(0.0025)
    with pytest.raises(ScenarioError, match=r"feeders\[0\]\.noise_rsd"):
        load_scenario("baseline", overrides=["feeders[0].noise_rsd=3 % w/w"])
    with pytest.raises(ScenarioError, match=r"pat\.noise_sd"):
        load_scenario("baseline", overrides=["pat.noise_sd=3 % of target"])
