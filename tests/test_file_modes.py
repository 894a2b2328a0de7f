"""Atomically written results get the modes of ordinary files, not mkstemp's private 0600."""

import os
import stat

from cmsim._fs import publish_mode
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
