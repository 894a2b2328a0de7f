"""File-mode helpers for atomic writes (stdlib only).

``tempfile.mkstemp``/``mkdtemp`` create private 0600/0700 entries; results are meant to be shared,
so atomically written files and directories get the modes a plain ``open``/``mkdir`` would give
under the current umask.
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
