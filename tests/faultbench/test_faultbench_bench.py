"""cmsim.bench_monitor and cmsim bench-monitor: rows reproduce cmsim.run with the sweep's seeds,
metrics agree with the result's own arrays, executors do not change the table, and a tiny
end-to-end run through the CLI."""

from __future__ import annotations

import functools
import math
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cmsim
from cmsim.cli import main
from cmsim.config import load_scenario
from cmsim.errors import ParameterError, ScenarioError
from cmsim.faultbench import load_manifest, read_run, run_fault, to_markdown

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "scenarios" / "faults" / "manifest.toml"
FAULTS = {f.name: f for f in load_manifest(MANIFEST)}
SHORT = ['simulation.duration="7 min"']


def test_rows_reproduce_cmsim_run_with_the_sweep_seeds():
    fault = FAULTS["feeder_stop"]
    table = run_fault(fault, replicates=2, seed=5, overrides=SHORT)
    assert list(table["replicate"]) == [0, 1]
    assert list(table["fault"]) == ["feeder_stop"] * 2
    children = np.random.SeedSequence(5).spawn(2)
    scenario = load_scenario(fault.path, overrides=SHORT)
    for r in range(2):
        res = cmsim.run(scenario, seed=children[r])
        expected = read_run(res, fault.start_s)
        row = table.iloc[r]
        for key in ("produced", "nonconforming", "escapes", "waste", "diverted",
                    "diversion_events", "detection_s"):
            assert row[key] == pytest.approx(expected[key], nan_ok=True), key
        # and the counts are the ground truth of the result's own arrays
        tablets = res.tablets
        nonconf = np.asarray(res.nonconforming, dtype=bool)
        div = np.asarray(res.diverted, dtype=bool)
        assert row["nonconforming"] == pytest.approx(tablets[nonconf].sum())
        assert row["escapes"] == pytest.approx(tablets[nonconf & ~div].sum())
        assert row["waste"] == pytest.approx(tablets[~nonconf & div].sum())
        assert row["detection_delay_s"] == pytest.approx(row["detection_s"] - 300.0)
    assert table.iloc[0]["produced"] != table.iloc[1]["produced"]  # different noise


@pytest.mark.parametrize("pool", [ThreadPoolExecutor, ProcessPoolExecutor])
def test_executor_does_not_change_the_rows(pool):
    fault = FAULTS["partial_feed"]
    here = run_fault(fault, replicates=3, seed=1, overrides=SHORT)
    with pool(2) as ex:
        there = run_fault(fault, replicates=3, seed=1, overrides=SHORT, executor=ex)
    pd.testing.assert_frame_equal(here, there)


def test_benchmark_counts_agree_with_the_sweep_built_in_metrics():
    """read_run (from summary.json) and the sweep's own KPIs (from the result's arrays) are
    independent readings of the same runs."""
    from cmsim.faultbench import bench

    fault = FAULTS["refill_surge"]
    scenario = load_scenario(fault.path, overrides=SHORT)
    table = cmsim.sweep(scenario, replicates=2, seed=2,
                        metrics=functools.partial(bench._bench_metrics, start_s=300.0))
    np.testing.assert_allclose(table["bench.escapes"], table["escapes"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(table["bench.waste"], table["waste"], rtol=1e-9)
    np.testing.assert_allclose(table["bench.nonconforming"], table["nonconforming_produced"],
                               rtol=1e-9)
    np.testing.assert_allclose(table["bench.produced"], table["tablets_produced"], rtol=1e-12)
    np.testing.assert_allclose(table["bench.expected_escapes"], table["expected_escapes"],
                               rtol=1e-12, equal_nan=True)
    rows = run_fault(fault, replicates=2, seed=2, overrides=SHORT)
    np.testing.assert_allclose(rows["escapes"], table["escapes"], atol=1e-9)


def test_a_failed_replicate_stops_the_benchmark(monkeypatch):
    from cmsim.errors import SimulationError
    from cmsim.faultbench import bench

    def broken(result, start_s):
        raise RuntimeError("metric broke")

    monkeypatch.setattr(bench, "_bench_metrics", broken)
    with pytest.raises(SimulationError, match="fault 'feeder_stop', case 0, replicate 0: "
                                              "RuntimeError: metric broke"):
        run_fault(FAULTS["feeder_stop"], replicates=1, overrides=SHORT)


def test_bench_summary_rows_and_skips():
    table = cmsim.bench_monitor(replicates=2, faults=["feeder_stop", "no_fault"],
                                overrides=SHORT)
    pols = ["risk", "quantile"]
    assert list(table["fault"]) == ["feeder_stop"] * len(pols) + ["no_fault"] * len(pols)
    assert list(table["policy"]) == pols * 2
    stop = table[table["fault"] == "feeder_stop"].iloc[0]
    assert stop["replicates"] == 2 and stop["nonconforming_expected"]
    assert stop["start_s"] == 300.0 and stop["end_s"] == 310.0
    assert stop["replicates_nonconforming"] == 2
    assert math.isnan(stop["false_diversion_pct"])
    ref = table[table["fault"] == "no_fault"].iloc[0]
    assert not math.isnan(ref["false_diversion_pct"])
    assert ref["target_waste"] == "n/a" and ref["target_false_diversion"] in ("pass", "fail")
    md = to_markdown(table)
    assert md.count("\n| feeder_stop |") == len(table[table["fault"] == "feeder_stop"])


def test_all_faults_listed_even_when_skipped(tmp_path):
    table = cmsim.bench_monitor(replicates=1, overrides=SHORT, faults=None,
                                manifest=_tiny_manifest(tmp_path))
    assert list(table["fault"]) == ["stop"] * 2 + ["sensor"] * 2
    assert (table["replicates"] == 1).all()


def _tiny_manifest(base: Path) -> Path:
    """A two-case manifest next to copies of two fault scenarios."""
    for name in ("feeder_stop", "nir_dropout"):
        text = (MANIFEST.parent / f"{name}.toml").read_text()
        (base / f"{name}.toml").write_text(text)
    (base / "manifest.toml").write_text(
        '[[fault]]\nname = "stop"\nfile = "feeder_stop.toml"\nkind = "feeder_stop"\n'
        'start_s = 300.0\nend_s = 310.0\nnonconforming = true\ndescription = "stop"\n'
        '[[fault]]\nname = "sensor"\nfile = "nir_dropout.toml"\nkind = "nir_dropout"\n'
        'start_s = 300.0\nend_s = 360.0\nnonconforming = false\ndescription = "dropout"\n')
    return base / "manifest.toml"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"replicates": 0}, "replicates"), ({"replicates": True}, "replicates"),
    ({"seed": -1}, "seed"), ({"faults": ["feeder_stopp"]}, "faults"),
    ({"policies": "risk"}, "policies"),
])
def test_bad_arguments(kwargs, field):
    with pytest.raises(ParameterError) as err:
        cmsim.bench_monitor(**{"replicates": 1, **kwargs})
    assert err.value.name == field


