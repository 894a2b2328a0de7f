"""File-mode helpers for atomic writes (stdlib only).

``tempfile.mkstemp``/``mkdtemp`` create private 0600/0700 entries; results are meant to be shared,
so atomically written files and directories get the modes a plain ``open``/``mkdir`` would give
under the current umask.
"""

from __future__ import annotations

import os


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(path: str | os.PathLike, *, directory: bool = False) -> None:
    """Give ``path`` the mode a normal file (0666) or directory (0777) gets under the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())
