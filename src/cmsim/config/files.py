"""Files a scenario refers to: tracer CSVs and parameter-set TOML files.

The readers raise ``ValueError`` with the file and the problem; the schema's validators turn
that into a scenario problem at the field that names the file.
"""

from __future__ import annotations

import csv
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["find_parameter_set", "read_parameter_set", "read_tracer_csv", "shipped_models_dir"]


def read_tracer_csv(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Read a tracer CSV with columns ``t`` [s] and ``e`` [1/s]; raise ValueError on problems."""
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(line for line in fh if not line.lstrip().startswith("#"))]
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: empty CSV")
    header = [c.strip().lower() for c in rows[0]]
    if "t" not in header or "e" not in header:
        raise ValueError(f"{path}: header must name columns 't' [s] and 'e' [1/s], got {header}")
    it, ie = header.index("t"), header.index("e")
    t: list[float] = []
    e: list[float] = []
    for lineno, row in enumerate(rows[1:], start=2):
        try:
            tv, ev = float(row[it]), float(row[ie])
        except (ValueError, IndexError):
            raise ValueError(f"{path}: data row {lineno} is not two numbers: {row}") from None
        if not (math.isfinite(tv) and math.isfinite(ev)):
            raise ValueError(f"{path}: data row {lineno} is not finite: {row}")
        t.append(tv)
        e.append(ev)
    if len(t) < 2:
        raise ValueError(f"{path}: needs at least 2 data rows")
    if t[0] < 0 or any(b <= a for a, b in zip(t, t[1:], strict=False)):
        raise ValueError(f"{path}: column t must be >= 0 and strictly increasing")
    if min(e) < 0:
        raise ValueError(f"{path}: column e must be >= 0")
    area = sum(0.5 * (e[i] + e[i + 1]) * (t[i + 1] - t[i]) for i in range(len(t) - 1))
    if not area > 0:
        raise ValueError(f"{path}: the area under e(t) must be > 0")
    return tuple(t), tuple(e)


def shipped_models_dir() -> Path | None:
    """The parameter sets shipped with cmsim (``cmsim/data/models``)."""
    try:
        return Path(str(resources.files("cmsim.data") / "models"))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - broken installation
        return None


def find_parameter_set(name: str, base_dir: Path | str | None = None) -> Path | None:
    """Locate the parameter-set file for ``model = "model"``, ``name = ...``.

    Parameters
    ----------
    name : str
        File name with or without ``.toml`` (e.g. ``"blender_tis5_60s"``).
    base_dir : path, optional
        Directory of the referring scenario file (default: the working directory).

    Returns
    -------
    Path or None
        The first existing candidate among ``base_dir/name``, ``base_dir/models/name``,
        ``base_dir/../models/name`` and the shipped ``cmsim/data/models/name``; None if none.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    fname = name if name.endswith(".toml") else f"{name}.toml"
    candidates = [base / fname, base / "models" / fname, base.parent / "models" / fname]
    shipped = shipped_models_dir()
    if shipped is not None:
        candidates.append(shipped / fname)
    for c in candidates:
        if c.is_file():
            return c
    return None


def read_parameter_set(path: Path) -> dict[str, Any]:
    """The TOML data of a parameter-set file; raise ValueError on a syntax error."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"parameter set {path}: TOML syntax error: {exc}") from None
