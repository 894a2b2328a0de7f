"""cmsim.units: unit strings -> SI floats, against hand-written conversion factors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmsim.units import (
    DIMENSIONS,
    UnitError,
    convert_to,
    format_quantity,
    parse_quantity,
)

# Independent oracle: factors written out by hand (not read from cmsim.units).
FACTORS = {
    ("time", "s"): 1.0,
    ("time", "ms"): 0.001,
    ("time", "min"): 60.0,
    ("time", "h"): 3600.0,
    ("time", "d"): 86400.0,
    ("mass", "kg"): 1.0,
    ("mass", "g"): 0.001,
    ("mass", "mg"): 0.000001,
    ("mass", "t"): 1000.0,
    ("mass_flow", "kg/s"): 1.0,
    ("mass_flow", "kg/min"): 1 / 60,
    ("mass_flow", "kg/h"): 1 / 3600,
    ("mass_flow", "g/s"): 0.001,
    ("mass_flow", "g/min"): 0.001 / 60,
    ("mass_flow", "g/h"): 0.001 / 3600,
    ("fraction", "%"): 0.01,
    ("fraction", "ppm"): 1e-6,
    ("relative", "%"): 0.01,
    ("relative", "% of target"): 0.01,
    ("relative", "ppm"): 1e-6,
    ("mass_fraction", "%"): 0.01,
    ("mass_fraction", "% w/w"): 0.01,
    ("mass_fraction", "ppm"): 1e-6,
    ("speed", "rpm"): 1.0,
    ("speed", "1/min"): 1.0,
}


@pytest.mark.parametrize(
    ("text", "dimension", "expected"),
    [
        ("20 kg/h", "mass_flow", 20 / 3600),
        ("250 mg", "mass", 250e-6),
        ("90 s", "time", 90.0),
        ("2 min", "time", 120.0),
        ("8 h", "time", 28800.0),
        ("0.5 s", "time", 0.5),
        ("5 %", "fraction", 0.05),
        ("5%", "fraction", 0.05),
        ("-2 %", "fraction", -0.02),
        ("250 rpm", "speed", 250.0),
        ("250 RPM", "speed", 250.0),
        ("250 1/min", "speed", 250.0),
        ("1.5 kg / min", "mass_flow", 0.025),
        ("1e-3 kg/s", "mass_flow", 0.001),
        ("  3 g  ", "mass", 0.003),
        (".5 h", "time", 1800.0),
        ("1_000 ms", "time", 1.0),
        ("12 ppm", "fraction", 12e-6),
        ("0.05", "fraction", 0.05),
        ("150", "speed", 150.0),
        ("5", "dimensionless", 5.0),
        (7, "time", 7.0),
        (0.25, "mass", 0.25),
        (3, "dimensionless", 3.0),
    ],
)
def test_parse_table(text, dimension, expected):
    x = parse_quantity(text, dimension)
    assert isinstance(x, float)
    assert x == pytest.approx(expected, rel=1e-15, abs=0)


def test_every_table_unit_is_in_the_oracle():
    listed = {(d, u) for d, table in DIMENSIONS.items() for u in table}
    assert listed == set(FACTORS)


@pytest.mark.parametrize(("dimension", "unit"), sorted(FACTORS))
def test_each_unit_factor(dimension, unit):
    assert parse_quantity(f"3 {unit}", dimension) == pytest.approx(3 * FACTORS[dimension, unit])


@pytest.mark.parametrize(
    ("value", "dimension", "words"),
    [
        ("20 kg", "mass_flow", ["'kg' is a mass", "kg/h", "kg/s"]),
        ("20 kg/h", "mass", ["mass flow", "mg"]),
        ("5 %", "time", ["fraction", "min"]),
        ("90", "time", ["needs a unit", "min"]),
        ("20 lb/h", "mass_flow", ["unknown unit 'lb/h'", "kg/h"]),
        ("fast", "time", ["cannot read a number"]),
        ("", "time", ["cannot read a number"]),
        ("nan s", "time", ["cannot read"]),
        ("inf s", "time", ["cannot read"]),
        ("1e400 s", "time", ["finite"]),
        (float("nan"), "time", ["finite"]),
        (float("inf"), "mass", ["finite"]),
        (True, "time", ["boolean"]),
        (False, "dimensionless", ["boolean"]),
        (None, "time", ["a number in s"]),
        ([1, 2], "mass", ["a number in kg"]),
        ("5 %", "dimensionless", ["plain number"]),
    ],
)
def test_parse_errors_name_the_rule(value, dimension, words):
    with pytest.raises(UnitError) as info:
        parse_quantity(value, dimension)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    for w in words:
        assert w in msg
    assert info.value.value is value


def test_unknown_dimension_is_a_programming_error():
    with pytest.raises(KeyError):
        parse_quantity(1.0, "volume")


@given(
    x=st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
    key=st.sampled_from(sorted(FACTORS)),
)
def test_string_equals_number_times_factor(x, key):
    dimension, unit = key
    got = parse_quantity(f"{x!r} {unit}", dimension)
    assert math.isclose(got, x * FACTORS[key], rel_tol=1e-15, abs_tol=0.0)


@given(
    x=st.floats(min_value=1e-6, max_value=1e6, allow_nan=False),
    key=st.sampled_from(sorted(FACTORS)),
)
def test_format_then_parse_round_trip(x, key):
    dimension, unit = key
    text = format_quantity(x, unit, digits=15)
    assert math.isclose(parse_quantity(text, dimension), x, rel_tol=1e-13)
    assert math.isclose(convert_to(x, unit) * FACTORS[key], x, rel_tol=1e-15)


def test_convert_to_unknown_unit():
    with pytest.raises(UnitError, match="unknown unit"):
        convert_to(1.0, "furlong")


def test_units_module_is_stdlib_only():
    import ast
    import sys
    from pathlib import Path

    import cmsim.units as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
