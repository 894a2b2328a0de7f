"""``cmsim stress-monitor``: a random disturbance campaign of the PAT monitor on your line.

::

    cmsim stress-monitor SCENARIO [--runs N] [--seed S] [--max-disturbances K]
                         [--kinds a,b] [--allow-unobservable] [--workers K]
                         [--set path=value ...] [--out DIR] [--check]

Prints, per disturbance kind, the runs, the runs that made nonconforming tablets, the runs
with an escape, the escaped tablets and the median waste ratio, then every run with an escape.
With ``--out`` writes ``stress_summary.csv``, ``stress_runs.csv`` and, for every run with an
escape, ``escapes/run_<i>.toml``: the scenario with that run's disturbances and seed, which
``cmsim run`` reproduces. ``--check`` exits with 1 when a run has an escape.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the ``stress-monitor`` subcommand (see the module docstring)."""
    from cmsim.faultbench.stress import STRESS_KINDS  # noqa: PLC0415

    p = sub.add_parser(
        "stress-monitor", parents=[common],
        help="random disturbance campaign of the PAT monitor on a scenario's line",
        description="Replace the scenario's disturbances by 1 to K random ones per run "
        f"(kinds: {', '.join(STRESS_KINDS)}; those that apply to the scenario), run seeded "
        "runs and count, against the true content, the nonconforming tablets the monitor "
        "accepted, per disturbance kind.")
    p.add_argument("scenario", help="scenario file (or the name of a shipped scenario)")
    p.add_argument("--runs", type=int, default=200, metavar="N", help="runs (default 200)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="root seed of the campaign (default 0)")
    p.add_argument("--max-disturbances", type=int, default=3, metavar="K",
                   help="at most K disturbances per run, 1-5 (default 3)")
    p.add_argument("--kinds", default=None, metavar="A,B",
                   help="kinds to draw from (default: all that apply)")
    p.add_argument("--allow-unobservable", action="store_true",
                   help="also draw a lot change and an NIR fault into the same run")
    p.add_argument("--workers", type=int, default=1, metavar="K",
                   help="local worker processes (default 1)")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", dest="set",
                   help="override applied to the scenario (repeatable)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="write stress_summary.csv, stress_runs.csv and escapes/run_<i>.toml")
    p.add_argument("--check", action="store_true",
                   help="exit with 1 when a run has an escape")
    p.set_defaults(handler=run_command)


def _markdown(summary: Any) -> str:
    cols = ["kind", "runs", "runs_nonconforming", "runs_with_escape", "escape_rate_high",
            "escapes", "median_waste_ratio"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in summary.to_dict("records"):
        lines.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c])
                                       for c in cols) + " |")
    return "\n".join(lines) + "\n"


def escape_scenarios(base: dict[str, Any], runs: Any) -> dict[str, dict[str, Any]]:
    """``{"escapes/run_<i>.toml": scenario data}`` of the runs with an escape."""
    out = {}
    for r in runs[runs["escapes"] > 0.5].to_dict("records"):
        data = {**base, "disturbances": json.loads(r["disturbances"]),
                "simulation": {**base["simulation"], "seed": int(r["seed"])}}
        out[f"escapes/run_{int(r['run'])}.toml"] = data
    return out


def run_command(args: argparse.Namespace) -> int:
    """Handler of ``cmsim stress-monitor`` (exit code 0, or 1 with ``--check`` and an
    escape)."""
    from cmsim import _toml_out  # noqa: PLC0415
    from cmsim._fs import write_files  # noqa: PLC0415
    from cmsim.config import load_scenario  # noqa: PLC0415
    from cmsim.faultbench.command import _names, check_out, local_executor  # noqa: PLC0415
    from cmsim.faultbench.stress import stress_monitor  # noqa: PLC0415

    scenario = load_scenario(args.scenario, overrides=args.set or None)  # once, for both
    check_out(args.out)
    executor = local_executor(args.workers)
    try:
        summary, runs = stress_monitor(
            scenario, runs=args.runs, seed=args.seed,
            max_disturbances=args.max_disturbances, kinds=_names(args.kinds, "--kinds"),
            allow_unobservable=args.allow_unobservable, executor=executor,
            progress=bool(sys.stderr.isatty() and not args.quiet))
    finally:
        if executor is not None:
            executor.shutdown()
    print(_markdown(summary), end="")
    bad = runs[runs["escapes"] > 0.5]
    print(f"\n{len(bad)} of {len(runs)} runs with an escape"
          + (":" if len(bad) else "."))
    for r in bad.to_dict("records"):
        print(f"  run {r['run']} (seed {r['seed']}): {r['kinds']}, {r['escapes']:.0f} tablets")
    if args.out is not None:
        base = scenario.portable_dict()
        writers = {"stress_summary.csv": lambda p: summary.to_csv(p, index=False),
                   "stress_runs.csv": lambda p: runs.to_csv(p, index=False)}
        for name, data in escape_scenarios(base, runs).items():
            writers[name] = lambda p, d=data: p.write_text(_toml_out.dumps(d), encoding="utf-8")
        files = write_files(args.out, writers)
        if not args.quiet:
            print(f"written: {len(files)} files in {args.out}")
    return 1 if args.check and len(bad) else 0
