"""The output directory of a sweep: manifest, lock, Parquet parts, kept results, final table.

Layout of ``DIR``::

    manifest.json       the sweep's definition (scenario SHA-256, grid, replicates, root seed,
                        cmsim version, metric names), its SHA-256, and one entry per start
    .lock               {"pid", "host", "started"} of the process writing DIR (while it runs)
    parts/part-AAAA-JJJJJJJJJJ.parquet
                        the rows of one finished chunk (start AAAA, first job JJJJJJJJJJ),
                        written as the chunk finishes (temporary file + rename: complete or
                        absent)
    kept/case-CCCCCC-rep-RRRRRR.pkl
                        results selected by ``keep`` (pickle; read back with the same cmsim)
    sweep.parquet, sweep.csv, sweep_summary.csv
                        the final table and the per grid point statistics, written when every
                        case has a row

A start with the same definition resumes: the jobs with a row in ``parts/`` and no error are
skipped. A different definition is refused (:class:`SweepDefinitionError`); a directory locked
by a live process is refused (:class:`SweepLockedError`); the lock of a dead process on the same
host is taken over.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import pickle
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cmsim._fs import atomic_write
from cmsim._outdir import make_dir
from cmsim.errors import CmsimError, InputError

__all__ = ["FORMAT", "KeptResults", "SweepDefinitionError", "SweepLockedError", "SweepStore",
           "definition_sha256"]

FORMAT = "cmsim-sweep/1"
MANIFEST = "manifest.json"
LOCK = ".lock"
PARTS = "parts"
KEPT = "kept"
FINAL = ("sweep.parquet", "sweep.csv", "sweep_summary.csv")


class SweepDefinitionError(InputError):
    """``--out`` holds another sweep (different definition) or something that is no sweep."""


class SweepLockedError(CmsimError):
    """Another live process is writing the sweep directory.

    Parameters
    ----------
    path : Path
        The lock file.
    holder : dict
        Its content: ``pid``, ``host``, ``started``.
    """

    def __init__(self, path: Path, holder: Mapping[str, Any], detail: str = "") -> None:
        self.path = Path(path)
        self.holder = dict(holder)
        super().__init__(
            f"{self.path.parent}: in use by another sweep (pid {holder.get('pid')} on host "
            f"{holder.get('host')}, started {holder.get('started')}){detail}; wait for it to "
            "finish or choose another --out")

    def __reduce__(self):
        return (type(self), (self.path, self.holder))


def definition_sha256(definition: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a sweep definition."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SweepStore:
    """Reads and writes the output directory of one sweep (see the module docstring).

    Parameters
    ----------
    out : path-like
        The directory (created when missing).
    """

    def __init__(self, out: str | os.PathLike) -> None:
        self.dir = Path(out)
        self.locked = False

    # ------------------------------------------------------------------ lock
    @property
    def lock_path(self) -> Path:
        return self.dir / LOCK

    def acquire(self) -> None:
        """Take the lock of the directory (create the directory when missing).

        Raises
        ------
        SweepLockedError
            A live process (or one on another host, which cannot be checked) holds it.
        """
        if self.dir.exists() and not self.dir.is_dir():
            raise SweepDefinitionError(f"{self.dir}: exists and is not a directory")
        make_dir(self.dir, f"out={str(self.dir)!r}: cannot create the directory")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
        for _ in range(3):
            if self._create_lock(me):
                self.locked = True
                return
            holder = self._read_lock(self.lock_path)
            if holder is None:  # vanished meanwhile, or not a lock we can read: retry / stale
                if not self.lock_path.exists():
                    continue
                holder = {}
            if holder and holder.get("host") != me["host"]:
                raise SweepLockedError(self.lock_path, holder, " (another host: cannot check "
                                       f"that it still runs; remove {self.lock_path} if not)")
            if holder and _pid_alive(holder.get("pid")):
                raise SweepLockedError(self.lock_path, holder)
            self._take_over(holder)
        raise SweepLockedError(self.lock_path, self._read_lock(self.lock_path) or {})

    def _create_lock(self, me: Mapping[str, Any]) -> bool:
        tmp = self.dir / f".lock.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(me), encoding="utf-8")
        try:
            os.link(tmp, self.lock_path)  # atomic, and fails when the lock exists
            return True
        except FileExistsError:
            return False
        except OSError as exc:  # a filesystem without hard links
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(me))
            return True
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _read_lock(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _take_over(self, stale: Mapping[str, Any]) -> None:
        """Move the stale lock aside, checking that it is the one judged stale."""
        aside = self.dir / f".lock.stale-{os.getpid()}"
        try:
            os.rename(self.lock_path, aside)
        except FileNotFoundError:
            return
        if (self._read_lock(aside) or {}) != dict(stale):  # a fresh lock of another process
            try:
                os.link(aside, self.lock_path)
            except FileExistsError:
                pass
            holder = self._read_lock(aside) or {}
            aside.unlink(missing_ok=True)
            raise SweepLockedError(self.lock_path, holder)
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if not self.locked:
            return
        holder = self._read_lock(self.lock_path) or {}
        if holder.get("pid") == os.getpid():
            self.lock_path.unlink(missing_ok=True)
        self.locked = False

    # ------------------------------------------------------------------ manifest
    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or None when the directory has none."""
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SweepDefinitionError(f"{self.manifest_path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SweepDefinitionError(f"{self.manifest_path}: format "
                                       f"{data.get('format') if isinstance(data, dict) else None!r}"
                                       f" is not {FORMAT!r}")
        return data

    def open(self, definition: Mapping[str, Any], start: Mapping[str, Any]) -> int:
        """Check or write the manifest for a (re)start; return the start's number (1, 2, ...).

        Raises
        ------
        SweepDefinitionError
            The directory holds another sweep, or files but no manifest.
        """
        sha = definition_sha256(definition)
        manifest = self.read_manifest()
        if manifest is None:
            others = [p.name for p in self.dir.iterdir() if p.name != LOCK
                      and not p.name.startswith(".lock.")]
            if others:
                raise SweepDefinitionError(
                    f"{self.dir}: not empty ({', '.join(sorted(others)[:5])}) and holds no sweep "
                    f"({MANIFEST} is missing); choose a new or empty directory")
            manifest = {"format": FORMAT, "definition": dict(definition),
                        "definition_sha256": sha, "starts": []}
        elif manifest.get("definition_sha256") != sha:
            raise SweepDefinitionError(self._difference(manifest.get("definition", {}),
                                                        definition))
        manifest["starts"].append(dict(start))
        atomic_write(self.manifest_path, lambda p: p.write_text(
            json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8"))
        (self.dir / PARTS).mkdir(exist_ok=True)
        for tmp in (self.dir / PARTS).glob(".*.tmp"):  # left by a killed writer
            tmp.unlink(missing_ok=True)
        return len(manifest["starts"])

    def _difference(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
        lines = [f"{self.dir}: holds another sweep; a sweep resumes only with the same "
                 "definition. Differences (in the directory / now):"]
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                lines.append(f"  {key}: {_short(old.get(key))} / {_short(new.get(key))}")
        lines.append("Choose another --out, or remove the directory to start over.")
        return "\n".join(lines)

    # ------------------------------------------------------------------ parts
    def write_part(self, table: Any, start: int, first_job: int) -> Path:
        """Write one chunk's rows (a pyarrow Table) as ``parts/part-<start>-<first job>``."""
        import pyarrow.parquet as pq  # noqa: PLC0415

        path = self.dir / PARTS / f"part-{start:04d}-{first_job:010d}.parquet"
        atomic_write(path, lambda p: pq.write_table(table, p))
        return path

    def part_paths(self) -> list[Path]:
        """Finished parts, oldest start first, then by first job."""
        return sorted((self.dir / PARTS).glob("part-*.parquet"))

    def read_parts(self, columns: list[str] | None = None) -> list[Any]:
        """The parts as pyarrow Tables (in :meth:`part_paths` order)."""
        import pyarrow.parquet as pq  # noqa: PLC0415

        out = []
        for path in self.part_paths():
            names = pq.read_schema(path).names
            cols = None if columns is None else [c for c in columns if c in names]
            out.append(pq.read_table(path, columns=cols))
        return out

    def finished_jobs(self) -> set[tuple[int, int]]:
        """``(case, replicate)`` with a row without error on disk."""
        done: set[tuple[int, int]] = set()
        for t in self.read_parts(["case", "replicate", "error_type"]):
            d = t.to_pydict()
            errors = d.get("error_type", [None] * t.num_rows)
            done.update((c, r) for c, r, e in zip(d["case"], d["replicate"], errors, strict=True)
                        if e is None)
        return done

    # ------------------------------------------------------------------ kept results
    def save_kept(self, key: tuple[int, int], result: Any) -> None:
        """Pickle one kept result under ``kept/``."""
        (self.dir / KEPT).mkdir(exist_ok=True)
        path = self.dir / KEPT / _kept_name(key)
        atomic_write(path, lambda p: p.write_bytes(
            pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)))

    def kept_keys(self) -> list[tuple[int, int]]:
        """Keys of the kept results on disk."""
        keys = []
        for path in sorted((self.dir / KEPT).glob("case-*-rep-*.pkl")):
            parts = path.stem.split("-")
            keys.append((int(parts[1]), int(parts[3])))
        return keys

    # ------------------------------------------------------------------ final files
    def write_final(self, table: Any, summary: Any, metadata: Mapping[str, str]) -> None:
        """Write ``sweep.parquet`` (with ``metadata`` in its schema), ``sweep.csv`` and
        ``sweep_summary.csv``, each atomically."""
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        arrow = pa.Table.from_pandas(_parquet_safe(table), preserve_index=False)
        meta = dict(arrow.schema.metadata or {})
        meta.update({k.encode(): str(v).encode() for k, v in metadata.items()})
        arrow = arrow.replace_schema_metadata(meta)
        atomic_write(self.dir / FINAL[0], lambda p: pq.write_table(arrow, p))
        atomic_write(self.dir / FINAL[1], lambda p: table.to_csv(p, index=False))
        atomic_write(self.dir / FINAL[2], lambda p: summary.to_csv(p, index=False))


class KeptResults(Mapping):
    """The results a sweep kept, by ``(case, replicate)``: in memory, or read from ``kept/``
    of the sweep directory on first access.

    Parameters
    ----------
    memory : dict
        Results held in memory.
    directory : Path, optional
        A sweep directory whose ``kept/`` holds more (pickles written by this cmsim version).
    """

    def __init__(self, memory: Mapping[tuple[int, int], Any] | None = None,
                 directory: Path | None = None) -> None:
        self._memory = dict(memory or {})
        self._dir = directory
        self._keys = set(self._memory)
        if directory is not None:
            self._keys.update(SweepStore(directory).kept_keys())

    def __getitem__(self, key: tuple[int, int]) -> Any:
        key = (int(key[0]), int(key[1]))
        if key in self._memory:
            return self._memory[key]
        if key not in self._keys or self._dir is None:
            raise KeyError(key)
        with open(self._dir / KEPT / _kept_name(key), "rb") as fh:
            result = pickle.load(fh)  # noqa: S301 - the sweep's own files
        self._memory[key] = result
        return result

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(sorted(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeptResults({len(self)} results: {sorted(self._keys)[:4]}...)"


def _kept_name(key: tuple[int, int]) -> str:
    return f"case-{int(key[0]):06d}-rep-{int(key[1]):06d}.pkl"


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parquet_safe(table: Any) -> Any:
    """Columns of mixed Python types (a grid axis of numbers and strings) as strings."""
    out = table
    for col in table.columns:
        if table[col].dtype == object:
            kinds = {type(v) for v in table[col] if v is not None}
            if len(kinds) > 1:
                out = out.copy() if out is table else out
                out[col] = table[col].map(lambda v: None if v is None else str(v))
    return out
