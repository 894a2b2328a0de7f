"""Check an output's event log against its anchors (what ``cmsim verify-log`` does).

The hash chain of ``events.jsonl`` alone cannot show that records were removed from its end;
the anchors (the number of records and the hash of the last one) recorded elsewhere can. An
output directory keeps them in ``summary.json`` (``event_log.records``,
``event_log.head_hash``); :func:`log_target` reads them, :func:`check_log` verifies the log
against them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cmsim.errors import InputError
from cmsim.eventlog import VerifyResult, verify_log

__all__ = ["LogTarget", "check_log", "log_target"]


@dataclass(frozen=True)
class LogTarget:
    """An event log and the anchors it is checked against.

    Attributes
    ----------
    path : pathlib.Path
        The ``events.jsonl`` file.
    head : str or None
        Expected hash of the last record (64 lower-case hex digits).
    records : int or None
        Expected number of records.
    origin : str
        Where the anchors come from (``"command line"``, a ``summary.json`` path, both, or
        ``""`` when there are none).
    """

    path: Path
    head: str | None
    records: int | None
    origin: str


def log_target(target: str | os.PathLike[str], head: str | None = None,
               records: int | None = None, *, given_by: str = "command line") -> LogTarget:
    """The log file and anchors of a file or an output directory.

    Parameters
    ----------
    target : path-like
        ``events.jsonl``, or an output directory (its ``events.jsonl``, with the anchors of its
        ``summary.json`` where ``head`` / ``records`` are not given).
    head, records : optional
        Anchors given by the caller (checked already); they take precedence.
    given_by : str
        How to name the caller's anchors in ``origin``.

    Returns
    -------
    LogTarget

    Raises
    ------
    cmsim.errors.InputError
        No such file, no ``events.jsonl`` in the directory, or unreadable anchors.
    """
    path = Path(target)
    origin = given_by if head is not None or records is not None else ""
    if path.is_dir():
        directory, path = path, path / "events.jsonl"
        if not path.is_file():
            raise InputError(f"{directory}: no events.jsonl in this directory")
        summary = directory / "summary.json"
        try:
            anchors = json.loads(summary.read_text(encoding="utf-8")).get("event_log")
        except (OSError, ValueError, AttributeError) as exc:
            raise InputError(f"{summary}: cannot read the anchors ({exc})") from None
        if not isinstance(anchors, dict) or "records" not in anchors \
                or "head_hash" not in anchors:
            raise InputError(f"{summary}: field 'event_log' with 'records' and 'head_hash' is "
                             "missing (written by an older cmsim?); verify the file alone "
                             f"with cmsim verify-log {path}")
        if head is None:
            head = str(anchors["head_hash"])
        if records is None:
            records = int(anchors["records"])
        origin = f"{summary}" if origin == "" else f"{origin} and {summary}"
    elif not path.is_file():
        raise InputError(f"{path}: no such file")
    return LogTarget(path, head, records, origin)


def check_log(target: LogTarget) -> VerifyResult:
    """Verify the hash chain of ``target.path`` against its anchors
    (:func:`cmsim.eventlog.verify_log`)."""
    return verify_log(target.path, expected_last_hash=target.head,
                      expected_n_records=target.records)
