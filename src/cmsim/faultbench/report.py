"""Text output of the fault benchmark: a Markdown table and the files of ``--out``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from cmsim.faultbench.metrics import TARGETS

__all__ = ["to_markdown", "write_outputs"]

_HEADER = ("fault", "policy", "reps", "nonconf. mean (reps)", "reps w/ escape (95 % CI high)",
           "escape rate", "waste ratio (median)", "waste (median)", "false div. % (max)",
           "false events / 8 h", "detection delay [s] (detected)", "expected / true escapes",
           "targets")


def _num(x: Any, fmt: str = "{:.3g}") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return fmt.format(x)


def _row(r: dict[str, Any]) -> list[str]:
    n = int(r["replicates"])
    verdicts = [f"{label} {r[key]}" for label, key in (
        ("escape", "target_escape"), ("waste", "target_waste"),
        ("false div.", "target_false_diversion")) if r[key] != "n/a"]
    delay = "-" if r["detected"] == 0 and math.isnan(r["detection_delay_median_s"]) else \
        f"{_num(r['detection_delay_median_s'])} ({int(r['detected'])}/{n})"
    false_pct = "-" if math.isnan(r["false_diversion_pct"]) else \
        f"{r['false_diversion_pct']:.3g} ({r['false_diversion_pct_max']:.3g})"
    return [
        r["fault"], r["policy"], str(n),
        f"{_num(r['nonconforming_mean'], '{:.0f}')} ({int(r['replicates_nonconforming'])})",
        f"{int(r['replicates_with_escape'])} ({100 * r['escape_ci95_high']:.2g} %)",
        _num(r["escape_rate"]), _num(r["waste_ratio_median"]),
        _num(r["waste_median"], "{:.0f}"), false_pct, _num(r["false_events_per_8h"]), delay,
        f"{_num(r['expected_escapes'], '{:.1f}')} / {_num(r['true_escapes'], '{:.1f}')}",
        ", ".join(verdicts),
    ]


def to_markdown(summary: Any) -> str:
    """The benchmark table as GitHub Markdown, with a legend of the targets.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`cmsim.bench_monitor` output.

    Returns
    -------
    str
    """
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    for r in summary.to_dict("records"):
        lines.append("| " + " | ".join(_row(r)) + " |")
    lines += ["", f"Targets: no replicate with an escape; median waste ratio <= "
              f"{TARGETS['waste_ratio_median']:g} (faults that make nonconforming tablets); "
              f"false diversion <= {TARGETS['false_diversion_pct']:g} % of the tablets of the "
              "no-fault run (mean over replicates). Tablet counts are tablet equivalents "
              "(mass / nominal tablet mass)."]
    return "\n".join(lines) + "\n"


def write_outputs(summary: Any, runs: Any, out: str | os.PathLike) -> list[Path]:
    """Write ``bench_monitor.csv``, ``bench_monitor.md`` and ``bench_monitor_runs.csv``.

    Each file is either complete or absent (:func:`cmsim._fs.write_files`).

    Parameters
    ----------
    summary : pandas.DataFrame
        One row per fault and policy.
    runs : pandas.DataFrame
        One row per run.
    out : path
        Output directory (created if needed).

    Returns
    -------
    list of Path
        The files written.
    """
    from cmsim._fs import write_files  # noqa: PLC0415

    return write_files(out, {
        "bench_monitor.csv": lambda p: summary.to_csv(p, index=False),
        "bench_monitor_runs.csv": lambda p: runs.to_csv(p, index=False),
        "bench_monitor.md": lambda p: p.write_text(to_markdown(summary), encoding="utf-8")})
