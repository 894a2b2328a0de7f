"""Unit strings of scenario files -> SI floats (stdlib only).

Scenario files give quantities either as plain numbers, which are already in SI (s, kg, kg/s,
mass fraction; speeds in rpm), or as strings with a unit: ``"20 kg/h"``, ``"250 mg"``,
``"90 s"``, ``"2 min"``, ``"8 h"``, ``"5 %"``, ``"250 rpm"``. :func:`parse_quantity` converts
them to SI floats for one expected *dimension*.

Why a small explicit table and not pint: a scenario needs about 25 units in six dimensions.
pint would add a heavy import (its registry parses a definitions file at start-up, which every
worker process of a sweep pays again) and accepts far more than a process engineer should write
in a scenario file (``"furlong/fortnight"`` is a valid mass flow to pint once densities are
defined). An explicit table keeps the accepted spellings documented, the error messages specific
("accepted units: kg/s, kg/h, ...") and this module in the lowest layer with no dependency.
Canonical floats are used everywhere inside cmsim; units live only at this edge.

Dimensions and their SI units:

==============  ==========  ==================================================
dimension       SI unit     accepted unit strings
==============  ==========  ==================================================
time            s           s, ms, min, h, d
mass            kg          kg, g, mg, t
mass_flow       kg/s        kg/s, kg/min, kg/h, g/s, g/min, g/h
fraction        1           %, ppm (a plain number is the fraction itself)
relative        1           %, % of target, ppm: relative to a set point or
                            target (feeder noise ``0.02`` = ``"2 % of target"``)
mass_fraction   1           %, % w/w, ppm: an absolute mass fraction of the blend
                            (NIR noise ``0.002`` = ``"0.2 % w/w"``)
speed           rpm         rpm, 1/min
dimensionless   1           (plain numbers only)
==============  ==========  ==================================================
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "DIMENSIONS",
    "SI_UNIT",
    "UnitError",
    "convert_to",
    "format_quantity",
    "parse_quantity",
]

#: Factor that converts one of the unit to the SI unit of its dimension.
DIMENSIONS: dict[str, dict[str, float]] = {
    "time": {"s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0, "d": 86400.0},
    "mass": {"kg": 1.0, "g": 1e-3, "mg": 1e-6, "t": 1e3},
    "mass_flow": {
        "kg/s": 1.0,
        "kg/min": 1.0 / 60.0,
        "kg/h": 1.0 / 3600.0,
        "g/s": 1e-3,
        "g/min": 1e-3 / 60.0,
        "g/h": 1e-3 / 3600.0,
    },
    "fraction": {"%": 1e-2, "ppm": 1e-6},
    "relative": {"%": 1e-2, "% of target": 1e-2, "ppm": 1e-6},
    "mass_fraction": {"%": 1e-2, "% w/w": 1e-2, "ppm": 1e-6},
    "speed": {"rpm": 1.0, "1/min": 1.0},
    "dimensionless": {},
}

#: The SI (canonical) unit of each dimension, as written in docstrings.
SI_UNIT: dict[str, str] = {
    "time": "s",
    "mass": "kg",
    "mass_flow": "kg/s",
    "fraction": "1",
    "relative": "1",
    "mass_fraction": "1",
    "speed": "rpm",
    "dimensionless": "1",
}

_NUMBER_UNIT = re.compile(
    r"^\s*(?P<num>[+-]?(?:\d[\d_]*\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))"
    r"\s*(?P<unit>.*?)\s*$"
)


class UnitError(ValueError):
    """A quantity that cannot be converted to the expected dimension.

    Parameters
    ----------
    value : Any
        The offending value as written.
    rule : str
        What was expected, naming the accepted units.
    """

    def __init__(self, value: Any, rule: str) -> None:
        super().__init__(value, rule)  # args rebuild the error (pickle, type(e)(*e.args))
        self.value = value
        self.rule = rule

    def __str__(self) -> str:
        return self.rule


#: How messages name a dimension (when "a <name with spaces>" is unclear).
_DIM_TEXT = {"relative": "a fraction relative to the target (% of target)",
             "mass_fraction": "an absolute mass fraction (% w/w)"}


def _dim_text(dimension: str) -> str:
    return _DIM_TEXT.get(dimension, "a " + dimension.replace("_", " "))


def _accepted(dimension: str) -> str:
    units = list(DIMENSIONS[dimension])
    if not units:
        return "a plain number"
    return f"a number in {SI_UNIT[dimension]} or a string with one of: {', '.join(units)}"


def _normalise_unit(unit: str) -> str:
    # "kg / h" -> "kg/h"; "KG/H" is not accepted on purpose (mg vs Mg), but "Min"/"RPM" are
    # unambiguous enough to forgive.
    unit = re.sub(r"\s+", " ", re.sub(r"\s*/\s*", "/", unit.strip()))
    lowered = unit.lower()
    if lowered in ("rpm", "min", "1/min"):
        return lowered
    return unit


def _find_dimension(unit: str) -> str | None:
    for dim, table in DIMENSIONS.items():
        if unit in table:
            return dim
    return None


def parse_quantity(value: Any, dimension: str) -> float:
    """Convert a number or a unit string to an SI float of the given dimension.

    Parameters
    ----------
    value : int, float or str
        A plain number, taken as already in SI (seconds [s], kilograms [kg], [kg/s], a
        fraction [-], revolutions per minute [rpm]), or a string ``"<number> <unit>"`` such as
        ``"20 kg/h"``, ``"250 mg"``, ``"2 min"``, ``"5 %"``. A string without a unit is accepted
        only for the dimensionless, fraction and speed dimensions.
    dimension : {"time", "mass", "mass_flow", "fraction", "relative", "mass_fraction", \
"speed", "dimensionless"}
        The expected dimension. ``"relative"`` (relative to a set point or target; accepts
        ``"% of target"``) and ``"mass_fraction"`` (absolute mass fraction of the blend;
        accepts ``"% w/w"``) are fractions whose ``%`` means different things.

    Returns
    -------
    float
        The value in the SI unit of ``dimension`` (see :data:`SI_UNIT`).

    Raises
    ------
    UnitError
        (a ValueError) for booleans, NaN or infinite values, unparsable strings, unknown units
        and units of another dimension; the message names the accepted units.
    KeyError
        If ``dimension`` is not one of :data:`DIMENSIONS` (a programming error).

    Examples
    --------
    >>> parse_quantity("20 kg/h", "mass_flow") * 3600
    20.0
    >>> parse_quantity("2 min", "time")
    120.0
    >>> parse_quantity("5 %", "fraction")
    0.05
    >>> parse_quantity("2 % of target", "relative")
    0.02
    >>> parse_quantity("0.2 % w/w", "mass_fraction")
    0.002
    """
    if dimension not in DIMENSIONS:
        raise KeyError(f"unknown dimension {dimension!r}; expected one of {sorted(DIMENSIONS)}")
    accepted = _accepted(dimension)
    if isinstance(value, bool):
        raise UnitError(value, f"must be {accepted}, not a boolean")
    if isinstance(value, int | float):
        x = float(value)
        if not math.isfinite(x):
            raise UnitError(value, f"must be finite ({accepted})")
        return x
    if not isinstance(value, str):
        raise UnitError(value, f"must be {accepted}")
    match = _NUMBER_UNIT.match(value)
    if match is None:
        raise UnitError(value, f"cannot read a number followed by a unit; expected {accepted}")
    number = float(match.group("num").replace("_", ""))
    if not math.isfinite(number):
        raise UnitError(value, f"must be finite ({accepted})")
    unit = _normalise_unit(match.group("unit"))
    if unit == "":
        if dimension in ("dimensionless", "fraction", "relative", "mass_fraction", "speed"):
            return number
        raise UnitError(value, f"a string needs a unit; expected {accepted}")
    table = DIMENSIONS[dimension]
    if unit in table:
        return number * table[unit]
    other = _find_dimension(unit)
    if other is not None:
        raise UnitError(
            value, f"unit {unit!r} is {_dim_text(other)}, expected {_dim_text(dimension)}: "
            f"{accepted}"
        )
    raise UnitError(value, f"unknown unit {unit!r}; expected {accepted}")


def convert_to(value_si: float, unit: str) -> float:
    """Express an SI value in another unit of the same dimension.

    Parameters
    ----------
    value_si : float
        Value in the SI unit of the dimension that ``unit`` belongs to.
    unit : str
        Target unit from :data:`DIMENSIONS`, e.g. ``"kg/h"``.

    Returns
    -------
    float
        ``value_si`` divided by the factor of ``unit``.

    Raises
    ------
    UnitError
        If ``unit`` is not in the table.
    """
    unit = _normalise_unit(unit)
    dim = _find_dimension(unit)
    if dim is None:
        raise UnitError(unit, "unknown unit")
    return float(value_si) / DIMENSIONS[dim][unit]


def format_quantity(value_si: float, unit: str, digits: int = 6) -> str:
    """Format an SI value in ``unit`` with ``digits`` significant digits, e.g. ``"20 kg/h"``.

    Parameters
    ----------
    value_si : float
        Value in SI.
    unit : str
        Target unit from :data:`DIMENSIONS`.
    digits : int, optional
        Significant digits (default 6).

    Returns
    -------
    str
        A string that :func:`parse_quantity` reads back to ``value_si`` within the rounding.
    """
    x = convert_to(value_si, unit)
    sep = "" if unit == "%" else " "
    return f"{x:.{digits}g}{sep}{unit}"
