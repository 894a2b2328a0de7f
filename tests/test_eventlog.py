"""Tests of the hash-chained event log: every kind of tampering is found at the right record."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsim.errors import ParameterError
from cmsim.eventlog import (
    GENESIS_HASH,
    EventLog,
    EventLogWriter,
    LogVerificationError,
    canonical_json,
    read_log,
    record_hash,
    verify_log,
)

N = 6


def _make_log(n: int = N) -> EventLog:
    log = EventLog()
    for i in range(n):
        log.append(10.0 * i + 0.5, "tick" if i % 2 else "pat_sample",
                   {"i": i, "y": 0.1 * i, "name": f"ev{i}", "nested": {"b": [1, 2], "a": None}})
    return log


@pytest.fixture()
def logfile(tmp_path):
    path = tmp_path / "events.jsonl"
    _make_log().write(path)
    return path


def _lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _put(path, lines) -> None:
    path.write_text("".join(lines), encoding="utf-8")


def _forge(obj: dict) -> dict:
    """Recompute a record's hash the way a forger would (independent SHA-256 code)."""
    body = {k: obj[k] for k in ("seq", "time_s", "type", "data", "prev_hash")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    obj = dict(obj)
    obj["hash"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return obj


# --------------------------------------------------------------------------------- untouched


def test_untouched_log_verifies_and_hash_is_sha256_of_canonical_body(logfile):
    res = verify_log(logfile)
    assert res.ok and res.first_bad_seq is None and res.n_records == N
    recs = [json.loads(line) for line in _lines(logfile)]
    assert [r["seq"] for r in recs] == list(range(N))
    assert recs[0]["prev_hash"] == GENESIS_HASH == "0" * 64
    for prev, rec in zip([None, *recs[:-1]], recs, strict=True):
        if prev is not None:
            assert rec["prev_hash"] == prev["hash"]
        # independent recomputation of the documented hash rule
        assert _forge(rec)["hash"] == rec["hash"]
        assert list(rec) == ["seq", "time_s", "type", "data", "prev_hash", "hash"]


def test_empty_file_is_a_valid_log_with_zero_records(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_bytes(b"")
    res = verify_log(p)
    assert res.ok and res.n_records == 0
    EventLog().write(tmp_path / "e2.jsonl")
    assert (tmp_path / "e2.jsonl").read_bytes() == b""
    assert read_log(p) == []


def test_read_roundtrip_and_continue_chain(logfile, tmp_path):
    log = EventLog.read(logfile)
    assert log.records == _make_log().records
    log.append(99.0, "extra", {"k": 1})
    out = tmp_path / "more.jsonl"
    log.write(out)
    assert verify_log(out).ok and verify_log(out).n_records == N + 1


# --------------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("victim", [0, 3, N - 1])
def test_edited_value_is_found_at_that_record(logfile, victim):
    lines = _lines(logfile)
    obj = json.loads(lines[victim])
    obj["data"]["y"] = obj["data"]["y"] + 1e-9
    lines[victim] = json.dumps(obj) + "\n"
    _put(logfile, lines)
    res = verify_log(logfile)
    assert not res.ok and res.first_bad_seq == victim and res.first_bad_line == victim + 1
    assert "hash does not match" in res.message


def test_edited_time_and_type_are_found(logfile):
    lines = _lines(logfile)
    obj = json.loads(lines[2])
    obj["time_s"] = 20.0  # was 20.5
    lines[2] = json.dumps(obj) + "\n"
    _put(logfile, lines)
    assert verify_log(logfile).first_bad_seq == 2


def test_edited_hash_is_found_at_that_record(logfile):
    lines = _lines(logfile)
    obj = json.loads(lines[2])
    obj["hash"] = "f" + obj["hash"][1:] if obj["hash"][0] != "f" else "e" + obj["hash"][1:]
    lines[2] = json.dumps(obj) + "\n"
    _put(logfile, lines)
    res = verify_log(logfile)
    assert not res.ok and res.first_bad_seq == 2


def test_edit_with_recomputed_hash_breaks_at_next_record(logfile):
    lines = _lines(logfile)
    obj = json.loads(lines[2])
    obj["data"]["y"] = 123.0
    lines[2] = json.dumps(_forge(obj)) + "\n"
    _put(logfile, lines)
    res = verify_log(logfile)
    assert not res.ok and res.first_bad_seq == 3 and "prev_hash" in res.message


@pytest.mark.parametrize("victim", [0, 3])
def test_deleted_line_is_found_at_its_position(logfile, victim):
    lines = _lines(logfile)
    del lines[victim]
    _put(logfile, lines)
    res = verify_log(logfile)
    assert not res.ok and res.first_bad_seq == victim and res.n_records == N - 1


def test_deleted_last_line_needs_an_anchor(logfile):
    full = EventLog.read(logfile)
    lines = _lines(logfile)
    _put(logfile, lines[:-1])
    # a shortened chain is itself a valid chain: only an anchor stored elsewhere reveals it
    assert verify_log(logfile).ok
    by_hash = verify_log(logfile, expected_last_hash=full.head)
    by_count = verify_log(logfile, expected_n_records=len(full))
    assert not by_hash.ok and not by_count.ok
    assert by_count.first_bad_seq == N - 1
    # anchors on the untouched log pass
    _put(logfile, lines)
    assert verify_log(logfile, expected_last_hash=full.head, expected_n_records=N).ok


def test_inserted_forged_line_breaks_chain_at_next_record(logfile):
    lines = _lines(logfile)
    prev = json.loads(lines[2])
    forged = _forge({"seq": 3, "time_s": 21.0, "type": "manual", "data": {"ok": True},
                     "prev_hash": prev["hash"], "hash": ""})
    lines.insert(3, json.dumps(forged) + "\n")
    _put(logfile, lines)
    res = verify_log(logfile)
    assert not res.ok and res.first_bad_seq == 4 and res.first_bad_line == 5
    # a forger who also renumbers the following records still breaks the chain there
    lines = _lines(logfile)
    for i in range(4, len(lines)):
        obj = json.loads(lines[i])
        obj["seq"] = i
        lines[i] = json.dumps(_forge(obj)) + "\n"
    _put(logfile, lines)
    res = verify_log(logfile)
    assert not res.ok and res.first_bad_seq == 4 and "prev_hash" in res.message


def test_swapped_lines_are_found_at_the_first_one(logfile):
    lines = _lines(logfile)
    lines[1], lines[4] = lines[4], lines[1]
    _put(logfile, lines)
    res = verify_log(logfile)
    assert not res.ok and res.first_bad_seq == 1


def test_truncated_last_line_is_reported(logfile):
    raw = logfile.read_bytes()
    logfile.write_bytes(raw[:-25])
    res = verify_log(logfile)
    assert not res.ok and res.first_bad_seq == N - 1 and "truncated" in res.message
    # a complete record whose newline is missing is also reported (the writer never does that)
    logfile.write_bytes(raw[:-1])
    res = verify_log(logfile)
    assert not res.ok and res.first_bad_seq == N - 1


def test_malformed_and_blank_lines(logfile):
    lines = _lines(logfile)
    lines[2] = '{"seq": 2, "time_s": \n'
    _put(logfile, lines)
    res = verify_log(logfile)
    assert not res.ok and res.first_bad_seq == 2 and "malformed JSON" in res.message
    lines = _lines(logfile)
    lines[2] = "\n"
    _put(logfile, lines)
    assert verify_log(logfile).first_bad_seq == 2
    lines[2] = "[1, 2]\n"
    _put(logfile, lines)
    assert "not a JSON object" in verify_log(logfile).message


def test_extra_field_is_reported(logfile):
    lines = _lines(logfile)
    obj = json.loads(lines[1])
    obj["comment"] = "harmless?"
    lines[1] = json.dumps(obj) + "\n"
    _put(logfile, lines)
    res = verify_log(logfile)
    assert res.first_bad_seq == 1 and "comment" in res.message


def test_read_log_refuses_a_broken_file(logfile):
    lines = _lines(logfile)
    del lines[1]
    _put(logfile, lines)
    with pytest.raises(LogVerificationError, match="seq"):
        read_log(logfile)
    assert len(read_log(logfile, verify=False)) == N - 1


# --------------------------------------------------------------------------------- writer


def test_live_writer_equals_atomic_write(tmp_path):
    live = tmp_path / "live.jsonl"
    ref = _make_log()
    with EventLogWriter(live) as w:
        for r in ref.records:
            w.append(r["time_s"], r["type"], r["data"])
            # every appended line is already on disk and the file verifies at every step
            assert verify_log(live).n_records == r["seq"] + 1
    batch = tmp_path / "batch.jsonl"
    ref.write(batch)
    assert live.read_bytes() == batch.read_bytes()


def test_writer_refuses_existing_file_unless_resume(tmp_path):
    p = tmp_path / "e.jsonl"
    with EventLogWriter(p) as w:
        w.append(0.0, "a")
    with pytest.raises(ParameterError, match="resume"):
        EventLogWriter(p)
    with EventLogWriter(p, resume=True, fsync=False) as w:
        rec = w.append(1.0, "b")
    assert rec["seq"] == 1 and verify_log(p).ok and verify_log(p).n_records == 2


def test_atomic_write_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "e.jsonl"
    _make_log(2).write(p)
    before = p.read_bytes()
    bad = _make_log(1)
    bad.records[0]["data"] = {"x": float("nan")}  # corrupt in memory: cannot be serialised
    with pytest.raises(ValueError):
        bad.write(p)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["e.jsonl"]


# --------------------------------------------------------------------------------- canonical JSON


def test_numpy_values_are_converted_deterministically():
    log = EventLog()
    rec = log.append(np.float32(1.5), "x", {"a": np.arange(3), "b": np.float64(0.1),
                                            "c": np.bool_(True), "d": (np.int16(2), 3.0),
                                            "e": np.array([[1.0, 2.5]])})
    assert rec["data"] == {"a": [0, 1, 2], "b": 0.1, "c": True, "d": [2, 3.0],
                           "e": [[1.0, 2.5]]}
    assert type(rec["data"]["a"][0]) is int and type(rec["time_s"]) is float
    plain = {"a": [0, 1, 2], "b": 0.1, "c": True, "d": [2, 3.0], "e": [[1.0, 2.5]]}
    assert rec["hash"] == record_hash(0, 1.5, "x", plain, GENESIS_HASH)
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), np.float64("-inf"),
                                 np.array([1.0, np.nan])])