@pytest.mark.parametrize("policies", [["risk", "rules"], []])
def test_policies_must_be_policy_values(policies):
    with pytest.raises(ParameterError, match="must name diversion.policy values") as err:
        cmsim.bench_monitor(replicates=1, policies=policies, faults=["feeder_stop"])
    assert err.value.name == "policies"


def test_fault_start_after_the_end_of_the_run_is_an_input_error(tmp_path):
    (tmp_path / "s.toml").write_text((MANIFEST.parent / "feeder_stop.toml").read_text())
    (tmp_path / "m.toml").write_text(
        '[[fault]]\nname = "late"\nfile = "s.toml"\nkind = "feeder_stop"\n'
        'start_s = 500.0\nnonconforming = true\ndescription = "late label"\n')
    (fault,) = load_manifest(tmp_path / "m.toml")
    with pytest.raises(ScenarioError, match="must be > the fault start of the manifest"):
        run_fault(fault, overrides=SHORT)


# --------------------------------------------------------------------------- CLI


def test_cli_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench"
    rc = main(["bench-monitor", "--replicates", "1", "--faults", "feeder_stop,no_fault",
               "--set", 'simulation.duration="7 min"', "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "| feeder_stop |" in text and "| no_fault |" in text
    summary = pd.read_csv(out / "bench_monitor.csv")
    runs = pd.read_csv(out / "bench_monitor_runs.csv")
    assert list(summary["fault"].unique()) == ["feeder_stop", "no_fault"]
    assert len(runs) == len(summary)  # one replicate per fault and policy
    assert (out / "bench_monitor.md").read_text() == text  # --quiet: only the table
    # the per-run rows are the fault scenario's runs with the sweep's seed
    stop = runs[runs["fault"] == "feeder_stop"].iloc[0]
    scenario = load_scenario(FAULTS["feeder_stop"].path, overrides=SHORT)
    res = cmsim.run(scenario, seed=np.random.SeedSequence(0).spawn(1)[0])
    assert stop["nonconforming"] == pytest.approx(
        res.summary()["tablets"]["nonconforming_produced"])


def test_cli_check_exits_1_when_a_target_is_missed(tmp_path, capsys):
    # a case labelled nonconforming that makes no nonconforming tablet has no waste ratio: the
    # waste target fails whatever the monitor does
    (tmp_path / "s.toml").write_text((MANIFEST.parent / "shut_down.toml").read_text())
    (tmp_path / "m.toml").write_text(
        '[[fault]]\nname = "mislabelled"\nfile = "s.toml"\nkind = "shut_down"\n'
        'start_s = 900.0\nnonconforming = true\ndescription = "wrong label"\n')
    args = ["bench-monitor", "--replicates", "1", "--manifest", str(tmp_path / "m.toml"),
            "--set", 'simulation.duration="16 min"']
    assert main(args) == 0
    assert "waste fail" in capsys.readouterr().out
    assert main([*args, "--check"]) == 1


def test_cli_bad_manifest_exit_2_names_file_and_field(tmp_path, capsys):
    (tmp_path / "m.toml").write_text('[[fault]]\nname = "x"\nkind = "stall"\n')
    rc = main(["bench-monitor", "--replicates", "1", "--manifest", str(tmp_path / "m.toml")])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{tmp_path / 'm.toml'}: " in err and "fault[0].kind = 'stall': must be one of" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("args", "text"), [
    (["--workers", "0"], "--workers=0: must be >= 1"),
    (["--faults", "a,,b"], "comma-separated"),
    (["--faults", "nope"], "no such fault in the manifest"),
])
def test_cli_bad_options_exit_2(args, text, capsys):
    rc = main(["bench-monitor", "--replicates", "1", *args])
    assert rc == 2
    assert text in capsys.readouterr().err
