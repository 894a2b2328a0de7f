"""The generated scenario field reference (docs/scenario-reference.md) and the JSON Schema."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Annotated

import jsonschema
import pytest
from pydantic import TypeAdapter, ValidationError

from cmsim.config import reference
from cmsim.config.quantity import QuantitySpec
from cmsim.config.schema import ParameterSet, Scenario, Simulation

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / reference.DEFAULT_PATH
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))


def _all_tables():
    tables, families = reference.model_docs(Scenario)
    ptables, pfamilies = reference.model_docs(ParameterSet)
    members = [m for f in families + pfamilies for m in f.members]
    return tables + ptables + members


def test_every_field_is_documented():
    assert reference.undocumented_fields(Scenario) == []
    assert reference.undocumented_fields(ParameterSet) == []


def test_committed_reference_is_current():
    """Fails when a field was added or changed without regenerating the file."""
    assert REFERENCE.is_file(), "run: python -m cmsim.config.reference --write " \
        "docs/scenario-reference.md"
    assert REFERENCE.read_text(encoding="utf-8") == reference.markdown(), (
        "docs/scenario-reference.md is stale: run python -m cmsim.config.reference --write "
        "docs/scenario-reference.md")


def test_every_schema_property_appears_in_the_reference():
    """Independent of the generator's walk: every key pydantic's JSON Schema knows is listed."""
    text = reference.markdown()
    schema = Scenario.model_json_schema()
    defs = {"Scenario": schema, **schema["$defs"]}
    missing = [f"{name}.{key}" for name, d in defs.items()
               for key in d.get("properties", {}) if f"| `{key}` |" not in text]
    assert missing == []


def _quantity_fields():
    for table in _all_tables():
        for name, info in table.model.model_fields.items():
            spec = next((m for m in info.metadata if isinstance(m, QuantitySpec)), None)
            if spec is not None:
                yield f"{table.model.__name__}.{name}", info, spec


@pytest.mark.parametrize("label,info,spec", list(_quantity_fields()),
                         ids=[q[0] for q in _quantity_fields()])
def test_documented_bounds_are_the_enforced_bounds(label, info, spec):
    """A value on an exclusive bound is rejected, on an inclusive bound accepted, beyond it
    rejected: the range printed in the reference is the one the validator applies."""
    adapter = TypeAdapter(Annotated[(info.annotation, *info.metadata)])
    for bound, inclusive, side in ((spec.gt, False, -1), (spec.ge, True, -1),
                                   (spec.lt, False, +1), (spec.le, True, +1)):
        if bound is None:
            continue
        beyond = bound + side * max(1e-9, abs(bound) * 1e-9)
        with pytest.raises(ValidationError):
            adapter.validate_python(beyond)
        if inclusive:
            assert adapter.validate_python(bound) == bound
        else:
            with pytest.raises(ValidationError):
                adapter.validate_python(bound)
    row = next(f for t in _all_tables() if t.model.__name__ == label.split(".")[0]
               for f in t.fields if f.key == label.split(".")[1])
    for rule in spec.rules():
        assert rule in row.allowed


def test_reference_shows_defaults_and_required_keys():
    tables, _ = reference.model_docs(Scenario)
    sim = next(t for t in tables if t.title == "[simulation]")
    rows = {f.key: f for f in sim.fields}
    assert rows["duration"].default == "**required**"
    assert rows["dt"].default == "`0.5` s" and rows["dt"].unit == "s"
    assert rows["dt"].allowed == "> 0 s"
    assert "`\"steady\"`" in rows["initial_state"].allowed
    assert rows["seed"].allowed == ">= 0"


def test_a_new_field_is_picked_up_and_an_undocumented_one_is_named():
    from cmsim.config.schema import Q

    class Documented(Simulation):
        """``[simulation]`` with one more key.

        Attributes
        ----------
        warm_up : float
            Time before the first record [s].
        """

        warm_up: Q("time", ge=0) = 60.0

    class Undocumented(Simulation):
        """No entry for the new key."""

        cool_down: Q("mass_flow", gt=0, le=1.0) = 0.5

    (table,), _ = reference.model_docs(Documented)
    row = next(f for f in table.fields if f.key == "warm_up")
    assert (row.type, row.unit, row.default, row.allowed) == ("time", "s", "`60` s", ">= 0 s")
    assert row.meaning == "Time before the first record [s]."
    assert reference.undocumented_fields(Documented) == []
    assert reference.undocumented_fields(Undocumented) == ["Undocumented.cool_down"]


def test_check_command_detects_a_stale_file(tmp_path, capsys):
    assert reference.main(["--check", str(REFERENCE)]) == 0
    stale = tmp_path / "ref.md"
    stale.write_text(REFERENCE.read_text(encoding="utf-8").replace("| `dt` |", "| `dtt` |"))
    assert reference.main(["--check", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err
    out = tmp_path / "new.md"
    assert reference.main(["--write", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == REFERENCE.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- JSON Schema


@pytest.fixture(scope="module")
def validator():
    schema = reference.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_json_schema_accepts_every_shipped_scenario(validator, path):
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    assert list(validator.iter_errors(raw)) == []


def test_json_schema_rejects_what_the_loader_rejects(validator):
    raw = tomllib.loads((ROOT / "scenarios" / "api_feeder_stop.toml").read_text())
    bad_key = {**raw, "simulaton": {}}
    assert any("simulaton" in e.message for e in validator.iter_errors(bad_key))
    neg = {**raw, "simulation": {**raw["simulation"], "duration": -1.0}}
    assert list(validator.iter_errors(neg))
    bad_model = {**raw, "blender": {"rtd": {"model": "cstr", "mean_residence_time": 60,
                                            "n_tanks": 3}}}
    assert list(validator.iter_errors(bad_model))


def test_json_schema_carries_meaning_default_and_unit():
    schema = reference.json_schema()
    dt = schema["$defs"]["Simulation"]["properties"]["dt"]
    assert dt["description"].startswith("Time step [s]")
    assert "default 0.5 s" in dt["description"] and "unit s" in dt["description"]
    assert {"type": "number", "exclusiveMinimum": 0} in dt["anyOf"]
    assert schema["$defs"]["Simulation"]["properties"]["duration"]["anyOf"][0][
        "exclusiveMinimum"] == 0
    assert not math.isnan(schema["$defs"]["Simulation"]["properties"]["dt"]["default"])
