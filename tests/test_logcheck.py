"""cmsim.logcheck: an output's event log checked against the anchors in its summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cmsim
from cmsim.errors import InputError
from cmsim.logcheck import check_log, log_target


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("logcheck") / "run"
    cmsim.run("baseline", seed=1, out=out, figures=False, report=False,
              overrides=["simulation.duration=20 min"])
    return out


def test_directory_anchors_come_from_its_summary(out_dir: Path) -> None:
    t = log_target(out_dir)
    anchors = json.loads((out_dir / "summary.json").read_text())["event_log"]
    assert t.path == out_dir / "events.jsonl"
    assert (t.head, t.records) == (anchors["head_hash"], anchors["records"])
    assert t.origin == str(out_dir / "summary.json")
    lines = t.path.read_text().splitlines()
    assert t.records == len(lines)
    assert json.loads(lines[-1])["hash"] == t.head
    result = check_log(t)
    assert result.ok and result.n_records == t.records


def test_given_anchors_take_precedence(out_dir: Path) -> None:
    t = log_target(out_dir, records=3)
    assert t.records == 3 and t.origin.startswith("command line and ")
    assert not check_log(t).ok  # the log has more than 3 records


def test_a_removed_tail_is_caught_only_with_anchors(out_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    lines = (out_dir / "events.jsonl").read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]))
    alone = log_target(log)
    assert alone.origin == "" and check_log(alone).ok  # the chain itself still holds
    anchors = json.loads((out_dir / "summary.json").read_text())["event_log"]
    anchored = log_target(log, anchors["head_hash"], anchors["records"])
    assert not check_log(anchored).ok


def test_missing_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        log_target(tmp_path / "nothing.jsonl")
    with pytest.raises(InputError, match="no events.jsonl"):
        log_target(tmp_path)
    (tmp_path / "events.jsonl").write_text("")
    with pytest.raises(InputError, match="cannot read the anchors"):
        log_target(tmp_path)
