"""The output directory as a user meets it: claim before simulating, --overwrite, stale
temporaries, optional figures, scenario.toml, no absolute paths, the lots section, progress."""

from __future__ import annotations

import io as _stdio
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

import cmsim
from _small_line import small_line
from cmsim import _outdir, api
from cmsim import io as cio
from cmsim.cli import main
from cmsim.config import load_scenario
from cmsim.config.loader import validate_dict
from cmsim.errors import InputError


def scenario():
    return small_line("outputs-test")


def _short():
    sc = scenario()
    sc["simulation"]["duration"] = "3 min"
    return sc


def _no_simulation(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("simulated although the output directory was refused")

    monkeypatch.setattr(api, "_simulate", refuse)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs") / "run"
    result = cmsim.run(_short(), out=out)
    return result, out


# ------------------------------------------------------------------ claim and overwrite
def test_non_empty_target_fails_before_simulating(tmp_path, monkeypatch):
    out = tmp_path / "full"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _no_simulation(monkeypatch)
    with pytest.raises(InputError, match="--overwrite"):
        cmsim.run(_short(), out=out)
    assert main(["run", str(Path("scenarios/baseline.toml").resolve()), "--out", str(out),
                 "-q"]) == 2
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no lock or temp left


def test_overwrite_replaces_an_earlier_run_and_nothing_else(tmp_path, monkeypatch):
    out = tmp_path / "run"
    cmsim.run(_short(), out=out, figures=False)
    first = json.loads((out / "summary.json").read_text())
    (out / "stray.txt").write_text("from the first run")
    cmsim.run(_short(), out=out, figures=False, overwrite=True, seed=99)
    second = json.loads((out / "summary.json").read_text())
    assert first["seed"] == 4 and second["seed"] == 99
    assert not (out / "stray.txt").exists()  # replaced as a whole, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    # --overwrite never replaces a directory that is not a cmsim output directory
    other = tmp_path / "home"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    _no_simulation(monkeypatch)
    with pytest.raises(InputError, match="not a cmsim output directory"):
        cmsim.run(_short(), out=other, overwrite=True)
    assert (other / "thesis.tex").read_text() == "x"


def test_directory_claimed_by_a_live_run_is_refused_at_once(tmp_path, monkeypatch):
    out = tmp_path / "busy"
    lock = tmp_path / ".busy.lock"
    lock.write_text(str(os.getppid()))  # a live process that is not this one
    _no_simulation(monkeypatch)
    with pytest.raises(InputError, match=f"another cmsim run \\(pid {os.getppid()}\\)"):
        cmsim.run(_short(), out=out)
    assert lock.exists()  # somebody else's lock is left alone


def test_lock_of_a_dead_run_is_taken_over(tmp_path):
    out = tmp_path / "run"
    (tmp_path / ".run.lock").write_text(str(_dead_pid()))
    cmsim.run(_short(), out=out, figures=False, report=False)
    assert (out / "summary.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_stale_temporaries_of_dead_runs_are_removed(tmp_path):
    dead, live = _dead_pid(), os.getppid()
    stale = tmp_path / f".old.tmp-{dead}-abcd1234"
    aside = tmp_path / f".old.old-{dead}-abcd1234"
    alive = tmp_path / f".other.tmp-{live}-abcd1234"
    legacy_old = tmp_path / ".x.tmp-abcd_123"
    legacy_new = tmp_path / ".y.tmp-efgh_456"
    user = tmp_path / ".config"
    for d in (stale, aside, alive, legacy_old, legacy_new, user):
        d.mkdir()
        (d / "summary.json").write_text("{}")
    hour_ago = time.time() - 2 * _outdir.LEGACY_STALE_AGE_S
    os.utime(legacy_old, (hour_ago, hour_ago))
    removed = _outdir.clean_stale(tmp_path)
    assert sorted(p.name for p in removed) == sorted([stale.name, aside.name, legacy_old.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [alive.name, legacy_new.name, user.name])


def test_killed_run_leaves_no_temporary_after_the_next_run(tmp_path):
    # a run killed while writing leaves .run.tmp-<pid>-*; the next run into the same parent
    # removes it (the pid is dead by then)
    code = ("import os, sys, json, cmsim; from cmsim import io\n"
            "def die(*a, **k): os.kill(os.getpid(), 9)\n"
            "io.write_events_jsonl = die\n"
            "cmsim.run(json.loads(sys.argv[1]), out=sys.argv[2], figures=False)\n")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(_short()),
                           str(tmp_path / "a")], check=False)
    assert proc.returncode == -9
    left = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith(".a.tmp-") for n in left) and ".a.lock" in left
    cmsim.run(_short(), out=tmp_path / "b", figures=False, report=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


# ------------------------------------------------------------------ contents
def test_no_figures_writes_tables_only(tmp_path):
    out = tmp_path / "quick"
    cmsim.run(_short(), out=out, figures=False)
    names = {p.name for p in out.iterdir()}
    assert not [n for n in names if n.endswith(".png")]
    assert {"summary.json", "scenario.toml", "timeseries.parquet", "events.jsonl",
            "report.html"} == names
    assert "<img" not in (out / "report.html").read_text()
    out2 = tmp_path / "bare"
    cmsim.run(_short(), out=out2, figures=False, report=False)
    assert "report.html" not in {p.name for p in out2.iterdir()}


def test_lots_png_only_when_a_material_has_several_lots(run_dir, tmp_path):
    _, out = run_dir  # the API feeder is refilled with lot B
    assert (out / "lots.png").exists()
    sc = _short()
    sc["disturbances"] = [d for d in sc["disturbances"] if d["type"] != "refill"]
    cmsim.run(sc, out=tmp_path / "one", report=False)
    names = {p.name for p in (tmp_path / "one").iterdir()}
    assert "lots.png" not in names and "api_content.png" in names


def test_scenario_toml_reproduces_the_scenario(run_dir):
    result, out = run_dir
    text = (out / "scenario.toml").read_text()
    again = validate_dict(tomllib.loads(text))
    assert again.sha256() == json.loads((out / "summary.json").read_text())["scenario_sha256"]


@pytest.mark.parametrize("name", ["baseline", "refill_lot_change", "control_ratio"])
def test_scenario_toml_round_trip_of_shipped_scenarios(name):
    from cmsim._toml_out import dumps

    sc = load_scenario(name)
    again = validate_dict(tomllib.loads(dumps(sc.to_dict())), source=sc.source)
    assert again.sha256() == sc.sha256()


def test_no_absolute_path_of_this_machine_in_any_output(tmp_path):
    src = tmp_path / "my scenarios" / "line.toml"
    src.parent.mkdir()
    src.write_text(Path("scenarios/api_feeder_stop.toml").read_text())
    out = tmp_path / "deep" / "out"
    cmsim.run(src, out=out, overrides={"simulation.duration": "6 min"})
    needles = {str(tmp_path), str(Path.cwd()), str(Path.home()), "my scenarios"}
    needles.discard("/")
    for f in out.iterdir():
        blob = f.read_bytes()
        for needle in needles:
            assert needle.encode() not in blob, (f.name, needle)


def test_lots_section_adds_up(run_dir):
    result, out = run_dir
    summary = json.loads((out / "summary.json").read_text())
    lots = summary["lots"]
    assert {(r["material"], r["lot"]) for r in lots} == {("API", "L0"), ("API", "B"),
                                                         ("MCC", "L0")}
    mass = summary["mass_kg"]
    for material in ("API", "MCC"):
        rows = [r for r in lots if r["material"] == material]
        for key in ("accepted", "diverted", "fed", "holdup", "initial_holdup"):
            assert sum(r[f"{key}_kg"] for r in rows) == pytest.approx(mass[key][material],
                                                                       rel=1e-9, abs=1e-15)
    produced = summary["tablets"]["produced"]
    api = [r for r in lots if r["material"] == "API"]
    both = sum(r["tablets_accepted"] + r["tablets_diverted"] for r in api)
    assert both > produced  # tablets made while L0 and B were both at the gate count twice
    b = next(r for r in api if r["lot"] == "B")
    assert 150.0 < b["first_at_gate_s"] < b["last_at_gate_s"] <= summary["duration_s"]
    text = subprocess.run([sys.executable, "-m", "cmsim", "show", str(out)], check=True,
                          capture_output=True, text=True).stdout
    assert "counts under both lots" in text and "API B" in text
    assert "initial hold-up" in text and "final hold-up" in text


def test_progress_names_every_file_in_order(run_dir, tmp_path):
    result, _ = run_dir
    seen = []
    cio.write_output_dir(result, tmp_path / "p", progress=lambda *a: seen.append(a))
    steps = cio.output_steps(result)
    assert [label for label, _, _ in seen] == [*steps, "done"]
    assert [done for _, done, _ in seen] == list(range(len(steps) + 1))
    assert {total for _, _, total in seen} == {len(steps)}
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == sorted(steps)


# ------------------------------------------------------------------ overrides
def test_overrides_as_mapping_or_list_agree_and_a_string_is_refused():
    base = scenario()
    a = load_scenario(base, overrides={"simulation.duration": "4 min",
                                       "feeders[api].noise_rsd": 0.05})
    b = load_scenario(base, overrides=["simulation.duration=4 min",
                                       "feeders[api].noise_rsd=0.05"])
    assert a.sha256() == b.sha256()
    assert a.simulation.duration == 240.0 and a.feeder("api").noise_rsd == 0.05
    for bad in ("simulation.duration=2 min", b"x=1", 5, [1], {1: "x"}):
        with pytest.raises(InputError) as info:
            cmsim.run(base, overrides=bad)
        assert "overrides" in str(info.value) and "mapping" in str(info.value)
        assert len(str(info.value).splitlines()) == 1


# ------------------------------------------------------------------ compile notice
def test_compile_notice_only_when_numba_compiles():
    from numba import njit

    from cmsim._jit import COMPILE_NOTICE, compile_notice

    @njit
    def twice(x):
        return 2 * x

    buf = _stdio.StringIO()
    with compile_notice(buf):
        assert twice(2) == 4
        assert twice(3) == 6
    assert buf.getvalue() == COMPILE_NOTICE + "\n"
    buf = _stdio.StringIO()
    with compile_notice(buf):
        assert twice(5) == 10  # compiled already: silent
    assert buf.getvalue() == ""


def test_report_has_inputs_legend_and_a_readable_event_table(run_dir):
    from cmsim import report

    result, out = run_dir
    html = (out / "report.html").read_text()
    inputs = html[html.index("<h2>Inputs</h2>"):html.index("<h2>Provenance</h2>")]
    for text in ("Feeders", "api", "mcc", "Residence time distributions", "tanks_in_series",
                 "Disturbances", "feeder_stop", "refill", "scenario.toml"):
        assert text in inputs, text
    assert ">2<" in inputs and ">18<" in inputs  # set points in kg/h
    summary = json.loads((out / "summary.json").read_text())
    for d in summary["diversion_events"]:
        for trig in d["trigger"].split("+"):
            assert f"<code>{trig}</code>" in html
    events = html[html.index("<h2>Event log"):]
    assert '{"' not in events  # no raw JSON
    assert "feeder_stop" in events and "duration s = 8" in events
    assert set(report.TRIGGERS) >= {"pat_oos", "risk", "feeder", "mspc", "start_up"}


@pytest.mark.parametrize("argv", [
    ["run", "baseline", "--set", "simulation.duration=1 min"],
    ["sweep", "baseline", "--set", "simulation.duration=1 min", "-q"],
])
def test_an_out_dir_that_cannot_be_created_is_invalid_input(tmp_path, capsys, argv):
    """An --out below a file used to end in 'error: FileNotFoundError' (exit 1)."""
    from cmsim.cli import main  # noqa: PLC0415

    (tmp_path / "file").write_text("x")
    assert main([*argv, "--out", str(tmp_path / "file" / "run")]) == 2
    assert "cannot create" in capsys.readouterr().err


def test_replay_refuses_an_out_it_cannot_write_before_replaying(tmp_path, capsys,
                                                                 monkeypatch):
    from cmsim import replay as rp  # noqa: PLC0415
    from cmsim.cli import main  # noqa: PLC0415

    monkeypatch.setattr(rp, "replay", lambda *a, **k: pytest.fail("replayed"))
    (tmp_path / "file").write_text("x")
    assert main(["replay", str(tmp_path), "--out", str(tmp_path / "file" / "rep")]) == 2
    assert "cannot write in" in capsys.readouterr().err


def test_genealogy_windows_and_figures_refuse_what_is_not_a_time_or_a_figure():
    """lots_between took NaN and strings down to a numpy TypeError, and an infinite end to
    an OverflowError; plot('x') failed with an AttributeError."""
    from cmsim.errors import ParameterError  # noqa: PLC0415

    r = cmsim.run("api_feeder_stop", overrides=["simulation.duration=6 min"])
    whole = r.lots_between(0.0, 360.0)
    assert r.lots_between(0.0, float("inf")).equals(whole)
    assert r.lots_between(float("-inf"), 360.0).equals(whole)
    for t0, t1 in ((float("nan"), 5.0), ("a", "b"), (0.0, float("nan"))):
        with pytest.raises(ParameterError, match="must be a time"):
            r.lots_between(t0, t1)
    with pytest.raises(ParameterError, match="fig='x': must be a matplotlib Figure"):
        r.plot("x")
