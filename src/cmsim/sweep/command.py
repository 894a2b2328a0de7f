"""The ``cmsim sweep`` subcommand.

Exit codes (also in ``docs/sweeps.md``):

====  ==================================================================================
0     every run finished; DIR holds the table and the per grid point statistics
1     runtime failure of the sweep itself (not of a case)
2     invalid input, or DIR holds another sweep (a different definition) or no sweep
3     the sweep finished but some cases raised: their rows carry ``error_type`` and
      ``error_message`` (re-running the command runs only those again)
4     DIR is in use by another running sweep (see DIR/.lock)
130   interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: the finished chunks are kept in
      DIR/parts; the same command resumes
====  ==================================================================================
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cmsim.errors import InputError

__all__ = ["EXIT_CASES_FAILED", "EXIT_LOCKED", "add_parser", "run_command"]

EXIT_OK = 0
EXIT_CASES_FAILED = 3
EXIT_LOCKED = 4

DESCRIPTION = (
    "Run replicates and a grid of overrides. Finished chunks go to DIR/parts/ as they finish "
    "(a re-run with the same definition resumes); at the end DIR/sweep.parquet and "
    "DIR/sweep.csv hold one row per run and DIR/sweep_summary.csv the per grid point "
    "statistics (mean, std, quantiles, escape probability with its Wilson interval).")
EPILOG = ("Exit codes: 0 success, 1 runtime failure, 2 invalid input or DIR holds another "
          "sweep, 3 some cases failed (rows with error_type), 4 DIR in use by another sweep, "
          "130/143 interrupted by SIGINT/SIGTERM (finished chunks kept; re-run to resume).")


class _SweepInputError(InputError):
    """Invalid ``cmsim sweep`` argument (exit code 2)."""


def add_parser(sub: Any, common: argparse.ArgumentParser,
               add_set: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """Register ``cmsim sweep`` on the subparsers ``sub`` of the ``cmsim`` parser."""
    p = sub.add_parser("sweep", parents=[common], help="Monte Carlo replicates / parameter grid",
                       description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("scenario", metavar="SCENARIO", help="TOML file or shipped scenario name")
    p.add_argument("--replicates", type=int, default=1, metavar="N",
                   help="replicates per grid point (default 1)")
    p.add_argument("--grid", action="append", default=[], metavar="PATH=V1,V2",
                   help="grid axis, e.g. feeders[0].noise_rsd=0.02,0.05 (repeatable)")
    ex = p.add_mutually_exclusive_group()
    ex.add_argument("--workers", type=int, default=None, metavar="K",
                    help="local worker processes")
    ex.add_argument("--dask", metavar="ADDRESS", default=None,
                    help="dask.distributed scheduler address, e.g. tcp://head:8786 (needs "
                    "pip install 'cmsim[dask]')")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="root seed of the replicates (default 0)")
    p.add_argument("--task-seconds", type=float, default=None, metavar="T",
                   help="target compute time of one chunk of cases [s] (default 1)")
    p.add_argument("--out", metavar="DIR", type=Path, required=True,
                   help="sweep directory (created; re-use it to resume)")
    add_set(p)
    p.set_defaults(handler=run_command)
    return p


def _split_values(text: str) -> list[str]:
    parts, depth, quote, cur = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    parts.append(cur.strip())
    return [p for p in parts if p]


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``--grid PATH=V1,V2`` items as ``{path: [values]}`` (values read like ``--set``)."""
    from cmsim.config.loader import _parse_override_value, parse_field_path  # noqa: PLC0415

    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise _SweepInputError(f"--grid {item!r}: must be PATH=V1,V2,...")
        path, values = item.split("=", 1)
        try:
            parse_field_path(path)
        except ValueError as exc:
            raise _SweepInputError(f"--grid {item!r}: {exc}") from None
        vals = [_parse_override_value(v) for v in _split_values(values)]
        if not vals:
            raise _SweepInputError(f"--grid {item!r}: needs at least one value")
        grid[path.strip()] = vals
    return grid


