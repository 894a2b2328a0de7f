"""One source of defaults (the pydantic models) and the config modules' import structure."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from cmsim.config import schema
from cmsim.config.schema import Feeder, Hopper, Simulation, cross_field_problems


def _literal_get_defaults(func) -> list[str]:
    """``x.get(key, <literal>)`` calls in a function: a default written a second time."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get" and len(node.args) == 2
                and isinstance(node.args[1], ast.Constant) and node.args[1].value is not None):
            found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize("func", [schema.cross_field_problems, schema._control_problems,
                                  schema._assay_problems])
def test_cross_field_rules_repeat_no_default(func) -> None:
    assert _literal_get_defaults(func) == []


def _raw(sim=None, feeders=None) -> dict:
    return {"simulation": sim or {"duration": "1 h"},
            "feeders": feeders or [{"name": "api", "material": "api", "role": "api"}]}


def test_absent_dt_is_checked_at_the_models_default(monkeypatch) -> None:
    default = Simulation.model_fields["dt"].default
    # a duration just below the default step: dt (absent) > duration
    found = cross_field_problems(_raw({"duration": 0.5 * default}))
    assert [(p, v) for p, v, _ in found] == [("simulation.dt", default)]
    assert cross_field_problems(_raw({"duration": 2.0 * default})) == []
    # the rule follows the model: a smaller default step no longer exceeds the duration
    monkeypatch.setattr(Simulation.model_fields["dt"], "default", 0.25 * default)
    assert cross_field_problems(_raw({"duration": 0.5 * default})) == []


def test_absent_refill_bounds_are_the_models_defaults(monkeypatch) -> None:
    low = Hopper.model_fields["refill_low"].default
    high = Hopper.model_fields["refill_high"].default
    assert low < high

    def problems(hopper: dict) -> list:
        feeders = [{"name": "api", "material": "api", "role": "api", "hopper": hopper}]
        return [(p, v) for p, v, _ in cross_field_problems(_raw(feeders=feeders))]

    # refill_high just below the default refill_low: refused, naming the value given
    below = 0.5 * low
    assert problems({"capacity": 10, "refill_high": below}) == [
        ("feeders[0].hopper.refill_high", below)]
    # refill_low just above the default refill_high: refused, the value is the default high
    above = 0.5 * (high + 1.0)
    assert problems({"capacity": 10, "refill_low": above}) == [
        ("feeders[0].hopper.refill_high", high)]
    assert problems({"capacity": 10}) == []
    monkeypatch.setattr(Hopper.model_fields["refill_low"], "default", 0.1 * low)
    assert problems({"capacity": 10, "refill_high": below}) == []


def test_absent_role_is_the_models_default() -> None:
    default = Feeder.model_fields["role"].default
    found = cross_field_problems(_raw(feeders=[{"name": "a", "material": "a"}]))
    assert found[0][:2] == ("feeders", [default])


def test_schema_imports_neither_the_loader_nor_files_it_does_not_need() -> None:
    # the loader <-> schema cycle is gone: the schema module imports no loader code
    tree = ast.parse(inspect.getsource(schema))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "cmsim.config.loader" not in imported
    assert {"cmsim.config.files", "cmsim.config.problems"} <= imported
    # and the file readers live outside the schema
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.Import) for n in n.names}
    assert not {"csv", "tomllib"} & names

