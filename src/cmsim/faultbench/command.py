"""``cmsim bench-monitor``: the labelled fault benchmark from the command line.

::

    cmsim bench-monitor [--replicates N] [--policies risk,quantile] [--faults a,b]
                        [--workers K] [--seed S] [--set path=value ...] [--manifest FILE]
                        [--out DIR] [--check]

Prints the Markdown table; with ``--out`` writes ``bench_monitor.csv`` (per fault and policy),
``bench_monitor_runs.csv`` (per run) and ``bench_monitor.md``. ``--check`` exits with 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the ``bench-monitor`` subcommand.

    Parameters
    ----------
    sub : argparse subparsers action
        From ``ArgumentParser.add_subparsers``.
    common : argparse.ArgumentParser
        Parent parser with the options every subcommand has (``--debug``, ``--quiet``).
    """
    p = sub.add_parser(
        "bench-monitor", parents=[common], help="labelled fault benchmark of the PAT monitor",
        description="Run seeded replicates of every labelled fault of the manifest "
        "(scenarios/faults) per diversion policy and print, per fault and policy: replicates "
        "with an escape, escape rate, waste ratio, false diversions on the no-fault case, "
        "detection delay and expected vs true escapes, with pass/fail per target.")
    p.add_argument("--replicates", type=int, default=200, metavar="N",
                   help="replicates per fault and policy (default 200)")
    p.add_argument("--policies", default=None, metavar="P1,P2",
                   help="diversion.policy values to compare (default: risk,quantile)")
    p.add_argument("--faults", default=None, metavar="F1,F2",
                   help="fault names of the manifest (default: all)")
    p.add_argument("--workers", type=int, default=1, metavar="K",
                   help="local worker processes (default 1)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="root seed of the replicates (default 0)")
    p.add_argument("--manifest", type=Path, default=None, metavar="FILE",
                   help="fault manifest (default: the shipped scenarios/faults/manifest.toml)")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", dest="set",
                   help="override applied to every fault scenario, e.g. "
                   "simulation.duration='10 min' (repeatable)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="write bench_monitor.csv, bench_monitor_runs.csv and bench_monitor.md")
    p.add_argument("--check", action="store_true",
                   help="exit with 1 when a target is missed")
    p.set_defaults(handler=run_command)


def _names(text: str | None, option: str) -> list[str] | None:
    from cmsim.errors import ParameterError  # noqa: PLC0415

    if text is None:
        return None
    names = [t.strip() for t in text.split(",")]
    if not names or any(not t for t in names):
        raise ParameterError(option, text, "must be a comma-separated list of names")
    return names


def check_out(out: Path | None) -> None:
    """Create ``--out`` before any run, so that a directory that cannot be written is refused
    up front (not after the whole campaign, with its results lost)."""
    from cmsim._outdir import make_dir  # noqa: PLC0415

    if out is not None:
        make_dir(out, f"--out {out}: cannot create the directory", probe=True)


def local_executor(workers: int) -> Any:
    """A process pool of ``workers`` processes for ``--workers`` (None for 1: run here)."""
    from cmsim.errors import ParameterError  # noqa: PLC0415

    if workers < 1:
        raise ParameterError("--workers", workers, "must be >= 1")
    if workers == 1:
        return None
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    return ProcessPoolExecutor(max_workers=workers)


def run_command(args: argparse.Namespace) -> int:
    """Handler of ``cmsim bench-monitor`` (exit code 0, or 1 with ``--check`` and a miss)."""
    from cmsim.faultbench.bench import bench_monitor  # noqa: PLC0415
    from cmsim.faultbench.report import to_markdown, write_outputs  # noqa: PLC0415

    check_out(args.out)
    executor = local_executor(args.workers)
    try:
        summary, runs = bench_monitor(
            replicates=args.replicates, policies=_names(args.policies, "--policies"),
            faults=_names(args.faults, "--faults"), manifest=args.manifest, seed=args.seed,
            overrides=args.set, executor=executor,
            progress=bool(sys.stderr.isatty() and not args.quiet), return_runs=True)
    finally:
        if executor is not None:
            executor.shutdown()
    print(to_markdown(summary), end="")
    if args.out is not None:
        files = write_outputs(summary, runs, args.out)
        if not args.quiet:
            print(f"written: {', '.join(str(f) for f in files)}")
    verdicts = summary.reindex(columns=["target_escape", "target_waste",
                                        "target_false_diversion"]).to_numpy().ravel()
    return 1 if args.check and "fail" in set(verdicts.tolist()) else 0
