"""PAT and control signals in the results (docs/outputs.md: pat.* and control.* columns), NIR
feedback on the PAT readings, and the diversion audit records."""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import cmsim
from cmsim.config import load_scenario
from cmsim.config.loader import read_toml
from cmsim.errors import ScenarioError
from cmsim.eventlog import verify_log

STOP = "scenarios/api_feeder_stop.toml"
NIR_FB = "scenarios/control_nir_feedback.toml"


@pytest.fixture(scope="module")
def stop_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("signals") / "stop"
    # the quantile policy: diversion windows opened by alarms, with their audit records
    return cmsim.run(STOP, out=out, overrides=["diversion.policy=quantile"]), out


@pytest.fixture(scope="module")
def step_run():
    return cmsim.run("scenarios/api_feeder_step.toml",
                     overrides=["simulation.duration=1230 s"])


# ------------------------------------------------------------------ set points and flows


def test_setpoint_columns_follow_the_scenario_step(step_run):
    r = step_run
    sc = load_scenario("scenarios/api_feeder_step.toml")
    feeder = next(f for f in sc.feeders if f.name == sc.disturbances[0].feeder)
    ts = r.timeseries
    t = ts["time_s"].to_numpy()
    sp = ts[f"setpoint.{feeder.name}"].to_numpy()
    nominal = np.ones(t.size, bool)
    for step, kg_h in zip(sc.disturbances, (2.4, 2.6), strict=True):  # values in the file
        assert step.type == "feeder_step" and step.feeder == feeder.name
        during = (t >= step.start) & (t < step.start + step.duration)
        assert during.sum() == round(step.duration / r.dt)
        assert np.allclose(sp[during], kg_h / 3600.0, rtol=1e-12, atol=0)
        nominal &= ~during
    assert np.all(sp[nominal] == feeder.mass_flow)
    assert feeder.mass_flow == pytest.approx(2.0 / 3600.0, rel=1e-12)
    for f in sc.feeders:                                        # the others never move
        if f.name != feeder.name:
            assert np.all(ts[f"setpoint.{f.name}"].to_numpy() == f.mass_flow)


def test_flow_columns_integrate_to_the_fed_mass(stop_run):
    r, _ = stop_run
    ts = r.timeseries
    sc = load_scenario(STOP)
    fed = r.summary()["mass_kg"]["fed"]
    by_material: dict[str, float] = {}
    for f in sc.feeders:
        by_material[f.material] = by_material.get(f.material, 0.0) \
            + float(ts[f"flow.{f.name}"].sum()) * r.dt
    for m, kg in by_material.items():
        assert kg == pytest.approx(fed[m], rel=1e-12)


def test_feeder_stop_shows_in_flow_not_in_setpoint(stop_run):
    r, _ = stop_run
    ev = next(e for e in r.event_log if e["type"] == "feeder_stop")
    start = float(ev["time_s"])
    dur = float(ev["data"]["duration_s"])
    feeder = ev["source"].split(".", 1)[1]
    ts = r.timeseries
    t = ts["time_s"].to_numpy()
    stopped = (t >= start) & (t < start + dur)
    assert stopped.sum() == round(dur / r.dt)
    assert np.all(ts[f"flow.{feeder}"].to_numpy()[stopped] == 0.0)
    sp = ts[f"setpoint.{feeder}"].to_numpy()
    assert np.all(sp == sp[0]) and sp[0] > 0                   # the set point stays


# ------------------------------------------------------------------ PAT columns


def test_nir_readings_frame_and_column_agree(stop_run):
    r, _ = stop_run
    rd = r.nir_readings
    assert isinstance(rd, pd.DataFrame)
    assert list(rd.columns) == ["time_s", "api_fraction", "api_content", "location"]
    np.testing.assert_allclose(rd["api_content"], rd["api_fraction"] / r.target_api_fraction,
                               rtol=1e-15)
    sc = load_scenario(STOP)
    assert set(rd["location"]) == {sc.pat.location}
    # regular clock at the sample period
    np.testing.assert_allclose(np.diff(rd["time_s"]), sc.pat.sample_period, rtol=1e-12)
    col = r.timeseries["pat.nir_api_content"].to_numpy()
    rows = np.floor(rd["time_s"].to_numpy() / r.dt + 1e-9).astype(int)
    inside = rows < r.n_ticks
    np.testing.assert_array_equal(col[rows[inside]], rd["api_content"].to_numpy()[inside])
    mask = np.zeros(r.n_ticks, bool)
    mask[rows[inside]] = True
    assert np.all(np.isnan(col[~mask]))                         # NaN between readings


