"""Claiming, checking and publishing an output directory (stdlib only).

A run writes its output directory ``DIR`` into a temporary sibling ``.DIR.tmp-<pid>-<random>``
and renames it into place when every file is complete. Around that:

* :func:`clean_stale` removes what killed runs left: siblings named ``.NAME.tmp-<pid>-*`` /
  ``.NAME.old-<pid>-*`` and lock files ``.NAME.lock`` whose process ``<pid>`` is gone (and
  temporaries of older cmsim versions, without a pid, once they are an hour old);
* :class:`Claim` holds the lock file ``.DIR.lock`` (created exclusively, holding the pid) from
  before the simulation until the directory is published, so a second run for the same ``DIR``
  fails at once instead of after simulating; a lock whose pid is gone is taken over;
* :func:`check_target` accepts an absent or empty ``DIR``, and with ``overwrite`` an existing
  cmsim output directory (one with a ``summary.json``), nothing else;
* :func:`publish` renames the temporary into place; an old directory being overwritten is first
  renamed aside and removed after the new one is in place, so ``DIR`` is never a mixture.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from cmsim.errors import InputError

__all__ = ["Claim", "check_target", "clean_stale", "publish", "temp_prefix"]

#: Age after which a temporary without a pid (older cmsim versions) counts as stale [s].
LEGACY_STALE_AGE_S = 3600.0

_OWNED = re.compile(r"^\..+\.(?:tmp|old)-(\d+)-[^/]+$")
_LEGACY = re.compile(r"^\..+\.tmp-[A-Za-z0-9_]{8}$")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's live process
        return True
    except OSError:
        return False
    return True


def make_dir(path: Path, label: str, *, probe: bool = False) -> None:
    """Create the directory ``path`` (and its parents) where missing, and with ``probe`` check
    that a file can be made in it; else InputError ``"<label> (<reason>)"``."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{label} (exists and is not a directory)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if probe:
            os.rmdir(tempfile.mkdtemp(prefix=".cmsim-probe-", dir=path))
    except OSError as exc:
        raise InputError(f"{label} ({exc.strerror or type(exc).__name__})") from None


def temp_prefix(out: Path, kind: str = "tmp") -> str:
    """Name prefix of this process's temporaries for ``out`` (``.NAME.tmp-<pid>-``)."""
    return f".{out.name}.{kind}-{os.getpid()}-"


def clean_stale(parent: Path) -> list[Path]:
    """Remove stale temporaries of killed cmsim runs in ``parent``; return what was removed.

    Parameters
    ----------
    parent : pathlib.Path
        Directory that holds output directories (the parent of ``--out``).
    """
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        name = entry.name
        m = _OWNED.match(name)
        if name.startswith(".") and name.endswith(".lock") and entry.is_file():
            pid = _lock_pid(entry)
            if pid is not None and not _pid_alive(pid):
                entry.unlink(missing_ok=True)
                removed.append(entry)
            continue
        if m is not None:
            stale = not _pid_alive(int(m.group(1)))
        elif _LEGACY.match(name):
            try:
                stale = now - entry.stat().st_mtime > LEGACY_STALE_AGE_S
            except OSError:
                continue
        else:
            continue
        if stale and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            if not entry.exists():
                removed.append(entry)
    return removed


def _create_with_pid(lock: Path) -> None:
    """Create ``lock`` holding this process's pid, atomically (FileExistsError if present).

    The pid is written to a private name first and hard-linked to ``lock``, so a reader never
    sees an empty lock file.
    """
    private = lock.with_name(f"{lock.name}-{os.getpid()}-{os.urandom(4).hex()}")
    private.write_text(str(os.getpid()), encoding="utf-8")
    try:
        os.link(private, lock)
    finally:
        private.unlink()


def _lock_pid(lock: Path) -> int | None:
    try:
        return int(lock.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _is_cmsim_output(directory: Path) -> bool:
    return (directory / "summary.json").is_file()


def check_target(out: Path, *, overwrite: bool = False) -> None:
    """Check that ``out`` may receive a run's output directory.

    Raises
    ------
    cmsim.errors.InputError
        If ``out`` is a file, a non-empty directory without ``overwrite``, or (with
        ``overwrite``) a non-empty directory that is not a cmsim output directory.
    """
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise InputError(f"out={str(out)!r}: exists and is not a directory")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise InputError(f"out={str(out)!r}: directory exists and is not empty (cmsim never "
                         "overwrites results unless asked: choose a new directory or pass "
                         "--overwrite)")
    if not _is_cmsim_output(out):
        raise InputError(f"out={str(out)!r}: directory is not a cmsim output directory (no "
                         "summary.json); --overwrite only replaces earlier cmsim results")


class Claim:
    """Exclusive claim on an output directory for the lifetime of one run (a context manager).

    Parameters
    ----------
    out : path-like
        The output directory.
    overwrite : bool
        Whether an existing cmsim output directory may be replaced.

    Raises
    ------
    cmsim.errors.InputError
        (on entry) If another live process holds the claim, or :func:`check_target` refuses.
    """

    def __init__(self, out: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.out = Path(out).absolute()
        self.overwrite = overwrite
        self.lock = self.out.parent / f".{self.out.name}.lock"
        self._owner = False

    def __enter__(self) -> Claim:
        make_dir(self.out.parent, f"out={str(self.out)!r}: cannot create its directory "
                                  f"{self.out.parent}")
        clean_stale(self.out.parent)
        for _ in range(3):
            try:
                _create_with_pid(self.lock)
            except FileExistsError:
                holder = self._holder()
                if holder == os.getpid():
                    break  # claimed earlier by this process (e.g. cmsim.run, then write)
                if holder is not None and _pid_alive(holder):
                    raise InputError(f"out={str(self.out)!r}: another cmsim run (pid {holder}) "
                                     "is writing this directory") from None
                try:  # the holder is gone: take the lock over
                    self.lock.unlink()
                except FileNotFoundError:
                    pass
                continue
            except OSError as exc:  # no lock can be made there (read-only, /proc, ...)
                raise InputError(f"out={str(self.out)!r}: cannot write in "
                                 f"{self.out.parent} ({exc.strerror})") from None
            self._owner = True
            break
        else:
            raise InputError(f"out={str(self.out)!r}: cannot claim {self.lock.name}")
        try:
            check_target(self.out, overwrite=self.overwrite)
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _holder(self) -> int | None:
        return _lock_pid(self.lock)

    def release(self) -> None:
        """Remove the lock file when this claim created it."""
        if self._owner:
            self._owner = False
            try:
                self.lock.unlink()
            except FileNotFoundError:
                pass


def publish(tmp: Path, out: Path, *, overwrite: bool = False) -> None:
    """Rename the finished temporary directory ``tmp`` to ``out``.

    An empty ``out`` is replaced; an existing cmsim output directory (``overwrite``) is renamed
    aside first and removed once ``tmp`` is in place.
    """
    check_target(out, overwrite=overwrite)
    old: Path | None = None
    if out.is_dir():
        if any(out.iterdir()):
            old = out.parent / f"{temp_prefix(out, 'old')}{os.urandom(4).hex()}"
            os.replace(out, old)
        else:
            out.rmdir()
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
