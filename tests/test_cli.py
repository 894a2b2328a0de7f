"""The ``cmsim`` command line: exit codes, messages without tracebacks, subcommands."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cmsim.cli as cli
from cmsim._version import __version__
from cmsim.cli import main
from cmsim.config import load_scenario
from cmsim.errors import ParameterError, SimulationError

ROOT = Path(__file__).resolve().parents[1]
GOOD = ROOT / "scenarios" / "api_feeder_stop.toml"

BAD_TOML = """\
name = "bad"
[simulation]
duration = "15 min"
[[feeders]]
name = "api"
material = "API"
role = "api"
mass_flow = "2 kg"
[blender]
rtd = { model = "cstr", mean_residence_time = "60 s" }
[press]
transfer_rtd = { model = "pfr", delay = "10 s" }
feed_frame_rtd = { model = "cstr", mean_residence_time = "30 s" }
tablet_mass = "250 mg"
[[disturbances]]
type = "feeder_stop"
feeder = "apii"
start = "300 s"
duration = "10 s"
"""


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(BAD_TOML)
    return p


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cmsim {__version__}"


def test_help_lists_subcommands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("run", "validate", "sweep", "verify-log", "show"):
        assert cmd in out
    assert main([]) == 0  # no command: help, success
    assert "usage: cmsim" in capsys.readouterr().out


def test_usage_error_is_exit_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["run"]) == 2  # missing SCENARIO


def test_validate_ok_prints_resolved_summary(capsys):
    assert main(["validate", str(GOOD)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: {GOOD}")
    assert load_scenario(GOOD).sha256() in out
    assert "15 min at dt = 0.5 s (1800 ticks)" in out
    assert "10.000 % w/w" in out  # 2 of 20 kg/h
    assert "80,000 per hour" in out  # 20 kg/h / 250 mg
    assert "line MRT        100 s" in out  # 60 + 10 + 30 s
    assert "feeder_stop: feeder=api, duration=10 s" in out
    assert "diversion       risk policy, max_risk 0.001" in out
    assert "monitor RTD" not in out


def test_validate_names_the_policy_and_the_monitors_own_rtds(capsys):
    assert main(["validate", str(GOOD), "--set", "diversion.policy=quantile",
                 "--set", "diversion.rtd_uncertainty=0.2",
                 "--set", "monitor.rtd.feed_frame.model=cstr",
                 "--set", "monitor.rtd.feed_frame.mean_residence_time=36 s"]) == 0
    out = capsys.readouterr().out
    assert "quantile policy, alpha 0.005, margin 5 s, RTD uncertainty 20 %" in out
    assert "monitor RTD     feed frame cstr(mean_residence_time=36 s); mean 36 s" in out


def test_validate_shipped_name_and_set(capsys):
    assert main(["validate", "baseline", "--set", "simulation.duration=2 h",
                 "--set", "feeders[api].mass_flow=3 kg/h"]) == 0
    out = capsys.readouterr().out
    assert "2 h at dt = 1 s (7200 ticks)" in out
    assert f"{100 * 3 / 21:.3f} % w/w" in out


def test_validate_bad_file_exit_2_in_process(bad_file, capsys):
    assert main(["validate", str(bad_file)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert str(bad_file) in err
    assert "feeders[0].mass_flow = '2 kg': unit 'kg' is a mass" in err
    assert "disturbances[0].feeder = 'apii': no feeder of that name" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_python_m_cmsim_validate_bad_file_subprocess(bad_file):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-m", "cmsim", "validate", str(bad_file)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(bad_file) in proc.stderr
    assert "feeders[0].mass_flow" in proc.stderr and "'2 kg'" in proc.stderr
    assert "kg/h" in proc.stderr  # the rule names the accepted units


def test_validate_missing_file_and_bad_set(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "none.toml")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["validate", str(GOOD), "--set", "feeders[9].mass_flow=1"]) == 2
    err = capsys.readouterr().err
    assert "--set feeders[9].mass_flow" in err and "out of range" in err


def test_validate_reports_rtd_constructor_errors(tmp_path, capsys, monkeypatch):
    from cmsim.config import schema

    def refuse(self):
        raise ParameterError("n_tanks", 5.0, "must be refused by this test")

    monkeypatch.setattr(schema.TanksInSeriesRTD, "build", refuse)
    assert main(["validate", str(GOOD)]) == 2
    err = capsys.readouterr().err
    assert "blender.rtd.n_tanks = 5.0: must be refused by this test" in err


def test_run_invalid_input_leaves_no_output_dir(bad_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(bad_file), "--out", str(out)]) == 2
    assert not out.exists()
    assert "Traceback" not in capsys.readouterr().err
    assert main(["run", str(GOOD), "--out", str(out), "--set", "simulation.duration=1 min"]) == 2
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("cmsim.api") is None,
                    reason="cmsim.api (engine) not available yet")
def test_run_show_and_verify_log(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["run", str(GOOD), "--out", str(out), "--quiet",
               "--set", "simulation.duration=8 min"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"] == "api_feeder_stop"
    assert summary["duration_s"] == pytest.approx(480.0)
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "api_feeder_stop" in shown and "480 s" in shown
    assert main(["verify-log", str(out / "events.jsonl")]) == 0


def test_show_formats_summary(tmp_path, capsys):
    summary = {
        "scenario": "demo", "seed": 3, "cmsim_version": "0.1.0", "scenario_sha256": "ab" * 32,
        "duration_s": 900.0, "wall_time_s": 1.25,
        "tablets": {"produced": 19980.5, "accepted": 18000, "diverted": 1980.5,
                    "nonconforming_produced": 1822, "nonconforming_accepted": 0,
                    "conforming_diverted": 158.5},
        "mass_kg": {"fed": {"API": 0.5, "MCC": 4.475}, "accepted": {"API": 0.45, "MCC": 4.0},
                    "diverted": {"API": 0.05, "MCC": 0.475}, "holdup": {"API": 0, "MCC": 0}},
        "mass_balance_max_rel_error": 2.5e-15,
        "diversion_events": [{"start_s": 353.5, "end_s": 436.0, "trigger": "pat",
                              "tablets": 1980.5}],
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert main(["show", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "abababab" in out
    assert "nonconforming produced    1,822" in out
    assert "diversion events            1" in out
    assert "353.5 - 436" in out and "trigger: pat" in out
    assert "2.5e-15" in out
    assert main(["show", str(tmp_path / "summary.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == summary


def test_show_bad_input(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text("{not json")
    assert main(["show", str(tmp_path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_verify_log_ok_and_tampered(tmp_path, capsys):
    eventlog = pytest.importorskip("cmsim.eventlog")
    log = eventlog.EventLog()
    for k in range(4):
        log.append(float(k), "tick", {"k": k})
    path = tmp_path / "events.jsonl"
    log.write(path)
    assert main(["verify-log", str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    lines = path.read_text().splitlines()
    rec = json.loads(lines[2])
    rec["data"]["k"] = 99
    lines[2] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    assert main(["verify-log", str(path)]) == 1
    err = capsys.readouterr().err
    assert "seq 2" in err and "Traceback" not in err
    assert main(["verify-log", str(tmp_path / "missing.jsonl")]) == 2


def test_sweep_without_engine_or_with_bad_grid(tmp_path, capsys):
    rc = main(["sweep", str(GOOD), "--replicates", "2", "--out", str(tmp_path / "s"),
               "--grid", "feeders[0].noise_rsd=2,3"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "feeders[0].noise_rsd" in err and "< 1" in err
    assert not (tmp_path / "s").exists()


def test_exception_mapping(monkeypatch, capsys, tmp_path):
    def sim_fail(args):
        raise SimulationError("mass balance broken at t = 12 s")

    def crash(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "_cmd_show", sim_fail)
    assert main(["show", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "simulation failed: mass balance broken" in err and "Traceback" not in err
    monkeypatch.setattr(cli, "_cmd_show", crash)
    assert main(["show", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: boom" in err and "--debug" in err and "Traceback" not in err
    assert main(["show", str(tmp_path), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_progress_only_on_a_terminal_outside_ci(monkeypatch):
    args = cli.build_parser().parse_args(["run", "x"])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert cli._progress_wanted(args) is True
    monkeypatch.setenv("CI", "true")
    assert cli._progress_wanted(args) is False
    monkeypatch.delenv("CI")
    args.quiet = True
    assert cli._progress_wanted(args) is False
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    args.quiet = False
    assert cli._progress_wanted(args) is False


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.toml")), ids=lambda p: p.stem)
def test_validate_every_shipped_scenario(path, capsys):
    assert main(["validate", path.stem]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: ") and path.name in out.splitlines()[0]
    assert "line MRT        100 s" in out
