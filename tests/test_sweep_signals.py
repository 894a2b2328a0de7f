"""SIGTERM / SIGINT on a real ``cmsim sweep`` process: pending work cancelled, finished chunks
kept as complete Parquet files, no worker process left behind, and a re-run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import cmsim
from cmsim.config import load_scenario
from cmsim.sweep import case_metrics, load
from cmsim.sweep.store import SweepStore

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="reads process trees from /proc (Linux)")

SCEN = "scenarios/control_none.toml"
SHORT = "simulation.duration=6 min"


def _children(pid: int) -> set[int]:
    """All descendants of ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended (only its exit status is left)


def _start(out: Path, extra: list[str], replicates: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cmsim", "sweep", SCEN, "--replicates", str(replicates),
           "--set", SHORT, "--task-seconds", "0.05", "--seed", "7",
           "--out", str(out), "-q", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for_parts(proc: subprocess.Popen, out: Path, n: int, timeout: float = 180.0) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if len(list((out / "parts").glob("part-*.parquet"))) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"sweep ended before the signal: rc={proc.returncode} "
                        f"{proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no part written in time")


def _check_parts(out: Path, killed: bool = False) -> int:
    """Every part is a complete Parquet file; no temporary file and no lock unless the process
    was killed (SIGKILL: nothing can clean up). Returns the rows."""
    if not killed:
        assert not list((out / "parts").glob(".*")), "a temporary part was left behind"
    assert (out / ".lock").exists() == killed
    rows = 0
    for part in (out / "parts").glob("part-*.parquet"):
        t = pq.read_table(part)  # raises on a truncated file
        assert t.num_rows > 0 and t.column("error_type").null_count == t.num_rows
        rows += t.num_rows
    return rows


@pytest.mark.slow
def test_sigterm_ends_the_workers_and_keeps_finished_chunks(tmp_path):
    out = tmp_path / "sw"
    proc = _start(out, ["--workers", "2"], replicates=20000)
    _wait_for_parts(proc, out, 2)
    workers = _children(proc.pid)
    assert len(workers) >= 2  # the pool's processes (and multiprocessing's helper)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM" in err and "resume" in err
    t_end = time.monotonic() + 15
    while any(_alive(p) for p in workers) and time.monotonic() < t_end:
        time.sleep(0.05)
    assert not [p for p in workers if _alive(p)], "worker processes left behind"
    rows = _check_parts(out)
    assert 0 < rows < 20000  # pending runs were cancelled, not run
    # the kept rows are those of an uninterrupted sweep
    # the kept rows are those of cmsim.run with the replicate's seed
    partial = load(out)
    for i in (0, len(partial) // 2, len(partial) - 1):
        row = partial.iloc[i]
        seed = np.random.SeedSequence(7).spawn(int(row["replicate"]) + 1)[-1]
        metrics = case_metrics(cmsim.run(SCEN, seed=seed, overrides=[SHORT]))
        for name in ("escapes", "tablets_produced", "api_content_rsd"):
            assert row[name] == metrics[name]


@pytest.mark.slow
def test_sigkill_of_the_parent_ends_the_workers_too(tmp_path):
    """A killed parent cannot clean up: the workers end with it (Linux parent-death signal),
    the parts on disk are complete, and the lock of the dead process is taken over."""
    out = tmp_path / "sw"
    proc = _start(out, ["--workers", "2"], replicates=20000)
    _wait_for_parts(proc, out, 2)
    workers = _children(proc.pid)
    assert len(workers) >= 2
    proc.kill()
    proc.communicate(timeout=60)
    t_end = time.monotonic() + 15
    while any(_alive(p) for p in workers) and time.monotonic() < t_end:
        time.sleep(0.05)
    assert not [p for p in workers if _alive(p)], "worker processes left behind"
    assert _check_parts(out, killed=True) > 0
    store = SweepStore(out)
    store.acquire()  # the stale lock of the killed process is taken over
    assert json.loads((out / ".lock").read_text())["pid"] == os.getpid()
    assert store.open(store.read_manifest()["definition"], {"test": True}) == 2
    assert not list((out / "parts").glob(".*"))  # a part being written when killed: removed
    store.release()
    assert not (out / ".lock").exists()


@pytest.mark.slow
def test_sigint_keeps_finished_cases_and_a_rerun_completes_the_table(tmp_path):
    out = tmp_path / "sw"
    replicates = 400
    proc = _start(out, [], replicates=replicates)
    _wait_for_parts(proc, out, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted by SIGINT" in err
    rows = _check_parts(out)
    assert 0 < rows < replicates
    assert not (out / "sweep.parquet").exists()
    rerun = _start(out, [], replicates=replicates)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    reference = cmsim.sweep(load_scenario(SCEN, overrides=[SHORT]), replicates=replicates,
                            seed=7)
    pd.testing.assert_frame_equal(load(out), reference, check_exact=True)
    on_disk = pd.read_parquet(out / "sweep.parquet")
    assert on_disk["api_content_rsd"].tolist() == reference["api_content_rsd"].tolist()
