"""Atomically written results get the modes of ordinary files, not mkstemp's private 0600."""

import os
import stat

import pytest

from cmsim._fs import atomic_write, publish_mode
from cmsim.eventlog import EventLog


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_event_log_file_is_world_readable_under_the_umask(tmp_path):
    log = EventLog()
    log.append(0.0, "start", {"x": 1})
    path = tmp_path / "events.jsonl"
    log.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()


def test_publish_mode_for_directories(tmp_path):
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    publish_mode(d, directory=True)
    assert stat.S_IMODE(d.stat().st_mode) == 0o777 & ~_umask()


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old\n")

    def half_then_fail(p):
        p.write_text("new, half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["table.csv"]  # no temporary left


def test_atomic_write_replaces_or_refuses_an_existing_name(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write(path, lambda p: p.write_text("1"))
    atomic_write(path, lambda p: p.write_text("2"))
    assert path.read_text() == "2"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    with pytest.raises(FileExistsError):
        atomic_write(path, lambda p: p.write_text("3"), overwrite=False)
    assert path.read_text() == "2"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]