def _check(args: argparse.Namespace) -> None:
    if args.replicates < 1:
        raise _SweepInputError(f"--replicates {args.replicates}: must be >= 1")
    if args.workers is not None and args.workers < 1:
        raise _SweepInputError(f"--workers {args.workers}: must be >= 1")
    if args.seed < 0:
        raise _SweepInputError(f"--seed {args.seed}: must be >= 0")
    if args.task_seconds is not None and not args.task_seconds > 0:
        raise _SweepInputError(f"--task-seconds {args.task_seconds}: must be > 0")


def _dask_client(address: str) -> Any:
    try:
        from distributed import Client  # noqa: PLC0415
    except ModuleNotFoundError:
        raise _SweepInputError("--dask needs the 'distributed' package: pip install "
                               "'cmsim[dask]'") from None
    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a malformed address
        raise _SweepInputError(f"--dask {address}: no Dask scheduler reached ({exc})") from None


def run_command(args: argparse.Namespace) -> int:
    """Handler of ``cmsim sweep`` (returns the exit code; see the module docstring)."""
    from cmsim.config import load_scenario  # noqa: PLC0415
    from cmsim.sweep.runner import (  # noqa: PLC0415
        TASK_SECONDS,
        SweepInterrupted,
        sweep,
        validate_case,
    )
    from cmsim.sweep.store import SweepLockedError  # noqa: PLC0415

    _check(args)
    scenario = load_scenario(args.scenario, overrides=args.set)
    grid = parse_grid(args.grid)
    # check every grid value against the schema before spending any compute
    for item in args.grid:
        path, values = item.split("=", 1)
        for text in _split_values(values):
            validate_case(scenario, [f"{path}={text}"], label="--grid")
    client = _dask_client(args.dask) if args.dask else None
    quiet = args.quiet
    progress = bool(sys.stderr.isatty() and not quiet and not os.environ.get("CI"))
    try:
        table = sweep(scenario, replicates=args.replicates, grid=grid or None, seed=args.seed,
                      executor=client, workers=args.workers, out=args.out, progress=progress,
                      task_seconds=args.task_seconds or TASK_SECONDS)
    except SweepLockedError as exc:
        print(f"cmsim sweep: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except SweepInterrupted as exc:
        done = len(list((args.out / "parts").glob("part-*.parquet")))
        print(f"cmsim sweep: {exc}; {done} finished chunk(s) kept in {args.out}/parts; run the "
              "same command again to resume", file=sys.stderr)
        return 128 + exc.signum
    finally:
        if client is not None:
            client.close()
    failed = table.failed
    if len(failed):
        print(f"cmsim sweep: {len(failed)} of {len(table)} run(s) failed (rows with "
              f"error_type in {args.out}/sweep.parquet); first:", file=sys.stderr)
        for _, row in failed.head(3).iterrows():
            print(f"  case {row['case']} replicate {row['replicate']}: {row['error_type']}: "
                  f"{row['error_message']}", file=sys.stderr)
        return EXIT_CASES_FAILED
    if not quiet:
        print(_summary_text(table))
        print(f"{len(table)} run(s) written to {args.out}/sweep.parquet, sweep.csv and "
              "sweep_summary.csv")
    return EXIT_OK


def _summary_text(table: Any) -> str:
    """Per grid point: the grid values, replicates, mean escapes and waste [tablets] and the
    escape probability with its 95 % Wilson interval (the first columns of
    sweep_summary.csv)."""
    stats = table.summary(metrics=[m for m in ("escapes", "waste") if m in table.columns],
                          quantiles=())
    axes = list(getattr(table, "grid_axes", None) or [])
    head = [*axes, "replicates", "escapes (mean)", "waste (mean)", "P(escape) [95 % CI]"]
    rows = []
    for _, r in stats.iterrows():
        rows.append([*(str(r[a]) for a in axes), str(int(r["replicates"])),
                     f"{r.get('escapes_mean', float('nan')):.4g}",
                     f"{r.get('waste_mean', float('nan')):.4g}",
                     f"{r['escape_probability']:.3g} [{r['escape_ci_low']:.3g}, "
                     f"{r['escape_ci_high']:.3g}]"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)
