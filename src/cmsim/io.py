"""Output directory of a run (docs/outputs.md), written atomically.

Layout of ``DIR``::

    summary.json         SimulationResult.summary() (with the event-log anchors ``event_log``:
                         ``records`` and ``head_hash`` of events.jsonl)
    timeseries.parquet   one row per gate tick; provenance in the schema metadata
    events.jsonl         hash-chained event log (seq, time_s, type, data, prev_hash, hash)
    api_content.png      API content vs the specification limits
    lots.png             lot shares at the gate
    api_trace.png        true vs measured API content, limits, diversion bands
    funnel.png           funnel plot (only when the run records its feeder-to-gate RTD)
    lots_gantt.png       lot Gantt chart in tablet time
    report.html          self-contained HTML report (:mod:`cmsim.report`)

Atomicity: everything is written into a temporary sibling directory ``.DIR.tmp-*`` which is
renamed to ``DIR`` only when every file is complete; on any failure the temporary directory is
removed, so a failing run leaves neither ``DIR`` nor a partial copy. An existing ``DIR`` is
accepted only when it is empty (it is replaced); a non-empty one is refused with
:class:`cmsim.errors.InputError` (nothing is ever overwritten).

Event-log hash chain: ``hash = sha256(canonical_json({seq, time_s, type, data, prev_hash}))``
with ``canonical_json = json.dumps(obj, sort_keys=True, separators=(",", ":"))`` and
``prev_hash`` of the first record = 64 zeros, written by :mod:`cmsim.eventlog`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cmsim import _outdir
from cmsim._fs import publish_mode
from cmsim.errors import InputError, SimulationError
from cmsim.eventlog import EventLog

__all__ = [
    "canonical_json",
    "check_output_dir",
    "claim_output_dir",
    "event_chain",
    "output_steps",
    "write_events_jsonl",
    "write_json",
    "write_output_dir",
    "write_timeseries_parquet",
]

def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats into plain JSON values."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    return str(obj)


def canonical_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, numpy values converted.

    Parameters
    ----------
    obj : Any
        JSON-like object.

    Returns
    -------
    str
    """
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (numpy values converted, NaN as null)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(_jsonable(obj), fh, indent=2, sort_keys=False, allow_nan=False)
        fh.write("\n")


def event_chain(events: Iterable[Mapping[str, Any]]) -> EventLog:
    """The hash-chained :class:`cmsim.eventlog.EventLog` of a run's events.

    Parameters
    ----------
    events : iterable of mapping
        Events ``{time_s, type, source, data}`` in order.

    Returns
    -------
    EventLog
        The chain exactly as :func:`write_events_jsonl` writes it (the ``source`` of an event
        is stored in its ``data``; non-finite floats become null); ``len(log)`` and
        ``log.head`` are the anchors stored in ``summary.json`` (``event_log``).
    """
    log = EventLog()
    for ev in events:
        data = dict(ev.get("data") or {})
        if ev.get("source") is not None:
            data.setdefault("source", ev["source"])
        log.append(float(ev["time_s"]), str(ev["type"]), _jsonable(data))
    return log


def write_events_jsonl(path: str | os.PathLike,
                       events: EventLog | Iterable[Mapping[str, Any]]) -> None:
    """Write the hash-chained event log, one JSON object per line.

    Parameters
    ----------
    path : path-like
        Target file (written atomically).
    events : EventLog or iterable of mapping
        A ready chain, or events ``{time_s, type, source, data}`` chained by
        :func:`event_chain` (:class:`cmsim.eventlog.EventLog` is the project's single
        implementation of the chain, verified by ``cmsim verify-log``).
    """
    (events if isinstance(events, EventLog) else event_chain(events)).write(path)


def write_timeseries_parquet(path: str | os.PathLike, frame, metadata: Mapping[str, Any]) -> None:
    """Write a DataFrame to Parquet with provenance in the schema metadata.

    Parameters
    ----------
    path : path-like
        Target file.
    frame : pandas.DataFrame
        The time series.
    metadata : mapping
        Provenance (seed, scenario sha256, cmsim version, ...); stored under ``cmsim.<key>``
        keys, values as JSON text.
    """
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    for key, value in metadata.items():
        meta[f"cmsim.{key}".encode()] = canonical_json(value).encode("utf-8")
    table = table.replace_schema_metadata(meta)
    pq.write_table(table, path)


