"""Tamper-evident, append-only event log (hash-chained JSON Lines).

Every record is one line of JSON with the fields

``seq``
    0, 1, 2, ... (position in the log).
``time_s``
    simulation time of the event [s] (records are ordered by ``seq``; ``time_s`` is not
    required to be monotone, e.g. for a correction logged later about an earlier time).
``type``
    event type, a non-empty string (``"feeder_stop"``, ``"diversion_open"``, ...).
``data``
    a JSON object with the event details.
``prev_hash``
    ``hash`` of the previous record; 64 zeros (:data:`GENESIS_HASH`) for the first record.
``hash``
    SHA-256 (lower-case hex) of the canonical JSON (:func:`canonical_json`) of the object
    ``{"seq", "time_s", "type", "data", "prev_hash"}``, encoded as UTF-8.

Editing any field of any record, deleting, inserting or reordering lines breaks the chain at
the first affected record, which :func:`verify_log` names. What a chain alone cannot reveal is
the removal of records from the *end* of the log (the shortened log is itself a valid chain)
or a complete rewrite from some record on: anchor the log by storing its head hash and length
elsewhere (e.g. in a run summary) and pass them to :func:`verify_log` as
``expected_last_hash`` / ``expected_n_records``.

Data values are converted to plain JSON deterministically: numpy scalars to Python numbers,
numpy arrays and tuples to lists, mapping keys must be strings; NaN and infinity are rejected
(JSON has no representation for them).

Examples
--------
>>> log = EventLog()
>>> rec = log.append(12.5, "feeder_stop", {"feeder": "api"})
>>> rec["seq"], rec["prev_hash"] == GENESIS_HASH
(0, True)
>>> len(log.head)
64
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmsim._fs import atomic_write
from cmsim.errors import CmsimError, ParameterError

__all__ = [
    "GENESIS_HASH",
    "EventLog",
    "EventLogWriter",
    "LogVerificationError",
    "VerifyResult",
    "canonical_json",
    "read_log",
    "record_hash",
    "verify_log",
]

#: ``prev_hash`` of the first record: 64 zeros.
GENESIS_HASH = "0" * 64

_FIELDS = ("seq", "time_s", "type", "data", "prev_hash", "hash")
_HEX = frozenset("0123456789abcdef")


class LogVerificationError(CmsimError, ValueError):
    """An event log file failed verification.

    Parameters
    ----------
    path : str
        The file.
    result : VerifyResult
        What :func:`verify_log` found.
    """

    def __init__(self, path: str, result: VerifyResult) -> None:
        super().__init__(path, result)  # args rebuild the error (pickle, type(e)(*e.args))
        self.path = str(path)
        self.result = result

    def __str__(self) -> str:
        return f"{self.path}: {self.result.message}"


# ---------------------------------------------------------------------------------------------
# canonical JSON
# ---------------------------------------------------------------------------------------------


def _plain(obj: Any, where: str) -> Any:
    """Return ``obj`` as plain JSON types (dict/list/str/int/float/bool/None)."""
    if obj is None:
        return None
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        x = float(obj)
        if not math.isfinite(x):
            raise ParameterError(where, obj, "must be finite (NaN and infinity are not JSON)")
        return x
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf" and obj.dtype != object:
            raise ParameterError(where, f"array of dtype {obj.dtype}",
                                 "must be an array of bool, integer or real numbers")
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj.tolist())]
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ParameterError(f"{where} key", key, "mapping keys must be str")
            out[str(key)] = _plain(value, f"{where}[{key!r}]")
        return out
    if isinstance(obj, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise ParameterError(where, obj, f"type {type(obj).__name__} is not JSON-serialisable "
                                     "(use str, numbers, bool, None, lists, dicts, numpy arrays)")


def canonical_json(obj: Any) -> str:
    """Return the canonical JSON text of ``obj`` (the text that is hashed).

    Parameters
    ----------
    obj : Any
        JSON-like data; numpy scalars and arrays are converted to Python numbers and lists.

    Returns
    -------
    str
        ``json.dumps(plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        allow_nan=False)``.

    Raises
    ------
    ParameterError
        For NaN/infinity, non-string mapping keys or objects JSON cannot represent.

    Examples
    --------
    >>> canonical_json({"b": np.float64(0.5), "a": np.arange(2)})
    '{"a":[0,1],"b":0.5}'
    """
    return json.dumps(_plain(obj, "data"), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def record_hash(seq: int, time_s: float, type: str, data: Any, prev_hash: str) -> str:  # noqa: A002
    """Return the SHA-256 hex digest that chains one record.

    Parameters
    ----------
    seq : int
        Record number (0-based).
    time_s : float
        Event time [s].
    type : str
        Event type.
    data : Any
        Event data (plain JSON after conversion).
    prev_hash : str
        Hash of the previous record (:data:`GENESIS_HASH` for the first).

    Returns
    -------
    str
        64 lower-case hex digits.

    Examples
    --------
    >>> len(record_hash(0, 0.0, "start", {}, GENESIS_HASH))
    64
    """
    body = {"seq": seq, "time_s": time_s, "type": type, "data": data, "prev_hash": prev_hash}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _record_line(rec: Mapping[str, Any]) -> str:
    """One JSONL line (without newline) with the fields in their documented order."""
    return ("{" + ",".join(f'"{k}":' + json.dumps(rec[k], sort_keys=True, separators=(",", ":"),
                                                   ensure_ascii=False, allow_nan=False)
                           for k in _FIELDS) + "}")


# ---------------------------------------------------------------------------------------------
# in-memory log and live writer
# ---------------------------------------------------------------------------------------------


class EventLog:
    """In-memory, append-only, hash-chained event log.

    Attributes
    ----------
    records : list of dict
        The records in order; each has ``seq``, ``time_s`` [s], ``type``, ``data``,
        ``prev_hash`` and ``hash``. Treat as read-only: editing a record breaks the chain
        (which :meth:`verify` reports).

    Examples
    --------
    >>> log = EventLog()
    >>> _ = log.append(0.0, "run_start", {"seed": 1})
    >>> _ = log.append(600.0, "feeder_stop", {"feeder": "api", "duration_s": 20.0})
    >>> [r["seq"] for r in log.records], log.verify().ok
    ([0, 1], True)
    """

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    @property
    def head(self) -> str:
        """Hash of the last record (:data:`GENESIS_HASH` when empty)."""
        return self.records[-1]["hash"] if self.records else GENESIS_HASH

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def append(self, time_s: float, type: str,  # noqa: A002
               data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Append one event and return its record.

        Parameters
        ----------
        time_s : float
            Event time [s], finite.
        type : str
            Event type, non-empty.
        data : mapping, optional
            Event details with string keys (default: empty). Converted to plain JSON.

        Returns
        -------
        dict
            The record, including ``seq``, ``prev_hash`` and ``hash``.

        Raises
        ------
        ParameterError
            Non-finite ``time_s``, empty ``type`` or data JSON cannot represent.
        """
        if isinstance(time_s, bool) or not isinstance(time_s, int | float | np.integer
                                                      | np.floating):
            raise ParameterError("time_s", time_s, "must be a real number")
        t = float(time_s)
        if not math.isfinite(t):
            raise ParameterError("time_s", time_s, "must be finite")
        if not isinstance(type, str) or not type:
            raise ParameterError("type", type, "must be a non-empty str")
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ParameterError("data", data, "must be a mapping (JSON object)")
        plain = _plain(data, "data")
        seq = len(self.records)
        prev = self.head
        rec = {"seq": seq, "time_s": t, "type": str(type), "data": plain, "prev_hash": prev,
               "hash": record_hash(seq, t, str(type), plain, prev)}
        self._emit(rec)
        self.records.append(rec)
        return rec

    def _emit(self, rec: dict[str, Any]) -> None:
        """Hook for subclasses that persist each record before it is accepted."""

    def to_jsonl(self) -> str:
        """Return the whole log as JSON Lines text (every line ends with a newline)."""
        return "".join(_record_line(r) + "\n" for r in self.records)

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the log atomically to ``path`` (temporary file, fsync, then ``os.replace``).

        Parameters
        ----------
        path : path-like
            Destination file; its directory must exist. A failed write leaves no file behind
            and an existing file untouched.
        """
        text = self.to_jsonl()
        atomic_write(path, lambda p: p.write_bytes(text.encode("utf-8")))

    def verify(self) -> VerifyResult:
        """Verify the in-memory chain (see :func:`verify_log`)."""
        return _verify_lines([_record_line(r) for r in self.records], terminated=True)

    @classmethod
    def read(cls, path: str | os.PathLike[str], *, verify: bool = True) -> EventLog:
        """Load a log file.

        Parameters
        ----------
        path : path-like
            JSONL file written by :meth:`write` or :class:`EventLogWriter`.
        verify : bool
            Verify the chain first and raise :class:`LogVerificationError` if it is broken.

        Returns
        -------
        EventLog
            The records, ready for further :meth:`append` calls that continue the chain.
        """
        log = cls()
        log.records = read_log(path, verify=verify)
        return log


class EventLogWriter(EventLog):
    """Event log that also appends every record to a file as it happens (live logging).

    Each record is written as one complete line with a single ``write`` call, then flushed
    and (by default) ``fsync``-ed, so a crash leaves at most one truncated last line, which
    :func:`verify_log` reports.

    Parameters
    ----------
    path : path-like
        The JSONL file.
    resume : bool
        If the file exists: ``False`` (default) raises :class:`~cmsim.errors.ParameterError`;
        ``True`` verifies it and continues its chain.
    fsync : bool
        Call ``os.fsync`` after every record (durable, slower).

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with EventLogWriter(os.path.join(d, "events.jsonl")) as w:
    ...     _ = w.append(1.0, "pat_sample", {"y": 0.1})
    >>> verify_log(os.path.join(d, "events.jsonl")).ok
    True
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False,
                 fsync: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self._fsync = bool(fsync)
        if self.path.exists():
            if not resume:
                raise ParameterError("path", str(self.path),
                                     "file exists; pass resume=True to continue its chain")
            self.records = read_log(self.path, verify=True)
        self._fh = open(self.path, "ab")  # noqa: SIM115 (closed in close())

    def _emit(self, rec: dict[str, Any]) -> None:
        if self._fh.closed:
            raise ValueError(f"EventLogWriter for {self.path} is closed")
        self._fh.write((_record_line(rec) + "\n").encode("utf-8"))
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> EventLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# verification
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_log`.

    Attributes
    ----------
    ok : bool
        True when every line is a well-formed record and the chain holds (and the optional
        anchors match).
    first_bad_seq : int or None
        Sequence number the first broken record should have (its 0-based position in the
        file); ``None`` when ``ok``. For a deleted record this is the seq of the missing one;
        for a failed anchor on the record count it is the expected length.
    message : str
        Human-readable explanation naming the line and the rule broken.
    n_records : int
        Number of lines (records) found in the file.
    first_bad_line : int or None
        1-based line number of the first broken record (``None`` when ``ok`` or when the
        failure is a missing tail).
    """

    ok: bool
    first_bad_seq: int | None
    message: str
    n_records: int
    first_bad_line: int | None = None


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _check_record(obj: Any, pos: int, prev: str) -> str | None:
    """Return None if ``obj`` is the valid record number ``pos`` after ``prev``, else why not."""
    if not isinstance(obj, dict):
        return f"not a JSON object but {type(obj).__name__}"
    keys = set(obj)
    if keys != set(_FIELDS):
        missing = sorted(set(_FIELDS) - keys)
        extra = sorted(keys - set(_FIELDS))
        return f"wrong fields (missing {missing}, unexpected {extra})"
    seq = obj["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq != pos:
        return f"seq is {seq!r}, expected {pos} (record deleted, inserted or reordered?)"
    t = obj["time_s"]
    if isinstance(t, bool) or not isinstance(t, int | float):
        return f"time_s is {t!r}, expected a number"
    if not isinstance(obj["type"], str) or not obj["type"]:
        return f"type is {obj['type']!r}, expected a non-empty string"
    if not isinstance(obj["data"], dict):
        return "data is not a JSON object"
    if obj["prev_hash"] != prev:
        return (f"prev_hash {str(obj['prev_hash'])[:12]}... does not match the hash of the "
                f"previous record {prev[:12]}...")
    if not _is_hash(obj["hash"]):
        return "hash is not 64 lower-case hex digits"
    try:
        expected = record_hash(seq, t, obj["type"], obj["data"], obj["prev_hash"])
    except (ParameterError, ValueError) as exc:
        return f"cannot be canonicalised: {exc}"
    if obj["hash"] != expected:
        return "hash does not match the record content (record edited?)"
    return None


def _verify_lines(lines: list[str], *, terminated: bool,
                  expected_last_hash: str | None = None,
                  expected_n_records: int | None = None) -> VerifyResult:
    n = len(lines)
    prev = GENESIS_HASH
    for pos, line in enumerate(lines):
        lineno = pos + 1
        where = f"line {lineno} (seq {pos})"
        if pos == n - 1 and not terminated:
            return VerifyResult(False, pos, f"{where}: last line has no terminating newline "
                                            "(truncated write?)", n, lineno)
        if not line.strip():
            return VerifyResult(False, pos, f"{where}: empty line", n, lineno)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            return VerifyResult(False, pos, f"{where}: malformed JSON ({exc.msg} at column "
                                            f"{exc.colno})", n, lineno)
        why = _check_record(obj, pos, prev)
        if why is not None:
            return VerifyResult(False, pos, f"{where}: {why}", n, lineno)
        prev = obj["hash"]
    if expected_n_records is not None and n != expected_n_records:
        bad = min(n, expected_n_records)
        return VerifyResult(False, bad, f"log has {n} records, expected {expected_n_records} "
                                        "(records removed from or added to the end?)", n,
                            None if n < expected_n_records else bad + 1)
    if expected_last_hash is not None and prev != expected_last_hash:
        return VerifyResult(False, max(n - 1, 0), "hash of the last record does not match "
                                                  "the expected head (tail removed or "
                                                  "rewritten?)", n, n if n else None)
    return VerifyResult(True, None, f"OK: {n} records, chain intact", n, None)


def _read_lines(path: Path) -> tuple[list[str], bool]:
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    if not text:
        return [], True
    terminated = text.endswith("\n")
    lines = text.split("\n")
    if terminated:
        lines = lines[:-1]
    return lines, terminated


def verify_log(path: str | os.PathLike[str], *, expected_last_hash: str | None = None,
               expected_n_records: int | None = None) -> VerifyResult:
    """Verify a hash-chained JSONL event log and name the first broken record.

    Parameters
    ----------
    path : path-like
        The log file.
    expected_last_hash : str, optional
        Anchor: the head hash recorded elsewhere. Detects a removed or rewritten tail.
    expected_n_records : int, optional
        Anchor: the number of records recorded elsewhere.

    Returns
    -------
    VerifyResult
        ``ok`` and, if broken, ``first_bad_seq`` (0-based position of the first record that
        does not verify), ``first_bad_line`` (1-based) and a message. An empty file is a valid
        log with 0 records. A last line without its newline is reported as truncated.

    Notes
    -----
    Checks per line, in order: well-formed JSON object with exactly the six fields,
    ``seq`` equal to its position, ``prev_hash`` equal to the previous record's ``hash``,
    ``hash`` equal to the SHA-256 of the canonical JSON of the other five fields. A forged
    record inserted with a correct hash is caught at the next original record, whose
    ``seq``/``prev_hash`` no longer fit.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "e.jsonl")
    >>> log = EventLog(); _ = log.append(0.0, "start"); log.write(p)
    >>> verify_log(p).ok, verify_log(p).n_records
    (True, 1)
    """
    p = Path(path)
    try:
        lines, terminated = _read_lines(p)
    except OSError as exc:
        return VerifyResult(False, None, f"cannot read {p}: {exc}", 0, None)
    return _verify_lines(lines, terminated=terminated, expected_last_hash=expected_last_hash,
                         expected_n_records=expected_n_records)


def read_log(path: str | os.PathLike[str], *, verify: bool = True) -> list[dict[str, Any]]:
    """Read the records of a JSONL event log.

    Parameters
    ----------
    path : path-like
        The log file.
    verify : bool
        Verify the chain first and raise :class:`LogVerificationError` when it is broken.

    Returns
    -------
    list of dict
        The records in file order.
    """
    p = Path(path)
    if verify:
        res = verify_log(p)
        if not res.ok:
            raise LogVerificationError(str(p), res)
    lines, _ = _read_lines(p)
    return [json.loads(line) for line in lines if line.strip()]
