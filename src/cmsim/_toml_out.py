"""Write plain scenario data as TOML (the ``scenario.toml`` copy in an output directory).

A small writer for the data :meth:`cmsim.config.Scenario.to_dict` returns: tables, arrays of
tables, strings, booleans, integers, floats (``inf``/``nan`` included) and arrays. ``None``
means "not set" in a scenario, so keys whose value is None are left out (TOML has no null).
Reading the text back with :mod:`tomllib` gives the same data without the None entries.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, Mapping):
        items = [f"{_key(str(k))} = {_value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _table(lines: list[str], header: str, data: Mapping[str, Any], array: bool) -> None:
    scalars = {k: v for k, v in data.items() if v is not None and not isinstance(v, Mapping)
               and not _is_table_array(v)}
    subtables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    arrays = {k: v for k, v in data.items() if _is_table_array(v)}
    if header:
        lines.append("")
        lines.append(f"[[{header}]]" if array else f"[{header}]")
    lines.extend(f"{_key(str(k))} = {_value(v)}" for k, v in scalars.items())
    if array:
        # nested tables of an array element stay inline: [a.b] after [[a]] would be ambiguous
        lines.extend(f"{_key(str(k))} = {_value(v)}" for k, v in {**subtables, **arrays}.items())
        return
    for k, v in subtables.items():
        _table(lines, f"{header}.{_key(str(k))}" if header else _key(str(k)), v, False)
    for k, items in arrays.items():
        for item in items:
            _table(lines, f"{header}.{_key(str(k))}" if header else _key(str(k)), item, True)


def dumps(data: Mapping[str, Any]) -> str:
    """TOML text of ``data`` (a mapping of plain values; None entries left out).

    Parameters
    ----------
    data : mapping
        Plain data: mappings, lists, str, bool, int, float, None.

    Returns
    -------
    str
        TOML 1.0 text ending with a newline.

    Raises
    ------
    TypeError
        For a value of another type.

    Examples
    --------
    >>> print(dumps({"name": "x", "simulation": {"dt": 1.0}, "feeders": [{"name": "api"}]}))
    name = "x"
    <BLANKLINE>
    [simulation]
    dt = 1.0
    <BLANKLINE>
    [[feeders]]
    name = "api"
    <BLANKLINE>
    """
    lines: list[str] = []
    _table(lines, "", data, False)
    return "\n".join(lines).lstrip("\n") + "\n"
