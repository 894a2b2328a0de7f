"""The random disturbance campaign (``cmsim stress-monitor``)."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest

import cmsim
from cmsim.cli import main
from cmsim.config import load_scenario
from cmsim.errors import ParameterError
from cmsim.faultbench.stress import STRESS_KINDS, draw_disturbances, stress_monitor

LOT = "scenarios/faults/lot_change_assay.toml"  # has an API hopper: every kind applies
SHORT = ["simulation.duration=15 min"]
#: a badly tuned monitor (a new lot's potency prior of 1 %, 30 % accepted risk): it escapes
CARELESS = ["diversion.max_risk=0.3", "monitor.lot_assay_sd=0.01"]


def test_the_draws_respect_the_kinds_and_the_unobservable_pair():
    sc = load_scenario(LOT)
    nir = {"nir_bias", "nir_drift", "nir_dropout", "nir_frozen"}
    both = 0
    for i in range(400):
        rng = np.random.default_rng(i)
        drawn = draw_disturbances(sc, rng, STRESS_KINDS, 3)
        kinds = [k for k, _ in drawn]
        assert 1 <= len(drawn) <= 3
        assert not ("lot_change" in kinds and nir & set(kinds))
        assert kinds.count("lot_change") <= 1 and len(nir & set(kinds)) <= 1
        for _, d in drawn:
            assert 0.2 * 1800 <= d["start"] <= 0.8 * 1800
        free = [k for k, _ in draw_disturbances(sc, np.random.default_rng(i), STRESS_KINDS, 5,
                                                allow_unobservable=True)]
        both += "lot_change" in free and bool(nir & set(free))
    assert both > 0
    only = draw_disturbances(sc, np.random.default_rng(0), ["press_stop"], 5)
    assert {d["type"] for _, d in only} == {"press_stop"}


def test_a_campaign_is_seeded_and_the_same_on_a_pool():
    a = stress_monitor(LOT, runs=12, seed=3, overrides=SHORT)[1]
    with ProcessPoolExecutor(2) as ex:
        b = stress_monitor(LOT, runs=12, seed=3, overrides=SHORT, executor=ex)[1]
    pd.testing.assert_frame_equal(a, b)
    c = stress_monitor(LOT, runs=12, seed=4, overrides=SHORT)[1]
    assert list(a["disturbances"]) != list(c["disturbances"])


def test_the_default_monitor_lets_nothing_through_and_each_run_is_a_plain_run():
    summary, runs = stress_monitor(LOT, runs=30, seed=0, overrides=SHORT)
    assert (runs["escapes"] == 0).all()
    assert (runs["nonconforming"] > 0).sum() >= 10  # the campaign makes bad material
    assert set(summary["kind"]) == set(STRESS_KINDS)
    assert summary["runs"].sum() >= len(runs)  # a run counts under each of its kinds
    # no escape in n runs: the 95 % Wilson upper bound of the escape rate is z^2 / (n + z^2)
    z2 = 1.959963984540054 ** 2
    np.testing.assert_allclose(summary["escape_rate_high"], z2 / (summary["runs"] + z2))
    r = runs.iloc[int(np.argmax(runs["nonconforming"]))]
    d = load_scenario(LOT, overrides=SHORT).portable_dict()
    d["disturbances"] = json.loads(r["disturbances"])
    t = cmsim.run(d, seed=int(r["seed"])).summary()["tablets"]
    assert t["nonconforming_produced"] == pytest.approx(r["nonconforming"], rel=1e-12)
    assert t["conforming_diverted"] == pytest.approx(r["waste"], rel=1e-12)


def test_a_careless_monitor_escapes_and_the_written_case_reproduces_it(tmp_path, capsys):
    code = main(["stress-monitor", LOT, "--runs", "60", "--seed", "0", "--check",
                 "--out", str(tmp_path)] + [a for s in CARELESS for a in ("--set", s)])
    out = capsys.readouterr().out
    assert code == 1 and "runs with an escape:" in out
    runs = pd.read_csv(tmp_path / "stress_runs.csv")
    bad = runs[runs["escapes"] > 0.5]
    assert len(bad) >= 1
    assert sorted(p.name for p in (tmp_path / "escapes").iterdir()) == sorted(
        f"run_{i}.toml" for i in bad["run"])
    first = bad.iloc[0]
    again = cmsim.run(str(tmp_path / "escapes" / f"run_{first['run']}.toml"))
    assert again.summary()["tablets"]["nonconforming_accepted"] == pytest.approx(
        first["escapes"], rel=1e-9)
    assert (tmp_path / "stress_summary.csv").exists()


def test_kinds_that_do_not_apply_are_refused():
    with pytest.raises(ParameterError, match="lot_change needs a .feeders.hopper. table"):
        stress_monitor("scenarios/api_feeder_stop.toml", runs=2, kinds=["lot_change"])
    with pytest.raises(ParameterError, match="max_disturbances"):
        stress_monitor(LOT, runs=2, max_disturbances=9)
    with pytest.raises(ParameterError, match="runs"):
        stress_monitor(LOT, runs=0)
    d = load_scenario(LOT).to_dict()
    d["pat"] = d["diversion"] = None
    with pytest.raises(ParameterError, match="no PAT monitor"):
        stress_monitor(d, runs=2)


@pytest.mark.parametrize("command", [["stress-monitor", "baseline", "--runs", "1"],
                                     ["bench-monitor", "--replicates", "1"]])
def test_an_out_dir_that_cannot_be_written_is_refused_before_any_run(tmp_path, capsys,
                                                                     monkeypatch, command):
    """--out used to fail with a FileNotFoundError after the whole campaign, its results
    lost; it is now refused up front as invalid input."""
    from cmsim.faultbench import stress  # noqa: PLC0415

    def no_run(*args, **kwargs):
        raise AssertionError("a run started")

    monkeypatch.setattr(stress, "stress_monitor", no_run)
    monkeypatch.setattr("cmsim.faultbench.bench.bench_monitor", no_run)
    (tmp_path / "file").write_text("x")
    for out, words in ((tmp_path / "file", "exists and is not a directory"),
                       (tmp_path / "file" / "sub", "cannot create the directory")):
        assert main([*command, "-q", "--out", str(out)]) == 2
        assert words in capsys.readouterr().err


def test_a_plain_string_where_a_list_of_names_is_due_is_refused():
    """bench_monitor(faults='feeder_stop') took the string letter by letter and reported
    "faults='f': no such fault"; a string of overrides was split the same way."""
    calls = [
        (lambda: cmsim.bench_monitor(replicates=1, faults="feeder_stop"), "faults"),
        (lambda: cmsim.bench_monitor(replicates=1, overrides="simulation.duration=9 min"),
         "overrides"),
        (lambda: cmsim.stress_monitor("baseline", runs=1, kinds="feeder_stop"), "kinds"),
        (lambda: cmsim.stress_monitor("baseline", runs=1, overrides="pat.noise_sd=0.1 %"),
         "overrides"),
    ]
    for call, name in calls:
        with pytest.raises(ParameterError) as info:
            call()
        assert info.value.name == name and "must be a list" in str(info.value)
