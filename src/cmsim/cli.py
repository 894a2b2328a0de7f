"""The ``cmsim`` command line (argparse; thin over the Python API).

Subcommands (docs/outputs.md, "Command line")::

    cmsim run SCENARIO [--out DIR] [--set path=value ...] [--seed N] [--quiet]
              [--no-figures] [--no-report] [--overwrite]
    cmsim validate SCENARIO [--set path=value ...]
    cmsim sweep SCENARIO --replicates N [--grid path=v1,v2 ...] [--workers K | --dask ADDR]
                --out DIR
    cmsim verify-log FILE|DIR [--expect-head HASH] [--expect-records N]
    cmsim show DIR
    cmsim bench-monitor [--replicates N] [--policies P,..] [--faults F,..] [--out DIR]

SCENARIO is a TOML file or the name of a shipped scenario (``cmsim validate baseline``).
Exit codes: 0 success, 2 invalid input (the message names file, field path, value and rule; no
traceback), 1 runtime failure. ``--debug`` prints tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cmsim._version import __version__
from cmsim.errors import InputError, SimulationError
from cmsim.sweep.command import add_parser as _add_sweep_parser

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_INPUT = 2


class _CliInputError(InputError):
    """Invalid command-line input that is not a scenario problem (exit code 2)."""


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """Return the argparse parser of the ``cmsim`` command.

    Returns
    -------
    argparse.ArgumentParser
        With one subparser per subcommand; each sets ``args.handler``.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help="print a traceback when something fails")
    common.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar and only essential output")

    parser = argparse.ArgumentParser(
        prog="cmsim",
        description="Continuous direct-compression line simulator (RTD tracing, PAT, diversion).",
        epilog="Exit codes: 0 success, 1 runtime failure, 2 invalid input.",
    )
    parser.add_argument("--version", action="version", version=f"cmsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", parents=[common], help="simulate a scenario",
                       description="Simulate a scenario; with --out write the output directory "
                       "(summary.json, timeseries.parquet, events.jsonl, figures, report).")
    p.add_argument("scenario", metavar="SCENARIO", help="TOML file or shipped scenario name")
    p.add_argument("--out", metavar="DIR", type=Path, default=None,
                   help="output directory (written atomically)")
    _add_set(p)
    p.add_argument("--seed", type=int, default=None,
                   help="root seed (overrides simulation.seed)")
    p.add_argument("--no-figures", action="store_true",
                   help="skip the PNG figures (most of the writing time); the report keeps "
                   "its tables")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing cmsim output directory at --out (never the "
                   "default)")
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser("validate", parents=[common], help="check a scenario file",
                       description="Validate a scenario and print a short resolved summary.")
    p.add_argument("scenario", metavar="SCENARIO", help="TOML file or shipped scenario name")
    _add_set(p)
    p.set_defaults(handler=_cmd_validate)

    _add_sweep_parser(sub, common, _add_set)

    p = sub.add_parser("verify-log", parents=[common], help="check an events.jsonl hash chain",
                       description="Exit 0 if the hash chain of the event log holds, 1 with "
                       "the first broken seq otherwise. The chain alone cannot show that "
                       "records were removed from the end: give the anchors (--expect-head, "
                       "--expect-records) or an output directory DIR, whose summary.json "
                       "holds them (event_log.records, event_log.head_hash).")
    p.add_argument("file", metavar="FILE|DIR", type=Path,
                   help="events.jsonl, or an output directory (DIR/events.jsonl checked against "
                   "the anchors in DIR/summary.json)")
    p.add_argument("--expect-head", metavar="HASH", default=None,
                   help="hash of the last record (64 hex digits) recorded elsewhere")
    p.add_argument("--expect-records", metavar="N", type=int, default=None,
                   help="number of records recorded elsewhere")
    p.set_defaults(handler=_cmd_verify_log)

    p = sub.add_parser("show", parents=[common], help="print the summary of a run",
                       description="Print summary.json of an output directory.")
    p.add_argument("directory", metavar="DIR", type=Path,
                   help="output directory (or its summary.json)")
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.set_defaults(handler=_cmd_show)

    from cmsim.replay import add_replay_parser  # noqa: PLC0415

    add_replay_parser(sub, common, _add_set)

    from cmsim.commands import register  # noqa: PLC0415 - schema, init, list

    register(sub, common)

    from cmsim.faultbench.command import add_parser as add_bench_monitor  # noqa: PLC0415

    add_bench_monitor(sub, common)
    from cmsim.faultbench.stress_command import add_parser as add_stress  # noqa: PLC0415

    add_stress(sub, common)
    return parser


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", dest="set",
                   help="override a scenario value, e.g. simulation.duration='2 h' or "
                   "feeders[0].mass_flow='3 kg/h' (repeatable)")


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 success, 1 runtime failure, 2 invalid input.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        with warnings.catch_warnings():
            warnings.showwarning = functools.partial(_show_warning, args)
            return handler(args)
    except InputError as exc:
        _fail(args, f"cmsim {args.command}: invalid input: {exc}")
        return EXIT_INPUT
    except SimulationError as exc:
        _fail(args, f"cmsim {args.command}: simulation failed: {exc}")
        return EXIT_RUNTIME
    except BrokenPipeError:
        # the reader went away (``cmsim show DIR | head``): stop quietly, as Python's docs advise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print(f"cmsim {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI turns every failure into an exit code
        _fail(args, f"cmsim {args.command}: error: {type(exc).__name__}: {exc}"
              + ("" if args.debug else "\n(run with --debug for a traceback)"))
        return EXIT_RUNTIME


