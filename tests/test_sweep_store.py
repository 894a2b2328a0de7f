"""Sweep directory: parts as chunks finish, resume, refused definitions, lock, error rows, kept
results."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

import cmsim
import cmsim.api
from _sweep_helpers import first_replicate, ticks_or_fail
from cmsim.sweep import SweepDefinitionError, SweepInterrupted, SweepLockedError, load
from cmsim.sweep import runner as sweep_runner
from cmsim.sweep.metrics import case_metrics

SCEN = "scenarios/control_none.toml"
GRID = {"simulation.duration": ["6 min", "7 min"], "feeders[0].noise_rsd": [0.01, 0.03]}


def _counting_run_job(monkeypatch, stop_after: int | None = None) -> list[tuple[int, int]]:
    """Count the jobs run in this process; raise SIGINT's exception at job ``stop_after``."""
    calls: list[tuple[int, int]] = []
    real = sweep_runner.run_job

    def run_job(ctx, case, rep):
        if stop_after is not None and len(calls) == stop_after:
            raise SweepInterrupted(signal.SIGINT)
        calls.append((case, rep))
        return real(ctx, case, rep)

    monkeypatch.setattr(sweep_runner, "run_job", run_job)
    return calls


def test_resume_after_an_interrupt_gives_the_uninterrupted_table(tmp_path, monkeypatch):
    reference = cmsim.sweep(SCEN, replicates=3, grid=GRID, seed=11)
    out = tmp_path / "sw"
    calls = _counting_run_job(monkeypatch, stop_after=5)
    with pytest.raises(SweepInterrupted):
        # task_seconds tiny: every finished case is its own part
        cmsim.sweep(SCEN, replicates=3, grid=GRID, seed=11, out=out, task_seconds=1e-9)
    parts = sorted((out / "parts").glob("part-*.parquet"))
    assert len(parts) == 5 and not (out / ".lock").exists()
    assert not (out / "sweep.parquet").exists()  # no final table before every run has a row
    partial = load(out)  # the finished runs, as the sweep would return them
    pd.testing.assert_frame_equal(partial, reference.iloc[:5].reset_index(drop=True),
                                  check_exact=True, check_frame_type=False)
    monkeypatch.undo()
    calls = _counting_run_job(monkeypatch)
    resumed = cmsim.sweep(SCEN, replicates=3, grid=GRID, seed=11, out=out)
    assert len(calls) == 12 - 5  # only the runs without a row
    assert calls[0] == (1, 2)  # job 5 = case 1, replicate 2
    pd.testing.assert_frame_equal(resumed, reference, check_exact=True)
    pd.testing.assert_frame_equal(load(out), reference, check_exact=True)
    on_disk = pd.read_parquet(out / "sweep.parquet")
    assert on_disk["escapes"].tolist() == reference["escapes"].tolist()
    meta = pq.read_schema(out / "sweep.parquet").metadata
    assert meta[b"cmsim.sweep.definition_sha256"].decode() == \
        json.loads((out / "manifest.json").read_text())["definition_sha256"]
    # a complete directory: running again runs nothing and gives the same table
    calls.clear()
    again = cmsim.sweep(SCEN, replicates=3, grid=GRID, seed=11, out=out)
    assert calls == []
    pd.testing.assert_frame_equal(again, reference, check_exact=True)


def test_manifest_records_the_definition(tmp_path):
    out = tmp_path / "sw"
    cmsim.sweep(SCEN, replicates=2, grid={"simulation.duration": ["6 min"]}, seed=4, out=out)
    m = json.loads((out / "manifest.json").read_text())
    d = m["definition"]
    assert d["replicates"] == 2 and d["seed"] == 4
    assert d["grid"] == [["simulation.duration", ["6 min"]]]
    assert d["cmsim_version"] == cmsim.__version__
    assert d["scenario_sha256"] == cmsim.config.load_scenario(SCEN).sha256()
    assert len(m["starts"]) == 1 and m["starts"][0]["pid"] == os.getpid()
    for part in (out / "parts").glob("*"):
        assert part.name.startswith("part-") and pq.read_table(part).num_rows > 0


@pytest.mark.parametrize(("change", "named"), [
    ({"replicates": 3}, "replicates"),
    ({"seed": 5}, "seed"),
    ({"grid": {"simulation.duration": ["7 min"]}}, "grid"),
    ({"scenario": "scenarios/api_feeder_stop.toml"}, "scenario_sha256"),
])
def test_a_different_definition_is_refused(tmp_path, change, named):
    out = tmp_path / "sw"
    kw = {"scenario": SCEN, "replicates": 2, "grid": {"simulation.duration": ["6 min"]},
          "seed": 4}
    cmsim.sweep(kw.pop("scenario"), out=out, **kw)
    before = sorted(p.name for p in (out / "parts").iterdir())
    new = {**kw, "scenario": SCEN, **change}
    with pytest.raises(SweepDefinitionError) as ei:
        cmsim.sweep(new.pop("scenario"), out=out, **new)
    msg = str(ei.value)
    assert named in msg and str(out) in msg and "another sweep" in msg
    assert sorted(p.name for p in (out / "parts").iterdir()) == before
    assert not (out / ".lock").exists()