def test_nan_and_inf_are_rejected_with_a_clear_error(bad):
    with pytest.raises(ParameterError, match="finite"):
        EventLog().append(0.0, "x", {"v": bad})


def test_bad_arguments():
    log = EventLog()
    with pytest.raises(ParameterError, match="time_s"):
        log.append(float("nan"), "x")
    with pytest.raises(ParameterError, match="type"):
        log.append(0.0, "")
    with pytest.raises(ParameterError, match="keys must be str"):
        log.append(0.0, "x", {1: 2})
    with pytest.raises(ParameterError, match="not JSON-serialisable"):
        log.append(0.0, "x", {"s": {1, 2}})
    assert len(log) == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None)
@given(events=st.lists(st.tuples(st.floats(-1e9, 1e9), st.text(min_size=1, max_size=6),
                                 st.dictionaries(st.text(max_size=5), json_values,
                                                 max_size=3)),
                       max_size=5))
def test_any_log_roundtrips_and_verifies(tmp_path_factory, events):
    p = tmp_path_factory.mktemp("h") / "e.jsonl"
    log = EventLog()
    for t, typ, data in events:
        log.append(t, typ, data)
    log.write(p)
    assert verify_log(p).ok
    assert read_log(p) == log.records


def test_writer_resume_refuses_a_truncated_file(tmp_path):
    p = tmp_path / "e.jsonl"
    with EventLogWriter(p) as w:
        w.append(0.0, "a")
        w.append(1.0, "b")
    p.write_bytes(p.read_bytes()[:-10])  # crash in the middle of the last write
    with pytest.raises(LogVerificationError, match="truncated"):
        EventLogWriter(p, resume=True)


