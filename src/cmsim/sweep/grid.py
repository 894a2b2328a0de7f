"""Grid expansion and per-case scenario overrides of a sweep."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cmsim.errors import ParameterError

__all__ = ["case_overrides", "expand_grid"]


def expand_grid(grid: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """Cartesian product of a grid ``{field path: values}`` in the given key order.

    Parameters
    ----------
    grid : mapping of str to sequence, or None
        Axes; None or empty gives one case without overrides.

    Returns
    -------
    list of dict
        One ``{path: value}`` per case; the last axis varies fastest.

    Examples
    --------
    >>> expand_grid({"a": [1, 2], "b": ["x", "y"]})
    [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
    """
    if not grid:
        return [{}]
    if not isinstance(grid, Mapping):
        raise ParameterError("grid", grid, "must be a mapping {field path: [values]}")
    axes = []
    for path, values in grid.items():
        if not isinstance(path, str) or not path:
            raise ParameterError("grid", path, "keys must be field paths (str)")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ParameterError(f"grid[{path}]", values, "must be a non-empty list of values")
        for value in values:
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise ParameterError(f"grid[{path}]", value, "values must be numbers, strings, "
                                     "booleans or lists of them (JSON values)") from None
        axes.append([(path, val) for val in values])
    return [dict(combo) for combo in itertools.product(*axes)]


def case_overrides(case: Mapping[str, Any]) -> list[str]:
    """The ``path=value`` overrides of one grid case (values written as JSON)."""
    return [f"{path}={json.dumps(value)}" for path, value in case.items()]