def write_signals_parquet(path: str | os.PathLike, table: Mapping[str, Any],
                          metadata: Mapping[str, Any]) -> None:
    """Write the plant signals table (:mod:`cmsim.monitor.plant`) to Parquet.

    Parameters
    ----------
    path : path-like
        Target file.
    table : mapping of str to ndarray
        Columns, one row per tick.
    metadata : mapping
        Provenance and what a replay needs (the resolved scenario, the gate alignment shift,
        the number of API lots), stored as ``cmsim.<key>`` JSON values.
    """
    import pandas as pd  # noqa: PLC0415

    write_timeseries_parquet(path, pd.DataFrame(dict(table)), metadata)


def read_signals_parquet(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a signals table: ``(columns as float arrays, cmsim metadata)``."""
    import json  # noqa: PLC0415

    import pyarrow.parquet as pq  # noqa: PLC0415

    table = pq.read_table(path)
    meta = {k.decode()[6:]: json.loads(v) for k, v in (table.schema.metadata or {}).items()
            if k.startswith(b"cmsim.")}
    cols = {name: table.column(name).to_numpy(zero_copy_only=False).astype(float)
            for name in table.column_names}
    return cols, meta


def read_signals_table(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a signals table from Parquet (``.parquet``, as a run writes it) or CSV (``.csv``,
    e.g. exported from a plant historian; empty cells are NaN): ``(columns as float arrays,
    cmsim metadata)`` (no metadata from a CSV).

    Raises
    ------
    cmsim.errors.InputError
        An unknown suffix, or a file that cannot be read as its suffix says.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise InputError(f"{p}: a signals table must be a .parquet or .csv file")
    try:
        if suffix == ".parquet":
            return read_signals_parquet(p)
        import pyarrow.csv as pcsv  # noqa: PLC0415

        table = pcsv.read_csv(p)
        return {name: table.column(name).to_numpy(zero_copy_only=False).astype(float)
                for name in table.column_names}, {}
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise InputError(f"{p}: cannot read it as a {suffix[1:]} signals table "
                         f"({type(exc).__name__}: {exc})") from None


def check_output_dir(out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check that ``out_dir`` can receive a run (absent, empty, or replaceable).

    Parameters
    ----------
    out_dir : path-like
        The output directory.
    overwrite : bool
        Accept an existing cmsim output directory (it will be replaced).

    Raises
    ------
    cmsim.errors.InputError
        If it exists and is a file or a non-empty directory (with ``overwrite``: a non-empty
        directory that is not a cmsim output directory).
    """
    out = Path(out_dir)
    _outdir.check_target(out, overwrite=overwrite)
    return out


def claim_output_dir(out_dir: str | os.PathLike, *, overwrite: bool = False) -> _outdir.Claim:
    """Claim ``out_dir`` for one run, before simulating (a context manager).

    Removes stale temporaries of killed runs next to it, takes the lock ``.DIR.lock`` (a second
    run for the same directory fails at once) and checks the target (:func:`check_output_dir`).

    Raises
    ------
    cmsim.errors.InputError
        (on entry) If the directory is taken or refused.
    """
    return _outdir.Claim(out_dir, overwrite=overwrite)


#: Callback of :func:`write_output_dir`: ``progress(label, done, total)`` before each step.
Progress = Callable[[str, int, int], None]


def output_steps(result, *, figures: bool = True, report: bool = True) -> list[str]:
    """Labels of the files :func:`write_output_dir` writes, in order (the progress steps)."""
    steps = ["summary.json", "scenario.toml", "timeseries.parquet", "events.jsonl"]
    if getattr(result, "plant_signals", None) is not None:
        steps.append("signals.parquet")
    if figures:
        from cmsim import report as _report  # noqa: PLC0415

        steps += [f"{name}.png" for name in _report.figure_names(result)]
        steps += ["api_content.png"] + (["lots.png"] if _several_lots(result) else [])
    if report:
        steps.append("report.html")
    if not (result.metadata or {}).get("scenario_data"):
        steps.remove("scenario.toml")
    return steps


def _several_lots(result) -> bool:
    """True when some material has more than one lot (else lots.png shows nothing)."""
    materials = [m for m, _ in result.channels]
    return len(materials) != len(set(materials))


def write_output_dir(result, out_dir: str | os.PathLike, *, figures: bool = True,
                     report: bool = True, overwrite: bool = False,
                     progress: Progress | None = None) -> Path:
    """Write the output directory of a run atomically.

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    out_dir : path-like
        Target directory; must not exist or be empty (or, with ``overwrite``, be an earlier
        cmsim output directory, which is replaced as a whole).
    figures : bool
        Write the PNG figures (and embed them in the report).
    report : bool
        Write ``report.html``.
    overwrite : bool
        Replace an existing cmsim output directory.
    progress : callable, optional
        ``progress(label, done, total)`` is called before each file is written (and once with
        ``done == total`` at the end).

    Returns
    -------
    pathlib.Path
        The directory written.

    Raises
    ------
    cmsim.errors.InputError
        If ``out_dir`` is refused (see :func:`check_output_dir`) or claimed by another run.
    cmsim.errors.SimulationError
        If writing fails (nothing is left behind).
    """
    out = Path(out_dir).absolute()
    steps = output_steps(result, figures=figures, report=report)
    done = 0

    def step(label: str) -> None:
        nonlocal done
        if progress is not None:
            progress(label, done, len(steps))
        done += 1

    with claim_output_dir(out, overwrite=overwrite):
        tmp = Path(tempfile.mkdtemp(prefix=_outdir.temp_prefix(out), dir=out.parent))
        try:
            step("summary.json")
            write_json(tmp / "summary.json", result.summary())
            resolved = (result.metadata or {}).get("scenario_data")
            if resolved:
                from cmsim._toml_out import dumps as toml_dumps  # noqa: PLC0415

                step("scenario.toml")
                (tmp / "scenario.toml").write_text(
                    _SCENARIO_HEADER + toml_dumps(resolved), encoding="utf-8")
            step("timeseries.parquet")
            write_timeseries_parquet(tmp / "timeseries.parquet", result.timeseries,
                                     result.provenance())
            # the same chain whose anchors summary.json records
            step("events.jsonl")
            write_events_jsonl(tmp / "events.jsonl", result.event_chain())
            if getattr(result, "plant_signals", None) is not None:
                step("signals.parquet")
                write_signals_parquet(tmp / "signals.parquet", result.plant_signals,
                                      {**result.provenance(), **result.metadata.get("replay", {})})
            _write_figures(result, tmp, figures=figures, report=report, step=step)
            if progress is not None:
                progress("done", len(steps), len(steps))
            publish_mode(tmp, directory=True)
            _outdir.publish(tmp, out, overwrite=overwrite)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, (InputError, SimulationError)) or not isinstance(exc, Exception):
                raise
            raise SimulationError(f"writing the output directory {str(out)!r} failed: "
                                  f"{type(exc).__name__}: {exc}") from exc
    return out


_SCENARIO_HEADER = """\
# The scenario of this run as cmsim validated it: SI units ([s], [kg], [kg/s], fractions),
# defaults filled in, --set overrides applied. Named RTD parameter sets and tracer files are
# referenced by name, as in the original. `cmsim run scenario.toml --seed <seed of
# summary.json>` repeats the run; the scenario's SHA-256 is summary.json's scenario_sha256.

"""


def _write_figures(result, directory: Path, *, figures: bool, report: bool,
                   step: Callable[[str], None]) -> None:
    if not (figures or report):
        return
    from cmsim import report as _report  # noqa: PLC0415

    figs: dict[str, bytes] = {}
    if figures:
        for name in _report.figure_names(result):
            step(f"{name}.png")
            figs[name] = _report.render_figure(result, name)
            (directory / f"{name}.png").write_bytes(figs[name])
        step("api_content.png")
        (directory / "api_content.png").write_bytes(_report.render_figure(result, "api_content"))
        if _several_lots(result):
            step("lots.png")
            (directory / "lots.png").write_bytes(_report.render_figure(result, "lots"))
    if report:
        step("report.html")
        _report.write_report(result, directory / "report.html", figures=figs)