# --------------------------------------------------------------------------------- CLI anchors


def _run_dir(tmp_path, log: EventLog):
    """An output directory: events.jsonl and a summary.json holding the anchors."""
    d = tmp_path / "run"
    d.mkdir()
    log.write(d / "events.jsonl")
    summary = {"scenario": "x", "event_log": {"records": len(log), "head_hash": log.head}}
    (d / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return d


def test_cli_removed_tail_passes_the_chain_but_fails_the_anchors(tmp_path, capsys):
    from cmsim.cli import main

    log = _make_log()
    d = _run_dir(tmp_path, log)
    path = d / "events.jsonl"
    assert main(["verify-log", str(d)]) == 0
    assert "matches the anchors" in capsys.readouterr().out
    _put(path, _lines(path)[:-1])                               # remove the last record
    assert main(["verify-log", str(path)]) == 0                 # the chain alone holds
    assert "no anchors" in capsys.readouterr().out
    assert main(["verify-log", str(path), "--expect-records", str(N)]) == 1
    err = capsys.readouterr().err
    assert f"seq {N - 1}" in err and f"log has {N - 1} records, expected {N}" in err
    assert main(["verify-log", str(path), "--expect-head", log.head]) == 1
    err = capsys.readouterr().err
    assert "hash of the last record does not match the expected head" in err
    assert main(["verify-log", str(d)]) == 1                    # anchors from summary.json
    err = capsys.readouterr().err
    assert "expected 6" in err and "summary.json" in err and "Traceback" not in err


def test_cli_anchors_accept_the_untouched_log_and_catch_a_rewritten_tail(tmp_path, capsys):
    from cmsim.cli import main

    log = _make_log()
    d = _run_dir(tmp_path, log)
    path = d / "events.jsonl"
    assert main(["verify-log", str(path), "--expect-head", log.head.upper(),
                 "--expect-records", str(N)]) == 0
    # drop the last record and append a different valid one: same count, chain intact
    forged = EventLog.read(path)
    forged.records.pop()
    forged.append(99.0, "tick", {"forged": True})
    forged.write(path)
    assert verify_log(path).ok
    assert main(["verify-log", str(path), "--expect-records", str(N)]) == 0
    assert main(["verify-log", str(d)]) == 1
    assert "expected head" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "text"), [
    (["--expect-head", "abc"], "64 hexadecimal digits"),
    (["--expect-head", "g" * 64], "64 hexadecimal digits"),
    (["--expect-records", "-1"], ">= 0"),
])
def test_cli_bad_anchors_are_input_errors(logfile, capsys, args, text):
    from cmsim.cli import main

    assert main(["verify-log", str(logfile), *args]) == 2
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err


def test_cli_directory_without_anchors_is_an_input_error(tmp_path, capsys):
    from cmsim.cli import main

    d = tmp_path / "old"
    d.mkdir()
    _make_log().write(d / "events.jsonl")
    (d / "summary.json").write_text(json.dumps({"scenario": "x"}), encoding="utf-8")
    assert main(["verify-log", str(d)]) == 2
    assert "event_log" in capsys.readouterr().err
    (d / "events.jsonl").unlink()
    assert main(["verify-log", str(d)]) == 2
    assert "no events.jsonl" in capsys.readouterr().err
