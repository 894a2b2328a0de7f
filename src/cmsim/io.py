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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cmsim._fs import publish_mode
from cmsim.errors import InputError, SimulationError
from cmsim.eventlog import EventLog

__all__ = [
    "canonical_json",
    "check_output_dir",
    "event_chain",
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


def check_output_dir(out_dir: str | os.PathLike) -> Path:
    """Check that ``out_dir`` can receive a run (absent or an empty directory).

    Raises
    ------
    cmsim.errors.InputError
        If it exists and is a file or a non-empty directory.
    """
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise InputError(f"out={str(out)!r}: exists and is not a directory")
        if any(out.iterdir()):
            raise InputError(f"out={str(out)!r}: directory exists and is not empty "
                             "(cmsim never overwrites results; choose a new directory)")
    return out


def write_output_dir(result, out_dir: str | os.PathLike, *, figures: bool = True) -> Path:
    """Write the output directory of a run atomically.

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    out_dir : path-like
        Target directory; must not exist or be empty.
    figures : bool
        Also write the PNG figures and ``report.html``.

    Returns
    -------
    pathlib.Path
        The directory written.

    Raises
    ------
    cmsim.errors.InputError
        If ``out_dir`` exists and is not an empty directory.
    cmsim.errors.SimulationError
        If writing fails (nothing is left behind).
    """
    out = check_output_dir(out_dir).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write_json(tmp / "summary.json", result.summary())
        write_timeseries_parquet(tmp / "timeseries.parquet", result.timeseries,
                                 result.provenance())
        # the same chain whose anchors summary.json records
        write_events_jsonl(tmp / "events.jsonl", result.event_chain())
        if result.plant_signals is not None:
            write_signals_parquet(tmp / "signals.parquet", result.plant_signals,
                                  {**result.provenance(), **result.metadata.get("replay", {})})
        if figures:
            _write_figures(result, tmp)
        publish_mode(tmp, directory=True)
        check_output_dir(out)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (InputError, SimulationError)) or not isinstance(exc, Exception):
            raise
        raise SimulationError(f"writing the output directory {str(out)!r} failed: "
                              f"{type(exc).__name__}: {exc}") from exc
    return out


def _write_figures(result, directory: Path) -> None:
    from matplotlib.figure import Figure  # noqa: PLC0415

    from cmsim import plotting, report  # noqa: PLC0415

    figs = report.render_figures(result)
    for name in ("api_trace", "funnel", "lots_gantt"):
        if name in figs:
            (directory / f"{name}.png").write_bytes(figs[name])
    report.write_report(result, directory / "report.html", figures=figs)

    fig = Figure(figsize=(8, 4), layout="constrained")
    plotting.api_content(result, ax=fig.add_subplot())
    fig.savefig(directory / "api_content.png", dpi=100)
    fig = Figure(figsize=(8, 4), layout="constrained")
    plotting.lot_shares(result, ax=fig.add_subplot())
    fig.savefig(directory / "lots.png", dpi=100)