def _show_warning(args: argparse.Namespace, message: Warning | str, *_: Any,
                  **__: Any) -> None:
    print(f"cmsim {args.command}: warning: {message}", file=sys.stderr)


def _fail(args: argparse.Namespace, message: str) -> None:
    if getattr(args, "debug", False):
        traceback.print_exc(file=sys.stderr)
    print(message, file=sys.stderr)


def _progress_wanted(args: argparse.Namespace) -> bool:
    return bool(sys.stderr.isatty() and not args.quiet and not os.environ.get("CI"))


# --------------------------------------------------------------------------- run


def _cmd_run(args: argparse.Namespace) -> int:
    from cmsim._jit import compile_notice
    from cmsim.api import run as api_run
    from cmsim.config import load_scenario

    scenario = load_scenario(args.scenario, overrides=args.set)
    notice = contextlib.nullcontext() if args.quiet else compile_notice(sys.stderr)
    with notice:
        result = api_run(scenario, seed=args.seed, out=args.out,
                         progress=_progress_wanted(args), figures=not args.no_figures,
                         report=not args.no_report, overwrite=args.overwrite)
    if not args.quiet:
        from cmsim.describe import format_summary

        summary = result.summary()
        print(format_summary(summary))
        if args.out is not None:
            print(f"\nwritten to {args.out}")
    return EXIT_OK


# --------------------------------------------------------------------------- validate


def _cmd_validate(args: argparse.Namespace) -> int:
    from cmsim.assembly import assemble
    from cmsim.config import load_scenario
    from cmsim.describe import describe_scenario

    s = load_scenario(args.scenario, overrides=args.set)
    text = describe_scenario(s, assemble(s).models)  # refuses a run too large for memory
    print(f"OK: {s.source or args.scenario}\n\n{text}")
    return EXIT_OK


# --------------------------------------------------------------------------- verify-log


def _expected_anchors(args: argparse.Namespace) -> tuple[str | None, int | None]:
    """The anchors given on the command line (``--expect-head``, ``--expect-records``)."""
    head, records = args.expect_head, args.expect_records
    if head is not None:
        head = head.strip().lower()
        if len(head) != 64 or any(ch not in "0123456789abcdef" for ch in head):
            raise _CliInputError(f"--expect-head={args.expect_head!r}: must be 64 hexadecimal "
                                 "digits (a SHA-256 hash)")
    if records is not None and records < 0:
        raise _CliInputError(f"--expect-records={records}: must be an integer >= 0")
    return head, records


def _cmd_verify_log(args: argparse.Namespace) -> int:
    from cmsim.logcheck import check_log, log_target

    target = log_target(args.file, *_expected_anchors(args))
    result = check_log(target)
    path, origin = target.path, target.origin
    if result.ok:
        if not args.quiet:
            anchored = f", matches the anchors from {origin}" if origin else \
                " (no anchors: a removed tail would not show)"
            print(f"{path}: OK, hash chain intact ({result.n_records} records){anchored}")
        return EXIT_OK
    where = f" (anchors from {origin})" if origin else ""
    print(f"{path}: BROKEN at seq {result.first_bad_seq}: {result.message}{where}",
          file=sys.stderr)
    return EXIT_RUNTIME


# --------------------------------------------------------------------------- show


def _cmd_show(args: argparse.Namespace) -> int:
    from cmsim.describe import format_summary, read_summary

    data = read_summary(args.directory)
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=False))
    else:
        print(format_summary(data))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
