"""cmsim.run, the output directory contract (docs/outputs.md) and import cost."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

import cmsim
from _small_line import small_line
from cmsim import io as cio
from cmsim.errors import InputError, SimulationError
from cmsim.eventlog import verify_log


def scenario():
    return small_line("api-test")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run1"
    result = cmsim.run(scenario(), out=out)
    return result, out


def test_output_directory_files_and_summary(written):
    result, out = written
    names = {p.name for p in out.iterdir()}
    assert {"summary.json", "timeseries.parquet", "events.jsonl", "api_content.png",
            "lots.png"} <= names
    summary = json.loads((out / "summary.json").read_text())
    for key in ("scenario", "seed", "cmsim_version", "scenario_sha256", "duration_s",
                "wall_time_s", "tablets", "mass_kg", "mass_balance_max_rel_error",
                "diversion_events"):
        assert key in summary, key
    assert set(summary["tablets"]) == {"produced", "accepted", "diverted",
                                       "nonconforming_produced", "nonconforming_accepted",
                                       "conforming_diverted"}
    assert list(summary["mass_kg"]) == ["initial_holdup", "fed", "accepted", "diverted",
                                        "holdup"]
    # the table adds up: initial hold-up + fed = accepted + diverted + final hold-up
    for material in ("API", "MCC"):
        m = {k: v[material] for k, v in summary["mass_kg"].items()}
        assert m["initial_holdup"] + m["fed"] == pytest.approx(
            m["accepted"] + m["diverted"] + m["holdup"], rel=1e-12)
        assert m["initial_holdup"] > 0.0  # the scenario starts at steady state
    assert summary["seed"] == 4 and summary["duration_s"] == 360.0
    assert summary["scenario_sha256"] == cmsim.config.load_scenario(scenario()).sha256()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".run1.tmp")]
    # event-log anchors (additive key): count and head hash of the written events.jsonl
    lines = (out / "events.jsonl").read_text().splitlines()
    assert summary["event_log"] == {"records": len(lines),
                                    "head_hash": json.loads(lines[-1])["hash"]}


def test_parquet_columns_and_provenance(written):
    result, out = written
    table = pq.read_table(out / "timeseries.parquet")
    cols = table.column_names
    assert cols[:3] == ["time_s", "mass_flow_kg_s", "tablets"]
    for c in ("fraction.API", "fraction.MCC", "api_content", "lot.API.L0", "lot.API.B",
              "lot.MCC.L0", "diverted"):
        assert c in cols, c
    assert table.num_rows == 360
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert json.loads(meta["cmsim.seed"]) == 4
    assert json.loads(meta["cmsim.scenario_sha256"]) == result.summary()["scenario_sha256"]
    assert json.loads(meta["cmsim.cmsim_version"]) == cmsim.__version__
    df = table.to_pandas()
    np.testing.assert_array_equal(df["api_content"].to_numpy(), result.api_content)
    assert df["diverted"].dtype == bool


def test_events_jsonl_chain_verifies(written):
    result, out = written
    assert verify_log(out / "events.jsonl").ok
    lines = (out / "events.jsonl").read_text().splitlines()
    assert len(lines) == len(result.event_log)
    recs = [json.loads(x) for x in lines]
    assert [r["seq"] for r in recs] == list(range(len(recs)))
    assert recs[0]["type"] == "feeder_stop" and recs[0]["time_s"] == 100.0
    assert recs[0]["data"]["source"] == "feeder.api"


def test_existing_nonempty_directory_refused_before_running(tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        cmsim.run(scenario(), out=out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_empty_existing_directory_is_used(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    cmsim.run(scenario(), out=out)
    assert (out / "summary.json").exists()


def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch, written):
    result, _ = written

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cio, "write_events_jsonl", boom)
    out = tmp_path / "broken"
    with pytest.raises(SimulationError, match="disk full"):
        result.write(out)
    assert list(tmp_path.iterdir()) == []


def test_plot_returns_figure(written):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from cmsim import plotting

    result, _ = written
    fig = result.plot()
    assert len(fig.axes) == 3
    ax = plotting.api_content(result)
    assert ax.get_ylabel().startswith("API content")
    import matplotlib.pyplot as plt

    plt.close("all")


def test_progress_callback_sees_every_tick():
    seen = []
    r = cmsim.run(scenario(), progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (r.n_ticks, r.n_ticks)
    assert len(seen) >= 50
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_import_is_cheap():
    code = ("import sys, cmsim; bad = [m for m in ('simpy', 'pandas', 'matplotlib', "
            "'scipy.signal', 'pydantic') if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_run_refuses_a_progress_or_sync_times_of_the_wrong_kind():
    """progress='yes' used to be taken as True, and NaN sync times were skipped silently."""
    from cmsim.errors import ParameterError  # noqa: PLC0415

    short = ["simulation.duration=1 min"]
    with pytest.raises(ParameterError, match="progress='yes': must be True, False or a"):
        cmsim.run("baseline", overrides=short, progress="yes")
    for bad in ([float("nan")], [-1.0], ["soon"], "12"):
        with pytest.raises(ParameterError, match="extra_sync_s"):
            cmsim.run("baseline", overrides=short, extra_sync_s=bad)
