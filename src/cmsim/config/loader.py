"""Read, override and validate scenario files; turn every problem into a ScenarioError.

The loader reads TOML with :mod:`tomllib`, applies ``--set path=value`` overrides, validates
with the pydantic models of :mod:`cmsim.config.schema` and the cross-field rules, and reports
*all* problems of a file at once as ``(field path, value, rule)`` triples with paths such as
``feeders[1].mass_flow`` or ``disturbances[2].feeder``.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
import warnings
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cmsim.config.plausibility import plausibility_notes
from cmsim.config.problems import MISSING, format_path, problems_from_validation_error
from cmsim.config.schema import Scenario, cross_field_problems
from cmsim.errors import ParameterError, ScenarioError, ScenarioWarning

__all__ = [
    "MISSING",
    "apply_overrides",
    "load_scenario",
    "parse_field_path",
    "read_toml",
    "resolve_scenario_path",
    "shipped_scenarios",
    "validate_dict",
]


_IN_MEMORY = "<scenario>"


# --------------------------------------------------------------------------- paths


_PATH_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[([^\[\]]*)\]")


def parse_field_path(path: str) -> list[str | int]:
    """Split a field path such as ``feeders[0].hopper.capacity`` into keys and indices.

    Parameters
    ----------
    path : str
        Dotted path; ``[i]`` indexes an array, ``[name]`` (not an integer) selects the array
        element whose ``name`` key equals ``name``.

    Returns
    -------
    list of str or int
        Keys (str) and indices (int); a ``[name]`` selector is returned as the string
        ``"[name]"``.

    Raises
    ------
    ValueError
        If the path is empty or malformed.
    """
    text = path.strip()
    if not text:
        raise ValueError("empty field path")
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _PATH_TOKEN.match(text, pos)
        if m is None or m.end() == pos or (pos == 0 and text.startswith(".")):
            raise ValueError(f"malformed field path {path!r} at character {pos}")
        if m.group(1) is not None:
            parts.append(m.group(1).strip())
        else:
            sel = m.group(2).strip()
            if re.fullmatch(r"-?\d+", sel):
                parts.append(int(sel))
            elif sel:
                parts.append(f"[{sel}]")
            else:
                raise ValueError(f"malformed field path {path!r}: empty []")
        pos = m.end()
    return parts


def _order_key(raw: Any, parts: list[str | int]) -> tuple[int, ...]:
    """Position of a path in the file (key order of the TOML tables, array indices)."""
    key: list[int] = []
    node = raw
    for p in parts:
        if isinstance(node, dict) and isinstance(p, str) and p in node:
            key.append(list(node).index(p))
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            key.append(p)
            node = node[p]
        else:
            key.append(10**6)
            break
    return tuple(key)


def _split_problem_path(path: str) -> list[str | int]:
    try:
        return parse_field_path(path) if path else []
    except ValueError:
        return [path]


# --------------------------------------------------------------------------- reading


def shipped_scenarios() -> dict[str, Path]:
    """Return the scenarios shipped in ``cmsim/data/scenarios``, by name (file stem)."""
    base = Path(str(resources.files("cmsim.data") / "scenarios"))
    return {p.stem: p for p in sorted(base.glob("*.toml"))}


def resolve_scenario_path(name: str | os.PathLike[str]) -> Path:
    """Return the scenario file for ``name``: an existing path or a shipped scenario's name.

    Parameters
    ----------
    name : str or path
        A file path, or the name of a shipped scenario (e.g. ``"baseline"``).

    Returns
    -------
    Path
        The file to read.

    Raises
    ------
    ScenarioError
        If neither exists.
    """
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_scenarios()
    stem = path.name[:-5] if path.name.endswith(".toml") else path.name
    if path.parent == Path(".") and stem in shipped:
        return shipped[stem]
    if path.is_dir():
        rule = "is a directory, expected a scenario file (.toml)"
    else:
        rule = f"file not found (shipped scenarios: {', '.join(shipped)})"
    raise ScenarioError(str(name), [("", str(name), rule)])


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML file; syntax errors become a ScenarioError with line and column.

    Parameters
    ----------
    path : str or path
        The file.

    Returns
    -------
    dict
        The parsed TOML document.

    Raises
    ------
    ScenarioError
        If the file cannot be read or is not valid TOML (UTF-8).
    """
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ScenarioError(str(p), [("", str(p), f"cannot read file: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            str(p), [("", f"byte {exc.start}", "TOML files must be UTF-8 encoded")]
        ) from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ScenarioError(str(p), [("", "arrays or tables nested thousands deep",
                                      "nested too deeply to be a scenario")]) from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            line, col = int(m.group(1)), int(m.group(2))
            lines = text.splitlines()
            snippet = lines[line - 1] if 0 < line <= len(lines) else ""
            where = f"line {line}, column {col}"
            rule = "TOML syntax error: " + msg[: m.start()].strip()
        else:
            where, snippet, rule = "", "", f"TOML syntax error: {msg}"
        raise ScenarioError(str(p), [(where, snippet, rule)]) from None


# --------------------------------------------------------------------------- overrides


def _parse_override_value(text: str) -> Any:
    text = text.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


#: Accepted forms of scenario overrides (see :func:`normalize_overrides`).
Overrides = Mapping[str, Any] | Iterable[str] | None

_OVERRIDES_RULE = (
    "must be a mapping {path: value} (e.g. {'simulation.duration': '2 h'}) or a list of "
    "'path=value' strings (e.g. ['simulation.duration=2 h'])"
)


def normalize_overrides(overrides: Overrides) -> list[str | tuple[str, Any]]:
    """Overrides as a list of ``"path=value"`` strings and ``(path, value)`` pairs.

    Parameters
    ----------
    overrides : mapping, iterable of str, or None
        ``{path: value}`` (values taken as they are, like ``sweep(grid=...)``) or
        ``["path=value", ...]`` (values read as TOML literals, like ``--set``).

    Returns
    -------
    list

    Raises
    ------
    cmsim.errors.ParameterError
        For a single string (it would be read character by character), bytes, a mapping with
        a non-string key, or anything else that is not one of the two forms.
    """
    if overrides is None:
        return []
    if isinstance(overrides, str | bytes):
        raise ParameterError("overrides", overrides,
                             _OVERRIDES_RULE + "; a single string must be wrapped in a list")
    if isinstance(overrides, Mapping):
        bad = [k for k in overrides if not isinstance(k, str)]
        if bad:
            raise ParameterError("overrides", overrides,
                                 f"{_OVERRIDES_RULE}; key {bad[0]!r} is not a string")
        return [(k, v) for k, v in overrides.items()]
    try:
        items = list(overrides)
    except TypeError:
        raise ParameterError("overrides", overrides, _OVERRIDES_RULE) from None
    bad_items = [x for x in items if not isinstance(x, str)]
    if bad_items:
        raise ParameterError("overrides", overrides,
                             f"{_OVERRIDES_RULE}; element {bad_items[0]!r} is not a string")
    return list(items)


def apply_overrides(
    raw: Mapping[str, Any], overrides: Iterable[str | tuple[str, Any]], *,
    source: str = "--set", label: str = "--set"
) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``path=value`` overrides applied (the CLI's ``--set``).

    Parameters
    ----------
    raw : mapping
        Scenario data as read from TOML.
    overrides : iterable of str or (str, value) pairs
        Items like ``"simulation.duration=2 h"``, ``"feeders[0].mass_flow=3 kg/h"`` or
        ``"feeders[api].noise_rsd=0.05"`` (select an array element by its ``name``). The value
        is read as a TOML literal if it is one (``3``, ``true``, ``[0.9, 1.1]``,
        ``"text"``), otherwise taken as a string (``2 h``). A ``(path, value)`` pair sets the
        value as it is. Missing tables are created; unknown keys are then reported by
        validation.
    source : str, optional
        The scenario's name in error messages (its file).
    label : str, optional
        What the overrides are called in the problems' paths (default ``"--set"``; a sweep
        says ``"--grid"``).

    Returns
    -------
    dict
        The modified deep copy.

    Raises
    ------
    ScenarioError
        Listing every override that is malformed or whose path does not exist.
    """
    data: dict[str, Any] = copy.deepcopy(dict(raw))
    problems: list[tuple[str, Any, str]] = []
    for item in overrides:
        if isinstance(item, tuple):
            path_text, value = item
            shown: Any = value
        elif "=" not in item:
            problems.append((f"{label} {item}", item, "must be path=value"))
            continue
        else:
            path_text, value_text = item.split("=", 1)
            value, shown = _parse_override_value(value_text), value_text.strip()
        try:
            parts = parse_field_path(path_text)
        except ValueError as exc:
            problems.append((f"{label} {path_text.strip()}", shown, str(exc)))
            continue
        err = _set_path(data, parts, copy.deepcopy(value))
        if err:
            problems.append((f"{label} {path_text.strip()}", shown, err))
    if problems:
        raise ScenarioError(source, problems)
    return data


def _set_path(data: dict[str, Any], parts: list[str | int], value: Any) -> str | None:
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = format_path(parts[:depth]) or "<root>"
        if isinstance(part, int):
            if not isinstance(node, list):
                return f"{where} is not an array"
            if not -len(node) <= part < len(node):
                return f"index {part} out of range: {where} has {len(node)} element(s)"
            if last:
                node[part] = value
                return None
            node = node[part]
        elif part.startswith("["):
            sel = part[1:-1]
            if not isinstance(node, list):
                return f"{where} is not an array"
            hits = [e for e in node if isinstance(e, dict) and e.get("name") == sel]
            if not hits:
                names = [e.get("name") for e in node if isinstance(e, dict)]
                return f"no element of {where} has name = {sel!r} (names: {names})"
            if last:
                return "a [name] selector must be followed by a key"
            node = hits[0]
        else:
            if not isinstance(node, dict):
                return f"{where} is not a table"
            if last:
                node[part] = value
                return None
            if part not in node:
                node[part] = {}
            node = node[part]
    return None  # pragma: no cover - parts is never empty


# --------------------------------------------------------------------------- validation


def validate_dict(raw: Any, *, source: str | None = None) -> Scenario:
    """Validate scenario data (as read from TOML) and return the Scenario.

    Parameters
    ----------
    raw : dict
        Scenario data.
    source : str, optional
        File the data came from: relative paths (tracer CSVs, parameter sets) resolve against
        its directory, and error messages name it. Default: in memory, paths relative to the
        working directory.

    Returns
    -------
    Scenario

    Raises
    ------
    ScenarioError
        With every problem found (field validation and cross-field rules).
    """
    label = str(source) if source else _IN_MEMORY
    base_dir = Path(source).resolve().parent if source else Path.cwd()
    if not isinstance(raw, Mapping):
        raise ScenarioError(label, [("", raw, "a scenario must be a table (dict)")])
    raw = dict(raw)
    found: list[tuple[list[str | int], Any, str]] = []
    scenario: Scenario | None = None
    try:
        scenario = Scenario.model_validate(
            raw, context={"base_dir": base_dir, "skip_cross_field": True}
        )
        cross = cross_field_problems(raw)
    except ValidationError as exc:
        found.extend(problems_from_validation_error(exc, raw, Scenario))
        cross = cross_field_problems(raw)
    except RecursionError:
        raise ScenarioError(label, [("", "data nested thousands deep",
                                     "nested too deeply to be a scenario")]) from None
    for path, value, rule in cross:
        found.append((_split_problem_path(path), value, rule))
    if found:
        seen: set[tuple[str, str]] = set()
        ordered = sorted(found, key=lambda p: _order_key(raw, p[0]))
        problems = []
        for parts, value, rule in ordered:
            path = format_path(parts)
            if (path, rule) in seen:
                continue
            seen.add((path, rule))
            problems.append((path, value, rule))
        raise ScenarioError(label, problems)
    assert scenario is not None
    scenario._source = str(Path(source).resolve()) if source else None
    for path, value, note in plausibility_notes(scenario):
        warnings.warn(ScenarioWarning(f"{label}: {path} = {value}: {note}"), stacklevel=3)
    return scenario


def load_scenario(
    path_or_dict: str | os.PathLike[str] | Mapping[str, Any] | Scenario,
    *,
    overrides: Overrides = None,
    source: str | os.PathLike[str] | None = None,
    override_label: str = "--set",
) -> Scenario:
    """Load and validate a scenario.

    Parameters
    ----------
    path_or_dict : str, path, dict or Scenario
        A TOML file, the name of a shipped scenario (``"baseline"``), scenario data, or an
        already validated Scenario (returned as is unless there are overrides).
    overrides : mapping or iterable of str, optional
        ``{path: value}`` or ``["path=value", ...]`` applied before validation (see
        :func:`normalize_overrides` and :func:`apply_overrides`).
    source : str or path, optional
        For dict input: the file it came from (relative paths resolve against its directory;
        messages name it).
    override_label : str, optional
        What the overrides are called in error messages (default ``"--set"``).

    Returns
    -------
    Scenario
        Validated, quantities in SI; ``scenario.source`` is the file path.

    Raises
    ------
    ScenarioError
        (a :class:`cmsim.errors.InputError`) naming file, field path, value and rule of every
        problem found.
    """
    overrides = normalize_overrides(overrides)
    src: str | None = str(source) if source is not None else None
    if isinstance(path_or_dict, Scenario):
        if not overrides:
            return path_or_dict
        raw: Any = path_or_dict.to_dict()
        src = src or path_or_dict._source
    elif isinstance(path_or_dict, Mapping):
        try:
            raw = copy.deepcopy(dict(path_or_dict))
        except RecursionError:
            raise ScenarioError(src or _IN_MEMORY, [("", "data nested thousands deep",
                                                     "nested too deeply to be a scenario")]
                                ) from None
    elif isinstance(path_or_dict, str | os.PathLike):
        path = resolve_scenario_path(path_or_dict)
        raw = read_toml(path)
        src = str(path)
    else:
        raise ScenarioError(
            src or _IN_MEMORY,
            [("", type(path_or_dict).__name__, "must be a file path, a dict or a Scenario")],
        )
    if overrides:
        raw = apply_overrides(raw, overrides, source=src or _IN_MEMORY, label=override_label)
    return validate_dict(raw, source=src)
