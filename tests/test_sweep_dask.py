"""A real Dask LocalCluster (2 worker processes) gives the serial table, bit for bit."""

from __future__ import annotations

import importlib
import operator

import pandas as pd
import pytest

import cmsim

distributed = pytest.importorskip("distributed", reason="needs pip install 'cmsim[dask]'")

SCEN = "scenarios/control_none.toml"
GRID = {"feeders[0].noise_rsd": [0.01, 0.04], "simulation.duration": ["6 min"]}
# a picklable custom metric that every worker can import
METRICS = {"ticks": operator.attrgetter("n_ticks")}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.mark.slow
def test_local_cluster_gives_the_serial_table(client, tmp_path):
    serial = cmsim.sweep(SCEN, replicates=6, grid=GRID, seed=5, metrics=METRICS)
    on_dask = cmsim.sweep(SCEN, replicates=6, grid=GRID, seed=5, metrics=METRICS,
                          executor=client, out=tmp_path / "sw")
    pd.testing.assert_frame_equal(serial, on_dask, check_exact=True)
    assert on_dask.run_info["backend"].startswith("Dask") and on_dask.run_info["slots"] == 2
    assert (serial["ticks"] == 720).all()
    # the executor interface of the same client gives the same table
    via_executor = cmsim.sweep(SCEN, replicates=6, grid=GRID, seed=5, metrics=METRICS,
                               executor=client.get_executor())
    pd.testing.assert_frame_equal(serial, via_executor, check_exact=True)
    # both workers ran chunks, each warmed once (the broadcast context is cached there)
    warmed = client.run(lambda: sorted(importlib.import_module("cmsim.sweep.worker")._WARMED))
    assert len(warmed) == 2 and all(len(keys) >= 1 for keys in warmed.values())


@pytest.mark.slow
def test_local_cluster_errors_and_kept_results(client):
    bad = cmsim.sweep(SCEN, replicates=2, grid={"simulation.duration": ["6 min"]},
                      metrics={"meta": operator.attrgetter("metadata")}, executor=client)
    assert (bad["error_type"] == "ParameterError").all()
    assert bad["error_message"].str.contains("one real number").all()
    kept = cmsim.sweep(SCEN, replicates=2, grid={"simulation.duration": ["6 min"]}, keep=True,
                       executor=client)
    assert sorted(kept.results) == [(0, 0), (0, 1)]
    assert kept.results[(0, 1)].n_ticks == 720


def test_cli_dask_address(client, tmp_path):
    from cmsim.cli import main

    out = tmp_path / "sw"
    rc = main(["sweep", SCEN, "--replicates", "3", "--set", "simulation.duration=6 min",
               "--dask", client.scheduler.address, "--out", str(out), "-q"])
    assert rc == 0
    table = pd.read_parquet(out / "sweep.parquet")
    serial = cmsim.sweep(cmsim.config.load_scenario(SCEN, overrides=["simulation.duration=6 min"]),
                         replicates=3)
    assert table["api_content_rsd"].tolist() == serial["api_content_rsd"].tolist()