def test_a_directory_that_holds_no_sweep_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SweepDefinitionError, match="notes.txt"):
        cmsim.sweep(SCEN, grid={"simulation.duration": ["6 min"]}, out=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def _lock(out, pid, host=None):
    out.mkdir(parents=True, exist_ok=True)
    (out / ".lock").write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                           "started": "2026-01-01T00:00:00+00:00"}))


def test_a_live_lock_is_refused_and_a_stale_one_taken_over(tmp_path):
    out = tmp_path / "sw"
    grid = {"simulation.duration": ["6 min"]}
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock(out, holder.pid)
        with pytest.raises(SweepLockedError) as ei:
            cmsim.sweep(SCEN, grid=grid, out=out)
        assert f"pid {holder.pid}" in str(ei.value) and "in use" in str(ei.value)
        assert json.loads((out / ".lock").read_text())["pid"] == holder.pid  # left alone
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead now: its lock is stale and taken over
    table = cmsim.sweep(SCEN, grid=grid, out=out)
    assert len(table) == 1 and not (out / ".lock").exists()
    _lock(out, 1, host="another-host.example")
    with pytest.raises(SweepLockedError, match="another host"):
        cmsim.sweep(SCEN, grid=grid, out=out)


def test_cli_refuses_a_directory_in_use_with_exit_code_4(tmp_path, capsys):
    from cmsim.cli import main

    out = tmp_path / "sw"
    _lock(out, os.getpid())  # this process is alive
    rc = main(["sweep", SCEN, "--set", "simulation.duration=6 min", "--out", str(out), "-q"])
    assert rc == 4
    err = capsys.readouterr().err
    assert "in use by another sweep" in err and f"pid {os.getpid()}" in err


def test_a_failing_case_becomes_a_row_and_the_others_finish(tmp_path):
    grid = {"simulation.duration": ["6 min", "7 min"]}  # 7 min > 400 s: the metric raises
    table = cmsim.sweep(SCEN, replicates=2, grid=grid, seed=3, metrics=ticks_or_fail,
                        out=tmp_path / "sw")
    assert len(table) == 4
    ok, bad = table[table["case"] == 0], table[table["case"] == 1]
    dt = cmsim.config.load_scenario(SCEN).simulation.dt
    assert ok["error_type"].isna().all() and (ok["ticks"] == 360 / dt).all()
    assert (bad["error_type"] == "ValueError").all()
    assert bad["error_message"].str.contains("420 s is too long").all()
    assert bad["escapes"].isna().all() and bad["ticks"].isna().all()
    assert len(table.failed) == 2
    summary = pd.read_csv(tmp_path / "sw" / "sweep_summary.csv")
    assert summary["failed"].tolist() == [0, 2] and summary["replicates"].tolist() == [2, 2]


def test_cli_exit_code_3_when_cases_fail_and_a_rerun_retries_only_them(tmp_path, monkeypatch,
                                                                      capsys):
    from cmsim.cli import main

    real = cmsim.api.run
    runs: list[float] = []

    def flaky(scenario, **kw):
        runs.append(scenario.simulation.duration)
        if scenario.simulation.duration > 400:
            raise RuntimeError("disk full")
        return real(scenario, **kw)

    monkeypatch.setattr(cmsim.api, "run", flaky)
    out = tmp_path / "sw"
    argv = ["sweep", SCEN, "--replicates", "2", "--grid", "simulation.duration=6 min,7 min",
            "--out", str(out), "-q"]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "2 of 4 run(s) failed" in err and "RuntimeError: disk full" in err
    table = pd.read_parquet(out / "sweep.parquet")
    assert table["error_type"].isna().tolist() == [True, True, False, False]
    assert table["error_type"].iloc[2:].tolist() == ["RuntimeError", "RuntimeError"]
    runs.clear()

    def counting(scenario, **kw):
        runs.append(scenario.simulation.duration)
        return real(scenario, **kw)

    monkeypatch.setattr(cmsim.api, "run", counting)  # the cause went away
    assert main(argv) == 0
    assert runs == [420.0, 420.0]  # only the failed runs ran again
    table = pd.read_parquet(out / "sweep.parquet")
    assert table["error_type"].isna().all() and table["escapes"].notna().all()
    assert len(table) == 4


def test_kept_results_in_memory_and_on_disk(tmp_path):
    out = tmp_path / "sw"
    grid = {"simulation.duration": ["6 min"], "feeders[0].noise_rsd": [0.01, 0.03]}
    table = cmsim.sweep(SCEN, replicates=2, grid=grid, seed=8, keep=first_replicate, out=out)
    assert sorted(table.results) == [(0, 0), (1, 0)]
    for case in (0, 1):
        result = table.results[(case, 0)]
        row = table[(table["case"] == case) & (table["replicate"] == 0)].iloc[0]
        for name, value in case_metrics(result).items():
            assert row[name] == value
    loaded = load(out).results
    assert sorted(loaded) == [(0, 0), (1, 0)]
    assert (loaded[(1, 0)].gate_flow == table.results[(1, 0)].gate_flow).all()
    everything = cmsim.sweep(SCEN, replicates=2, grid={"simulation.duration": ["6 min"]},
                             keep=True)
    assert sorted(everything.results) == [(0, 0), (0, 1)]
    assert len(cmsim.sweep(SCEN, grid={"simulation.duration": ["6 min"]}).results) == 0
