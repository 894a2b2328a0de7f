"""cmsim.sweep: reproducible seeded replicates, executor independence, grid expansion."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest

import cmsim
from cmsim.errors import ParameterError, ScenarioError
from cmsim.sweep import expand_grid

SCEN = "scenarios/control_none.toml"
SHORT = {"simulation.duration": ["6 min"]}


def test_expand_grid_is_the_cartesian_product_in_order():
    cases = expand_grid({"a": [1, 2, 3], "b": ["x", "y"]})
    assert len(cases) == 6
    assert cases[0] == {"a": 1, "b": "x"} and cases[1] == {"a": 1, "b": "y"}
    assert cases[-1] == {"a": 3, "b": "y"}
    assert expand_grid(None) == [{}] and expand_grid({}) == [{}]
    with pytest.raises(ParameterError, match="grid"):
        expand_grid({"a": []})
    with pytest.raises(ParameterError, match="grid"):
        expand_grid({"a": "1,2"})


def test_same_seed_same_table_and_replicates_differ():
    a = cmsim.sweep(SCEN, replicates=2, grid=SHORT, seed=3)
    b = cmsim.sweep(SCEN, replicates=2, grid=SHORT, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert list(a["replicate"]) == [0, 1]
    assert a.loc[0, "api_content_rsd"] != a.loc[1, "api_content_rsd"]  # independent noise
    c = cmsim.sweep(SCEN, replicates=1, grid=SHORT, seed=4)
    assert c.loc[0, "api_content_rsd"] != a.loc[0, "api_content_rsd"]
    assert (a["mass_balance_error"] < 1e-9).all()


def test_row_reproduces_with_cmsim_run():
    df = cmsim.sweep(SCEN, replicates=2, grid=SHORT, seed=9)
    child = np.random.SeedSequence(9).spawn(2)[1]
    assert df.loc[1, "spawn_key"] == ",".join(map(str, child.spawn_key))
    r = cmsim.run(SCEN, seed=child, overrides=['simulation.duration="6 min"'])
    s = r.summary()["tablets"]
    assert df.loc[1, "tablets_produced"] == pytest.approx(s["produced"], rel=1e-12)
    assert df.loc[1, "escapes"] == s["nonconforming_accepted"]
    assert df.loc[1, "waste"] == s["conforming_diverted"]


def test_grid_cases_and_common_random_numbers():
    grid = {"simulation.duration": ["6 min", "7 min"], "feeders[0].noise_rsd": [0.0, 0.03]}
    df = cmsim.sweep(SCEN, replicates=1, grid=grid, seed=1)
    assert len(df) == 4
    assert list(df["simulation.duration"]) == ["6 min", "6 min", "7 min", "7 min"]
    assert list(df["feeders[0].noise_rsd"]) == [0.0, 0.03, 0.0, 0.03]
    assert list(df["case"]) == [0, 1, 2, 3]
    # a longer run produces more tablets (20 kg/h, 250 mg: 80000 / h)
    assert df.loc[2, "tablets_produced"] > df.loc[0, "tablets_produced"]
    assert df.loc[2, "tablets_produced"] - df.loc[0, "tablets_produced"] == \
        pytest.approx(80000 / 60, rel=0.05)


def test_process_pool_gives_the_sequential_table():
    grid = {"feeders[0].noise_rsd": [0.01, 0.04], "simulation.duration": ["6 min"]}
    seq = cmsim.sweep(SCEN, replicates=2, grid=grid, seed=5)
    with ProcessPoolExecutor(2) as ex:
        par = cmsim.sweep(SCEN, replicates=2, grid=grid, seed=5, executor=ex)
    pd.testing.assert_frame_equal(seq, par)


def test_bad_arguments_and_invalid_case():
    for kw, name in (({"replicates": 0}, "replicates"), ({"seed": -1}, "seed"),
                     ({"executor": "pool"}, "executor")):
        with pytest.raises(ParameterError) as ei:
            cmsim.sweep(SCEN, grid=SHORT, **kw)
        assert ei.value.name == name
    with pytest.raises(ScenarioError, match="noise_rsd"):
        cmsim.sweep(SCEN, grid={"feeders[0].noise_rsd": [0.01, 2.0]})
    # a grid path that does not exist is named as the grid's, not as a --set override
    with pytest.raises(ScenarioError) as info:
        cmsim.sweep(SCEN, grid={"feeders[9].noise_rsd": [0.01]})
    assert [p[0] for p in info.value.problems] == ["grid feeders[9].noise_rsd"]


def test_cli_sweep_names_bad_grid_paths_and_dask_addresses(tmp_path, capsys):
    from cmsim.cli import main

    out = tmp_path / "sw"
    assert main(["sweep", SCEN, "--grid", "feeders[9].noise_rsd=1 %", "--out", str(out)]) == 2
    assert "--grid feeders[9].noise_rsd = '1 %': index 9 out of range" in capsys.readouterr().err
    pytest.importorskip("distributed")
    assert main(["sweep", SCEN, "--dask", "no-port", "--out", str(out)]) == 2
    assert "--dask no-port: no Dask scheduler reached" in capsys.readouterr().err
    assert not out.exists()


def test_cli_sweep_writes_table_and_summary(tmp_path):
    from cmsim.cli import main

    out = tmp_path / "sw"
    rc = main(["sweep", SCEN, "--replicates", "2", "--grid", "feeders[0].noise_rsd=1 %,4 %",
               "--set", "simulation.duration=6 min", "--seed", "2", "--out", str(out), "-q"])
    assert rc == 0
    table = pd.read_parquet(out / "sweep.parquet")
    assert len(table) == 4 and list(table["replicate"]) == [0, 1, 0, 1]
    summary = pd.read_csv(out / "sweep_summary.csv")
    assert list(summary["replicates"]) == [2, 2]
    for case in (0, 1):
        rows = table[table["case"] == case]
        assert summary.loc[case, "api_content_rsd_mean"] == pytest.approx(
            rows["api_content_rsd"].mean(), rel=1e-9)
        assert summary.loc[case, "api_content_rsd_std"] == pytest.approx(
            rows["api_content_rsd"].std(), rel=1e-9)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "parts", "sweep.csv",
                                                     "sweep.parquet", "sweep_summary.csv"]


def test_cli_sweep_prints_the_grid_points(tmp_path, capsys):
    """Without -q the command prints one line per grid point: the grid value, the
    replicates, mean escapes and waste and the escape probability with its interval, the
    same numbers as sweep_summary.csv."""
    from cmsim.cli import main

    out = tmp_path / "sw"
    rc = main(["sweep", SCEN, "--replicates", "3", "--grid", "diversion.max_risk=0.01,0.001",
               "--set", "simulation.duration=6 min", "--out", str(out)])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["diversion.max_risk", "replicates"]
    assert "P(escape) [95 % CI]" in lines[0]
    summary = pd.read_csv(out / "sweep_summary.csv")
    for line, (_, row) in zip(lines[1:3], summary.iterrows(), strict=True):
        cells = line.split()
        assert float(cells[0]) == row["diversion.max_risk"] and int(cells[1]) == 3
        assert float(cells[3]) == pytest.approx(row["waste_mean"], rel=1e-3)
        assert float(cells[4]) == pytest.approx(row["escape_probability"], abs=1e-9)
    assert lines[3].startswith("6 run(s) written to")
