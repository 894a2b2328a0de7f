"""The fault manifest: which scenario holds which labelled fault (ground truth).

``scenarios/faults/manifest.toml`` lists one ``[[fault]]`` table per case::

    [[fault]]
    name = "feeder_stop"            # unique, lower case, digits and "_"
    file = "feeder_stop.toml"       # scenario, relative to the manifest
    kind = "feeder_stop"            # one of KINDS
    start_s = 300.0                 # ground-truth start of the fault [s]
    end_s = 310.0                   # its end [s]; omitted: lasts to the end of the run
    nonconforming = true            # nonconforming tablets in every replicate?
    description = "API feeder stops for 10 s at 300 s."

The no-fault reference case has ``kind = "none"``, no ``start_s``/``end_s`` and
``nonconforming = false``; at most one case may have it. Every problem of a manifest is reported
at once as a :class:`ManifestError` naming the file, the field path, the value and the rule.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmsim.errors import InputError

__all__ = ["KINDS", "Fault", "ManifestError", "load_manifest"]

#: Allowed values of ``kind``.
KINDS = (
    "none", "feeder_stop", "partial_feed", "feeder_drift", "refill_surge", "lot_change",
    "blender_speed", "press_stop", "nir_bias", "nir_drift", "nir_dropout", "nir_frozen",
    "nir_spike", "start_up", "shut_down", "overlap",
)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_KEYS = {"name", "file", "kind", "start_s", "end_s", "nonconforming", "description"}
_REQUIRED = ("name", "file", "kind", "nonconforming", "description")


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ManifestError(InputError):
    """One or more problems in a fault manifest (CLI exit code 2).

    Parameters
    ----------
    source : str
        The manifest file.
    problems : list of (field path, value, rule)
        Each problem found, in file order.
    """

    def __init__(self, source: str, problems: list[tuple[str, Any, str]]) -> None:
        self.source = str(source)
        self.problems = list(problems)
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        for path, value, rule in self.problems:
            lines.append(f"  {path or '<root>'} = {_short_repr(value)}: {rule}")
        super().__init__("\n".join(lines))

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.source, self.problems))


@dataclass(frozen=True)
class Fault:
    """One labelled case of the benchmark.

    Attributes
    ----------
    name : str
        Unique case name.
    path : Path
        Scenario file (absolute).
    kind : str
        One of :data:`KINDS`.
    start_s : float or None
        Ground-truth start of the fault [s]; None for the no-fault case.
    end_s : float or None
        Ground-truth end [s]; None: until the end of the run (or no fault).
    nonconforming : bool
        True: the fault makes nonconforming tablets in every replicate (the waste-ratio target
        applies). False: the fault itself makes none (noise may make a few, e.g. at a
        start-up). Checked against the simulator's true content by the tests.
    description : str
        One line.
    """

    name: str
    path: Path
    kind: str
    start_s: float | None
    end_s: float | None
    nonconforming: bool
    description: str

    @property
    def is_reference(self) -> bool:
        """True for the no-fault case (``kind = "none"``)."""
        return self.kind == "none"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def _check_fault(i: int, raw: Any, base: Path, seen: dict[str, int],
                 out: list[tuple[str, Any, str]]) -> Fault | None:
    where = f"fault[{i}]"
    if not isinstance(raw, dict):
        out.append((where, raw, "must be a table [[fault]]"))
        return None
    n0 = len(out)
    for key in sorted(set(raw) - _KEYS):
        out.append((f"{where}.{key}", raw[key],
                    f"unknown key (allowed: {', '.join(sorted(_KEYS))})"))
    for key in _REQUIRED:
        if key not in raw:
            out.append((f"{where}.{key}", "<missing>", "required"))
    name, file, kind = raw.get("name"), raw.get("file"), raw.get("kind")
    if "name" in raw:
        if not isinstance(name, str) or not _NAME.match(name):
            out.append((f"{where}.name", name,
                        "must be a lower-case name of letters, digits and '_'"))
        elif name in seen:
            out.append((f"{where}.name", name, f"duplicate name (also fault[{seen[name]}])"))
        else:
            seen[name] = i
    path = None
    if "file" in raw:
        if not isinstance(file, str) or not file.endswith(".toml"):
            out.append((f"{where}.file", file, "must be a scenario file name ending in .toml"))
        else:
            path = Path(file) if Path(file).is_absolute() else base / file
            if not path.is_file():
                out.append((f"{where}.file", file, f"file not found ({path})"))
    if "kind" in raw and kind not in KINDS:
        out.append((f"{where}.kind", kind, f"must be one of {', '.join(KINDS)}"))
    start, end = raw.get("start_s"), raw.get("end_s")
    if kind == "none":
        for key in ("start_s", "end_s"):
            if key in raw:
                out.append((f"{where}.{key}", raw[key],
                            'not allowed for kind = "none" (the no-fault case has no fault)'))
        if raw.get("nonconforming") is True:
            out.append((f"{where}.nonconforming", True,
                        'must be false for kind = "none" (the no-fault case)'))
    elif "kind" in raw:
        if "start_s" not in raw:
            out.append((f"{where}.start_s", "<missing>", "required unless kind = \"none\""))
        elif not _is_number(start) or start < 0:
            out.append((f"{where}.start_s", start, "must be a number of seconds >= 0"))
        if "end_s" in raw:
            if not _is_number(end):
                out.append((f"{where}.end_s", end, "must be a number of seconds"))
            elif _is_number(start) and not end > start:
                out.append((f"{where}.end_s", end, f"must be > start_s ({start:g} s)"))
    if "nonconforming" in raw and not isinstance(raw["nonconforming"], bool):
        out.append((f"{where}.nonconforming", raw["nonconforming"], "must be true or false"))
    desc = raw.get("description")
    if "description" in raw and (not isinstance(desc, str) or not desc.strip()):
        out.append((f"{where}.description", desc, "must be a non-empty string"))
    if len(out) > n0 or path is None:
        return None
    return Fault(name=name, path=path.resolve(), kind=kind,
                 start_s=None if kind == "none" else float(start),
                 end_s=None if end is None else float(end),
                 nonconforming=raw["nonconforming"], description=desc.strip())


def load_manifest(path: str | Path) -> list[Fault]:
    """Read and validate a fault manifest.

    Parameters
    ----------
    path : str or Path
        The manifest (TOML).

    Returns
    -------
    list of Fault
        In file order.

    Raises
    ------
    ManifestError
        Every problem found (file, field path, value, rule).
    """
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ManifestError(str(p), [("", str(p), f"cannot read the file ({exc.strerror})")]
                            ) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(str(p), [("", str(p), f"not valid TOML (UTF-8): {exc}")]) from None
    problems: list[tuple[str, Any, str]] = []
    for key in sorted(set(raw) - {"fault"}):
        problems.append((key, raw[key], "unknown key (the manifest holds [[fault]] tables)"))
    items = raw.get("fault")
    if not isinstance(items, list) or not items:
        problems.append(("fault", items if items is not None else "<missing>",
                         "must be a non-empty list of [[fault]] tables"))
        items = []
    seen: dict[str, int] = {}
    faults = [_check_fault(i, item, p.parent, seen, problems) for i, item in enumerate(items)]
    refs = [i for i, item in enumerate(items) if isinstance(item, dict)
            and item.get("kind") == "none"]
    for i in refs[1:]:
        problems.append((f"fault[{i}].kind", "none",
                         f'at most one no-fault case (kind = "none"; first: fault[{refs[0]}])'))
    if problems:
        raise ManifestError(str(p), problems)
    return [f for f in faults if f is not None]
