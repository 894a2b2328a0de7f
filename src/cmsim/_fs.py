"""Atomic writes (stdlib only): a file is complete or absent, never half-written.

:func:`atomic_write` is the one routine that writes a single file atomically (temporary file in
the same directory, ``fsync``, rename); :func:`write_files` writes several files into a
directory, each complete or absent. ``tempfile.mkstemp``/``mkdtemp`` create private 0600/0700
entries; results are meant to be shared, so atomically written files and directories get the
modes a plain ``open``/``mkdir`` would give under the current umask.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(path: str | os.PathLike, *, directory: bool = False) -> None:
    """Give ``path`` the mode a normal file (0666) or directory (0777) gets under the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], *,
                 overwrite: bool = True, fsync: bool = True) -> Path:
    """Write one file atomically: ``write(tmp)`` fills a temporary file next to ``path``,
    which then takes the name ``path``.

    Parameters
    ----------
    path : path-like
        Destination; its directory must exist.
    write : callable
        ``write(tmp_path)`` writes the whole file at ``tmp_path``.
    overwrite : bool
        True (default): replace an existing ``path`` (:func:`os.replace`). False: raise
        :class:`FileExistsError` when the name exists, even if it appeared while writing (a hard
        link claims the name).
    fsync : bool
        Flush the file and the directory entry to disk (default), so that a crash leaves the old
        file or the new one.

    Returns
    -------
    Path
        ``path``.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        publish_mode(tmp)
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    if fsync:
        _fsync_directory(directory)
    return target


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; skipped where a directory cannot be
    opened)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def write_files(out: str | os.PathLike, writers: Mapping[str, Callable[[Path], None]]
                ) -> list[Path]:
    """Write files into the directory ``out`` (created if needed), each complete or absent.

    Every ``writers[name](path)`` writes its file into a temporary directory inside ``out``;
    the files are then moved into place one by one (``name`` may contain ``/`` for a
    subdirectory).

    Returns
    -------
    list of Path
        The files written, in the order of ``writers``.
    """
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".write-", dir=target))
    try:
        for name, write in writers.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            write(tmp / name)
        written = []
        for name in writers:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            publish_mode(tmp / name)
            os.replace(tmp / name, target / name)
            written.append(target / name)
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
