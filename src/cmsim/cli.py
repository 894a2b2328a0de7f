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
import math
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
        summary = result.summary()
        print(_format_summary(summary))
        if args.out is not None:
            print(f"\nwritten to {args.out}")
    return EXIT_OK


# --------------------------------------------------------------------------- validate


def _fmt_time(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 600 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _describe_rtd(table: Any) -> str:
    d = table.model_dump(mode="json")
    kind = d.pop("model")
    if kind == "model":
        return f"parameter set {table.name!r} = {_describe_rtd(table.resolved)}"
    if kind == "series":
        return "series(" + ", ".join(_describe_rtd(s) for s in table.stages) + ")"
    if kind == "empirical":
        return f"empirical({d['file']}, {len(table.t)} points)"
    parts = []
    for k, v in d.items():
        parts.append(f"{k}={_fmt_time(v)}" if k in ("mean_residence_time", "delay")
                     else f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
    return f"{kind}({', '.join(parts)})"


def _fmt_field(key: str, value: Any) -> str:
    from cmsim.units import format_quantity

    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    if key == "mass_flow":
        return format_quantity(value, "kg/h", 4)
    if key == "mass":
        return format_quantity(value, "kg", 4)
    if key in ("duration", "start"):
        return _fmt_time(value)
    if key in ("noise_rsd", "rate_per_hour"):
        return format_quantity(value, "%", 4)
    if key == "speed":
        return f"{value:g} rpm"
    return f"{value:g}"


def _cmd_validate(args: argparse.Namespace) -> int:
    from cmsim.assembly import build_models
    from cmsim.config import load_scenario
    from cmsim.units import convert_to

    s = load_scenario(args.scenario, overrides=args.set)
    built = build_models(s).by_path()
    sim = s.simulation
    out = [f"OK: {s.source or args.scenario}", ""]
    row = "  {:<16}{}".format
    out.append(row("name", s.name + (f" - {s.description}" if s.description else "")))
    out.append(row("sha256", s.sha256()))
    seed = "fresh entropy" if sim.seed is None else str(sim.seed)
    out.append(row("simulation", f"{_fmt_time(sim.duration)} at dt = {_fmt_time(sim.dt)} "
                   f"({s.n_ticks} ticks), initial state {sim.initial_state}, seed {seed}"))
    total = s.total_mass_flow
    out.append(row("feeders", f"{len(s.feeders)}, total {convert_to(total, 'kg/h'):g} kg/h"))
    for f in s.feeders:
        hop = ""
        if f.hopper is not None:
            h = f.hopper
            hop = (f", hopper {h.capacity:g} kg refilled "
                   f"{100 * h.refill_low:g}-{100 * h.refill_high:g} %")
        share = 100 * f.mass_flow / total
        out.append(f"    {f.name:<10} {f.material:<10} {f.role:<10} "
                   f"{convert_to(f.mass_flow, 'kg/h'):>8.4g} kg/h {share:6.2f} %"
                   f"  lot {f.lot}, noise {100 * f.noise_rsd:g} %{hop}")
    out.append(row("target API", f"{100 * s.target_api_fraction:.3f} % w/w; tablets "
                   f"{1e6 * s.press.tablet_mass:g} mg, {3600 * s.tablet_rate:,.0f} per hour"))
    speed = "" if s.blender.speed is None else f", {s.blender.speed:g} rpm"
    means = {k: m.mean for k, m in built.items()}
    for label, key, table in (("blender", "blender.rtd", s.blender.rtd),
                              ("transfer", "press.transfer_rtd", s.press.transfer_rtd),
                              ("feed frame", "press.feed_frame_rtd", s.press.feed_frame_rtd)):
        extra = speed if label == "blender" else ""
        out.append(row(label, f"{_describe_rtd(table)}{extra}; mean {means[key]:.4g} s"))
    out.append(row("line MRT", f"{sum(means.values()):.4g} s"))
    lo, hi = s.specification.api_content_limits
    out.append(row("specification", f"API content {100 * lo:g}-{100 * hi:g} % of target"))
    if s.pat is not None:
        p = s.pat
        out.append(row("PAT", f"{p.location}, every {_fmt_time(p.sample_period)}, noise sd "
                       f"{p.noise_sd:g}, latency {_fmt_time(p.latency)}"))
    else:
        out.append(row("PAT", "none"))
    if s.diversion is not None:
        out.append(row("diversion", f"quantile {s.diversion.quantile:g}, margin "
                       f"{_fmt_time(s.diversion.margin)}"))
    else:
        out.append(row("diversion", "none"))
    out.append(row("disturbances", str(len(s.disturbances))))
    for d in s.disturbances:
        fields = d.model_dump(mode="json")
        fields.pop("type")
        start = fields.pop("start")
        detail = ", ".join(f"{k}={_fmt_field(k, v)}" for k, v in fields.items()
                           if v is not None)
        out.append(f"    at {_fmt_time(start):>9}  {d.type}: {detail}")
    print("\n".join(out))
    return EXIT_OK


# --------------------------------------------------------------------------- verify-log


def _log_anchors(args: argparse.Namespace) -> tuple[Path, str | None, int | None, str]:
    """Log file and anchors ``(path, head, records, origin)`` of a verify-log call."""
    head, records = args.expect_head, args.expect_records
    if head is not None:
        head = head.strip().lower()
        if len(head) != 64 or any(ch not in "0123456789abcdef" for ch in head):
            raise _CliInputError(f"--expect-head={args.expect_head!r}: must be 64 hexadecimal "
                                 "digits (a SHA-256 hash)")
    if records is not None and records < 0:
        raise _CliInputError(f"--expect-records={records}: must be an integer >= 0")
    path: Path = args.file
    origin = "command line" if head is not None or records is not None else ""
    if path.is_dir():
        directory, path = path, path / "events.jsonl"
        if not path.is_file():
            raise _CliInputError(f"{directory}: no events.jsonl in this directory")
        summary = directory / "summary.json"
        try:
            anchors = json.loads(summary.read_text(encoding="utf-8")).get("event_log")
        except (OSError, ValueError, AttributeError) as exc:
            raise _CliInputError(f"{summary}: cannot read the anchors ({exc})") from None
        if not isinstance(anchors, dict) or "records" not in anchors \
                or "head_hash" not in anchors:
            raise _CliInputError(f"{summary}: field 'event_log' with 'records' and "
                                 "'head_hash' is missing (written by an older cmsim?); verify "
                                 "the file alone with cmsim verify-log "
                                 f"{path}")
        if head is None:
            head = str(anchors["head_hash"])
        if records is None:
            records = int(anchors["records"])
        origin = f"{summary}" if origin == "" else f"{origin} and {summary}"
    elif not path.is_file():
        raise _CliInputError(f"{path}: no such file")
    return path, head, records, origin


def _cmd_verify_log(args: argparse.Namespace) -> int:
    from cmsim.eventlog import verify_log

    path, head, records, origin = _log_anchors(args)
    result = verify_log(path, expected_last_hash=head, expected_n_records=records)
    if isinstance(result, tuple):
        ok, first_bad, message = result[:3]
        n = None
    else:
        ok, first_bad, message = result.ok, result.first_bad_seq, result.message
        n = getattr(result, "n_records", None)
    if ok:
        if not args.quiet:
            count = f" ({n} records)" if n is not None else ""
            anchored = f", matches the anchors from {origin}" if origin else \
                " (no anchors: a removed tail would not show)"
            print(f"{path}: OK, hash chain intact{count}{anchored}")
        return EXIT_OK
    where = f" (anchors from {origin})" if origin else ""
    print(f"{path}: BROKEN at seq {first_bad}: {message}{where}", file=sys.stderr)
    return EXIT_RUNTIME


# --------------------------------------------------------------------------- show


def _read_summary(target: Path) -> dict[str, Any]:
    path = target / "summary.json" if target.is_dir() else target
    if not path.is_file():
        raise _CliInputError(f"{target}: no summary.json (not a cmsim output directory?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _CliInputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _CliInputError(f"{path}: expected a JSON object")
    return data


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isfinite(v) and v == int(v) and abs(v) < 1e15:
            return f"{int(v):,}"
        return f"{v:.6g}"
    return str(v)


def _format_summary(s: dict[str, Any]) -> str:
    """Human-readable text of a summary.json dict (docs/outputs.md)."""
    row = "{:<28}{}".format
    lines = []
    sha = s.get("scenario_sha256")
    lines.append(row("scenario", f"{s.get('scenario', '?')}"
                     + (f"  (sha256 {str(sha)[:16]}...)" if sha else "")))
    for key, label in (("seed", "seed"), ("cmsim_version", "cmsim version")):
        if key in s:
            lines.append(row(label, _num(s[key])))
    if "duration_s" in s:
        lines.append(row("simulated time", f"{_num(s['duration_s'])} s"))
    if "wall_time_s" in s:
        lines.append(row("wall time", f"{s['wall_time_s']:.3g} s"
                         if isinstance(s["wall_time_s"], int | float) else str(s["wall_time_s"])))
    tablets = s.get("tablets")
    if isinstance(tablets, dict) and tablets:
        lines.append("tablets")
        for k, v in tablets.items():
            lines.append(row("  " + k.replace("_", " "), _num(v)))
    mass = s.get("mass_kg")
    if isinstance(mass, dict) and mass:
        lines.extend(_mass_lines(mass))
    if "mass_balance_max_rel_error" in s:
        lines.append(row("mass balance max rel error", _num(s["mass_balance_max_rel_error"])))
    events = s.get("diversion_events")
    if isinstance(events, list):
        lines.append(row("diversion events", str(len(events))))
        for e in events:
            if isinstance(e, dict):
                lines.append(f"  {_num(e.get('start_s')):>10} - {_num(e.get('end_s')):<10} s  "
                             f"{_num(e.get('tablets'))} tablets  trigger: {e.get('trigger')}")
    lots = s.get("lots")
    if isinstance(lots, list) and lots:
        lines.extend(_lot_lines(lots))
    known = {"scenario", "scenario_sha256", "seed", "cmsim_version", "duration_s",
             "wall_time_s", "tablets", "mass_kg", "mass_balance_max_rel_error",
             "diversion_events", "lots"}
    for k, v in s.items():
        if k not in known and not isinstance(v, dict | list):
            lines.append(row(k, _num(v)))
    return "\n".join(lines)


_MASS_LABELS = {"initial_holdup": "initial hold-up", "fed": "+ fed", "accepted": "= accepted",
                "diverted": "+ diverted", "holdup": "+ final hold-up"}


def _mass_lines(mass: dict[str, Any]) -> list[str]:
    """The mass table: initial hold-up + fed = accepted + diverted + final hold-up."""
    comps: list[str] = []
    for part in mass.values():
        if isinstance(part, dict):
            comps.extend(c for c in part if c not in comps)
    lines = ["mass [kg]".ljust(28) + "".join(f"{c:>14}" for c in comps)]
    for k, part in mass.items():
        if isinstance(part, dict):
            cells = "".join(f"{part[c]:>14.6g}" if isinstance(part.get(c), int | float)
                            else f"{'-':>14}" for c in comps)
            lines.append("  " + _MASS_LABELS.get(k, k).ljust(26) + cells)
    return lines


def _lot_lines(lots: list[Any]) -> list[str]:
    """Per-lot tablets and time at the gate (a tablet with two lots counts under both)."""
    lines = ["lots at the gate          tablets accepted  diverted   first [s]    last [s]"]
    for r in lots:
        if not isinstance(r, dict):
            continue
        name = f"{r.get('material')} {r.get('lot')}"
        lines.append(f"  {name:<24}{_num(r.get('tablets_accepted')):>16}"
                     f"{_num(r.get('tablets_diverted')):>10}"
                     f"{_num(r.get('first_at_gate_s')):>12}{_num(r.get('last_at_gate_s')):>12}")
    lines.append("  (a tablet that contains two lots of a material counts under both lots)")
    return lines


def _cmd_show(args: argparse.Namespace) -> int:
    data = _read_summary(args.directory)
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=False))
    else:
        print(_format_summary(data))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