def test_noise_free_readings_are_exact_in_steady_state():
    r = cmsim.run(STOP, overrides=["pat.noise_sd=0", "simulation.duration=310 s"])
    c = r.timeseries["pat.nir_api_content"].to_numpy()
    got = c[:300][np.isfinite(c[:300])]
    assert got.size > 50
    # nothing happens before the stop at 5 min: reading = true fraction = target exactly
    np.testing.assert_allclose(got, 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(c, r.timeseries["pat.nir_true_api_content"].to_numpy())


def test_dropouts_are_nan_in_frame_and_column():
    r = cmsim.run(STOP, overrides=["pat.dropout_probability=0.3", "simulation.duration=6 min"])
    rd = r.nir_readings
    drop = rd["api_fraction"].isna().to_numpy()
    assert 0.15 < drop.mean() < 0.45                            # 0.3 +- 4 sigma (n ~ 180)
    col = r.timeseries["pat.nir_api_content"].to_numpy()
    rows = np.floor(rd["time_s"].to_numpy() / r.dt + 1e-9).astype(int)
    ok = rows < r.n_ticks
    assert np.all(np.isnan(col[rows[ok & drop]]))
    assert np.all(np.isfinite(col[rows[ok & ~drop]]))


def test_alarm_and_state_columns_match_the_event_log(stop_run):
    r, _ = stop_run
    ts = r.timeseries
    alarm = ts["pat.alarm"].to_numpy()
    nir_alarm = ts["pat.nir_alarm"].to_numpy()
    assert alarm.dtype == bool and nir_alarm.dtype == bool
    assert np.all(alarm[nir_alarm])                             # NIR rules are a subset
    spans = {}
    for e in r.event_log:
        if e.get("source") == "monitor" and e["type"] in ("alarm", "alarm_cleared"):
            spans.setdefault(e["data"]["key"], []).append((e["type"], float(e["time_s"]),
                                                           e["data"]["rule"]))
    assert any(v[0][2] == "pat_oos" for v in spans.values())
    for seq in spans.values():
        (kind0, t0, rule), (kind1, t1, _) = seq
        assert (kind0, kind1) == ("alarm", "alarm_cleared")
        # open at the end of every tick from the opening to before the clearing
        a, b = math.ceil(t0 / r.dt - 1 - 1e-9), math.ceil(t1 / r.dt - 1 - 1e-9)
        assert np.all(alarm[a:b])
        if rule == "pat_oos":
            assert np.all(nir_alarm[a:b])
    # no alarm row without an open alarm: total alarm time is covered by the spans
    covered = np.zeros(r.n_ticks, bool)
    for seq in spans.values():
        a, b = (math.ceil(t / r.dt - 1 - 1e-9) for t in (seq[0][1], seq[1][1]))
        covered[a:b] = True
    np.testing.assert_array_equal(alarm, covered)
    state = ts["pat.in_control"].to_numpy()
    changes = r.metadata["monitor"]["state_changes"]
    assert changes
    first_out = min(t for t, ok in changes if not ok)
    assert state[: math.ceil(first_out / r.dt - 1 - 1e-9)].all()
    assert not state[math.ceil(first_out / r.dt - 1 - 1e-9)]


def test_no_pat_columns_without_a_monitor(stop_run):
    r = cmsim.run(STOP, overrides=["simulation.duration=310 s"], monitor=False)
    cols = r.timeseries.columns
    assert not [c for c in cols if c.startswith("pat.")]
    assert r.nir_readings is None
    assert {"setpoint.api", "flow.api"} <= set(cols)


def test_parquet_has_the_signal_columns_and_result_pickles(stop_run):
    r, out = stop_run
    df = pd.read_parquet(out / "timeseries.parquet")
    for c in ("setpoint.api", "flow.mcc", "pat.nir_api_content", "pat.alarm",
              "pat.in_control", "pat.soft_sensor_api_content"):
        assert c in df.columns, c
    # the estimate, its SD and the risk per gate tick: the monitor's own arrays, and the risk
    # is the Gaussian tail of that estimate beyond the limits
    for col, key in (("pat.soft_sensor_api_content", "soft"), ("pat.soft_sensor_sd", "est_sd"),
                     ("pat.model_api_content", "soft_model"), ("pat.model_sd", "est_sd_model"),
                     ("pat.risk", "risk")):
        np.testing.assert_array_equal(df[col].to_numpy(), r.pat_signals[key])
    from scipy.stats import norm

    lo, hi = r.api_content_limits
    tails = []
    for est, sd_col in (("pat.soft_sensor_api_content", "pat.soft_sensor_sd"),
                        ("pat.model_api_content", "pat.model_sd")):
        c, sd = df[est].to_numpy(), df[sd_col].to_numpy()
        tails.append(np.where(np.isfinite(c), norm.cdf((lo - c) / sd) + norm.sf((hi - c) / sd),
                              0.0))
    ok = (df["pat.soft_sensor_sd"] > 0).to_numpy()
    np.testing.assert_allclose(df["pat.risk"][ok], np.maximum(*tails)[ok], rtol=1e-6,
                               atol=1e-15)
    pd.testing.assert_frame_equal(df, r.timeseries, check_dtype=True)
    r2 = pickle.loads(pickle.dumps(r))
    assert not r2._cache
    pd.testing.assert_frame_equal(r2.timeseries, r.timeseries)
    pd.testing.assert_frame_equal(r2.nir_readings, r.nir_readings)


def test_import_cmsim_stays_light():
    code = ("import sys, cmsim, cmsim.results, cmsim.control; "
            "bad = [m for m in ('pandas', 'matplotlib', 'scipy.signal', 'simpy') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_report_trace_shows_the_measured_readings(stop_run):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from cmsim import plotting

    r, _ = stop_run
    ax = plotting.api_trace(r, ax=Figure().add_subplot())
    measured = [ln for ln in ax.get_lines() if ln.get_gid() == "api-measured"]
    assert len(measured) == 1
    x, y = measured[0].get_data()
    rd = r.nir_readings
    finite = rd["api_content"].notna().to_numpy()
    assert len(x) == finite.sum()
    np.testing.assert_allclose(np.asarray(y), 100.0 * rd["api_content"].to_numpy()[finite])


# ------------------------------------------------------------------ NIR feedback on PAT readings


def _held(times, values, t):
    """Last finite value reported at a time <= t (independent sample-and-hold)."""
    ok = np.isfinite(values) & (times <= t + 1e-9)
    idx = np.flatnonzero(ok)
    return values[idx[-1]] if idx.size else math.nan


def test_nir_feedback_input_is_the_pat_reading_with_dropouts_held():
    r = cmsim.run(NIR_FB, overrides=["simulation.duration=8 min", "pat.dropout_probability=0.25",
                                     "pat.noise_sd=0.5 %"])
    h = r.control_history
    rd = r.nir_readings
    t, y = rd["time_s"].to_numpy(), rd["api_fraction"].to_numpy()
    assert np.isnan(y).sum() > 10                               # dropouts happened
    expected = np.array([_held(t, y, tc) for tc in h["time_s"]])
    np.testing.assert_array_equal(h["nir_reading"], expected)   # exactly the recorded readings
    assert np.isfinite(expected).sum() > 100
    col = r.timeseries["control.nir_api_content"].to_numpy()
    rows = np.rint(h["time_s"] / r.dt).astype(int)
    ok = rows < r.n_ticks
    np.testing.assert_array_equal(col[rows[ok]], expected[ok] / r.target_api_fraction)
    # the correction column holds the last action's multiplier
    corr = r.timeseries["control.correction"].to_numpy()
    np.testing.assert_array_equal(corr[rows[ok]], h["correction"][ok])
    assert np.all(corr[: rows[0]] == 1.0)


def test_nir_feedback_still_controls_on_pat_readings():
    base = cmsim.run("scenarios/control_none.toml", overrides=["simulation.duration=20 min"])
    fb = cmsim.run(NIR_FB, overrides=["simulation.duration=20 min"])
    late = base.time_s > 900.0
    err_none = np.nanmean(np.abs(base.api_content[late] - 1.0))
    err_fb = np.nanmean(np.abs(fb.api_content[late] - 1.0))
    assert err_fb < 0.5 * err_none
    # the API set point moved up to compensate the negative drift
    sp = fb.timeseries["setpoint.api"].to_numpy()
    assert sp[-1] > 1.02 * sp[0]


def test_nir_feedback_without_pat_reads_a_plant_probe_of_its_own():
    raw = read_toml(NIR_FB)
    raw["simulation"]["duration"] = "6 min"
    for key in ("pat", "diversion"):
        raw.pop(key, None)
    raw.setdefault("control", {})["nir_feedback"] = {"latency": "3 s", "noise_sd": "0.1 %"}
    r = cmsim.run(raw)
    assert r.nir_readings is None
    h = r.control_history
    assert np.isfinite(h["nir_reading"]).sum() > 100           # the control probe read


def test_control_probe_settings_conflict_with_pat():
    raw = read_toml(NIR_FB)
    raw["simulation"]["duration"] = "6 min"
    raw.setdefault("control", {})["nir_feedback"] = {"latency": "3 s"}
    with pytest.raises(ScenarioError, match=r"control\.nir_feedback\.latency"):
        cmsim.run(raw)


# ------------------------------------------------------------------ event-log anchors, audit


def test_summary_anchors_match_the_written_log(stop_run):
    r, out = stop_run
    summary = json.loads((out / "summary.json").read_text())
    lines = (out / "events.jsonl").read_text().splitlines()
    anchors = summary["event_log"]
    assert anchors["records"] == len(lines) == len(r.event_log)
    assert anchors["head_hash"] == json.loads(lines[-1])["hash"]
    assert verify_log(out / "events.jsonl", expected_last_hash=anchors["head_hash"],
                      expected_n_records=anchors["records"]).ok


def _records(out):
    return [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]


def test_every_diversion_record_carries_window_rtd_tablets_and_trigger(stop_run):
    r, out = stop_run
    recs = _records(out)
    divs = [x for x in recs if x["type"] == "diversion"]
    assert divs, "api_feeder_stop must divert"
    alarms = [x for x in recs if x["type"] == "alarm"]
    summary = json.loads((out / "summary.json").read_text())
    assert len(divs) == len(summary["diversion_events"])
    tablets = r.tablets
    div_mask = np.asarray(r.diverted, bool)
    for rec, ev in zip(divs, summary["diversion_events"], strict=True):
        d = rec["data"]
        # computed window and tablets affected, counted independently on the gate positions
        assert d["start_s"] == ev["start_s"] and d["end_s"] == ev["end_s"]
        k0, k1 = round(d["start_s"] / r.dt), round(d["end_s"] / r.dt)
        assert np.all(div_mask[k0:k1])
        assert d["tablets"] == pytest.approx(float(tablets[k0:k1].sum()), rel=1e-12)
        assert d["mass_kg"] == pytest.approx(float(r.mass_flow[k0:k1].sum() * r.dt), rel=1e-12)
        assert d["trigger"] and d["windows"]
        names = set()
        for w in d["windows"]:
            names.add(w["trigger"])
            for key in ("start_s", "end_s", "gate_start_s", "gate_end_s", "method",
                        "decision_s", "margins_s", "details"):
                assert key in w, key
            assert d["start_s"] <= w["gate_start_s"] <= w["gate_end_s"] <= d["end_s"]
            # RTD parameters used: the model and its parameters
            assert w["rtd_params"] and all(p for p in w["rtd_params"])
            text = json.dumps(w["rtd_params"])
            assert "model" in text or "mean_residence_time" in text
            # trigger data: the alarm record of that rule decided at the window's opening
            linked = [a for a in alarms if a["data"].get("key") == w["key"]]
            assert len(linked) == 1, w["trigger"]
            assert linked[0]["data"]["rule"] == w["trigger"]
            assert linked[0]["time_s"] == w["decision_s"]
            assert linked[0]["data"]["first_time_s"] <= w["decision_s"]
        assert set(d["trigger"].split("+")) == names


def test_diversion_windows_reference_their_alarm_record_by_key(stop_run):
    _, out = stop_run
    recs = _records(out)
    keys = {a["data"]["key"] for a in recs if a["type"] == "alarm"}
    for rec in recs:
        if rec["type"] == "diversion":
            for w in rec["data"]["windows"]:
                assert w.get("key") in keys


# ------------------------------------------------------------------ chunk invariance


#: absolute tolerances of probabilities: a tail probability of 1e-30 moves by 1e-11 of itself
#: when the estimate moves by rounding (the policy compares it with max_risk, about 1e-3)
_ATOL = {"pat.risk": 1e-12}


def _compare_frames(a: pd.DataFrame, b: pd.DataFrame, skip=()):
    assert list(a.columns) == list(b.columns)
    for c in a.columns:
        if c in skip:
            continue
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=_ATOL.get(c, 1e-18),
                                       equal_nan=True, err_msg=c)
        else:
            np.testing.assert_array_equal(x, y, err_msg=c)


def test_signal_columns_do_not_depend_on_extra_chunk_boundaries(stop_run):
    a, _ = stop_run
    b = cmsim.run(STOP, extra_sync_s=[1.5, 333.25, 450.0, 700.0],
                  overrides=["diversion.policy=quantile"])
    _compare_frames(a.timeseries, b.timeseries)
    pd.testing.assert_frame_equal(a.nir_readings, b.nir_readings)


def test_state_of_control_does_not_depend_on_extra_chunk_boundaries(stop_run):
    a, _ = stop_run
    b = cmsim.run(STOP, extra_sync_s=[450.0, 700.0], overrides=["diversion.policy=quantile"])
    assert a.metadata["monitor"]["state_changes"] == b.metadata["monitor"]["state_changes"]
    np.testing.assert_array_equal(a.timeseries["pat.in_control"], b.timeseries["pat.in_control"])
