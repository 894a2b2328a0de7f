"""Saved runs of the RTD core's headline ratios, and the comparison that flags regressions.

A *run* is a JSON document written by ``python benchmarks/report_ratios.py --save``::

    {"schema": 1, "created": ISO time, "commit": "...", "dirty": bool,
     "machine": {...}, "load_start": [1, 5, 15 min], "load_end": [...],
     "settings": {"quick": bool, "rounds": R, "repeats": M},
     "ratios": {name: {"median": x, "best": x, "rounds": [per-round ratios],
                       "lower_is_better": bool, "target": x, "detail": {absolute times ...}}}}

:func:`compare_runs` compares the medians of two runs ratio by ratio, on a log scale: a ratio got
worse by ``d = |log(current / saved)|`` in its bad direction. The noise of a ratio is the robust
spread (1.4826 x median absolute deviation of the logs) of its per-round ratios in either run,
never below its floor measured between repeated runs on the development machine
(:data:`NOISE_FLOORS`). A change counts as a regression when ``d > k x noise`` (``k = 3`` by
default). No timing happens here: the module only reads, writes and compares numbers.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = 1
#: Default directory of saved runs (git-ignored, like pytest-benchmark's ``.benchmarks``).
DEFAULT_DIR = Path(".benchmarks") / "ratios"
#: Smallest noise assumed per ratio [log units]: the run-to-run spread of the medians measured by
#: repeating ``report_ratios.py`` on the 2-core development machine shared with other work
#: (README, "Tracking the speed of the RTD core"; load 2-9). Single-thread ratios repeat within
#: 2-3 %; the 2-thread batch ratios swing by 25-40 % with the load of other users.
NOISE_FLOORS = {
    "tis_stream_x_copy": 0.03,
    "direct_k50_speedup": 0.03,
    "tis_batch_x_copy": 0.26,
    "batch_fir_x_copy": 0.33,
    "apply_speedup_vs_rtdpy": 0.13,
    "dispatcher_worst_x_best": 0.32,
}
#: Floor of a ratio not in :data:`NOISE_FLOORS`.
NOISE_FLOOR = 0.08
#: Default multiple of the noise beyond which a worse ratio is flagged.
DEFAULT_K = 3.0


class RunFileError(ValueError):
    """A saved run that cannot be read (names the file and the problem)."""


def robust_spread(values: list[float]) -> float:
    """1.4826 x the median absolute deviation of ``log(values)`` (0 for fewer than 2 values).

    Parameters
    ----------
    values : list of float
        Positive ratios [-].

    Returns
    -------
    float
        Robust standard deviation of the logs [log units].
    """
    if len(values) < 2:
        return 0.0
    logs = [math.log(v) for v in values]
    mid = statistics.median(logs)
    return 1.4826 * statistics.median(abs(v - mid) for v in logs)


@dataclass(frozen=True)
class Finding:
    """Comparison of one ratio between a saved run and the current one."""

    name: str
    saved: float
    current: float
    change: float  # log(current / saved), positive = worse
    noise: float  # log units
    status: str  # "regression", "improvement", "same" or "missing"

    @property
    def sigmas(self) -> float:
        """Change in units of the noise (signed, positive = worse)."""
        return self.change / self.noise if self.noise > 0 else math.inf * (self.change > 0)


def compare_runs(current: dict[str, Any], saved: dict[str, Any], k: float = DEFAULT_K,
                 floor: float | None = None) -> list[Finding]:
    """Compare every ratio of ``saved`` with ``current``.

    Parameters
    ----------
    current, saved : dict
        Runs in the saved-run format (see the module docstring).
    k : float
        Multiple of the noise beyond which a change is flagged [-], > 0.
    floor : float, optional
        Smallest noise assumed for every ratio [log units], >= 0; default: the measured
        :data:`NOISE_FLOORS` (:data:`NOISE_FLOOR` for other ratios).

    Returns
    -------
    list of Finding
        One per ratio of ``saved``, in its order; ``status="missing"`` when the current run lacks
        it (a renamed or dropped benchmark, reported but not a regression).
    """
    if not k > 0 or (floor is not None and not floor >= 0):
        raise ValueError(f"k must be > 0 and floor >= 0 (got k={k!r}, floor={floor!r})")
    out = []
    for name, old in saved["ratios"].items():
        new = current["ratios"].get(name)
        if new is None:
            out.append(Finding(name, old["median"], math.nan, math.nan, math.nan, "missing"))
            continue
        change = math.log(new["median"] / old["median"])
        if not old.get("lower_is_better", True):
            change = -change
        least = NOISE_FLOORS.get(name, NOISE_FLOOR) if floor is None else floor
        noise = max(robust_spread(old.get("rounds", [])), robust_spread(new.get("rounds", [])),
                    least)
        if change > k * noise:
            status = "regression"
        elif change < -k * noise:
            status = "improvement"
        else:
            status = "same"
        out.append(Finding(name, old["median"], new["median"], change, noise, status))
    return out


def format_comparison(findings: list[Finding], k: float = DEFAULT_K) -> str:
    """A plain-text table of the findings (one line per ratio)."""
    width = max([len(f.name) for f in findings] + [5])
    lines = [f"{'ratio'.ljust(width)} | saved | current | change | noise | verdict (k = {k:g})"]
    for f in findings:
        if f.status == "missing":
            lines.append(f"{f.name.ljust(width)} | {f.saved:.2f}x | - | - | - | missing")
            continue
        lines.append(f"{f.name.ljust(width)} | {f.saved:.2f}x | {f.current:.2f}x | "
                     f"{100 * math.expm1(f.change):+.0f}% worse | {100 * f.noise:.1f}% | "
                     f"{f.status.upper() if f.status == 'regression' else f.status}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ files
def machine_info() -> dict[str, Any]:
    """Description of this machine: CPU model, core count, OS, Python and library versions."""
    import numba
    import numpy
    import scipy

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"node": platform.node(), "cpu": cpu, "cpus": os.cpu_count(),
            "system": platform.platform(), "python": platform.python_version(),
            "numpy": numpy.__version__, "scipy": scipy.__version__, "numba": numba.__version__}


def git_state(repo: Path | None = None) -> tuple[str, bool]:
    """``(commit, dirty)`` of the working tree (``("unknown", False)`` outside git)."""
    cwd = str(repo or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=cwd, capture_output=True, text=True,
                                    check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit, dirty


def new_run(ratios: dict[str, dict[str, Any]], settings: dict[str, Any],
            load_start: list[float] | None, load_end: list[float] | None) -> dict[str, Any]:
    """Assemble a run document (commit, machine and time filled in here)."""
    commit, dirty = git_state()
    return {"schema": SCHEMA,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "commit": commit, "dirty": dirty, "machine": machine_info(),
            "load_start": load_start, "load_end": load_end, "settings": settings,
            "ratios": ratios}


def save_run(run: dict[str, Any], directory: Path = DEFAULT_DIR) -> Path:
    """Write ``run`` as ``<directory>/<UTC time>_<commit[:10]>.json`` (complete or absent)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = run["created"].replace(":", "").replace("-", "").replace("+0000", "Z")
    path = directory / f"{stamp}_{run['commit'][:10]}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(run, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_run(path: Path | str, directory: Path = DEFAULT_DIR) -> dict[str, Any]:
    """Read a saved run; ``"latest"`` is the newest file in ``directory``.

    Raises
    ------
    RunFileError
        Naming the file and what is wrong with it (missing, not JSON, no ratios, bad values).
    """
    if str(path) == "latest":
        files = sorted(Path(directory).glob("*.json"))
        if not files:
            raise RunFileError(f"{directory}: no saved run (save one with --save)")
        path = files[-1]
    path = Path(path)
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise RunFileError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(run, dict) or not isinstance(run.get("ratios"), dict):
        raise RunFileError(f"{path}: field 'ratios' missing: not a saved run of report_ratios.py")
    for name, entry in run["ratios"].items():
        value = entry.get("median") if isinstance(entry, dict) else None
        if not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
            raise RunFileError(f"{path}: ratios.{name}.median = {value!r}: must be a positive "
                               "finite number")
        rounds = entry.get("rounds", [])
        if not isinstance(rounds, list) or not all(
                isinstance(v, (int, float)) and v > 0 and math.isfinite(v) for v in rounds):
            raise RunFileError(f"{path}: ratios.{name}.rounds = {rounds!r}: must be a list of "
                               "positive finite numbers")
    run["path"] = str(path)
    return run
