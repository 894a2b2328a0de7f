"""Observer hook of the line (``line.observers``, ``divert_plan``, ``record``) and the engine's
``control_period_s``; PAT monitor and diversion through the engine."""

from __future__ import annotations

import numpy as np
import pytest

from cmsim.engine import Engine
from cmsim.errors import ParameterError
from cmsim.line import Line, Node
from cmsim.streams import ChannelMap

# these tests pin down the rule-based monitor of cmsim 0.1 (diversion.policy = "rules")
pytestmark = pytest.mark.usefixtures("rules_policy")


class _Src:
    rows = np.array([0])

    def __init__(self):
        self.fed = np.zeros(1)
        self.events = []

    def step(self, out, k0):
        out += 1.0 + 0.0 * k0
        self.fed = self.fed + out.sum(axis=1)


class _Delay:
    """Stage delaying by one tick (holds one tick of mass)."""

    def __init__(self):
        self.buf = np.zeros((1, 1))

    @property
    def holdup(self):
        return self.buf.sum(axis=1)

    def step(self, inflow):
        x = np.concatenate((self.buf, inflow), axis=1)
        self.buf = x[:, -1:].copy()
        return x[:, :-1]


def _line(n=50):
    cmap = ChannelMap.from_lots({"A": ["1"]}, api_material="A")
    nodes = [Node("feeder.a", "source", _Src(), outputs=("out",)),
             Node("stage", "stage", _Delay(), inputs=("in",), outputs=("out",)),
             Node("gate", "gate", None, inputs=("in",))]
    return Line(cmap, 1.0, n, nodes, {"stage.in": "feeder.a.out", "gate.in": "stage.out"})


class _Recorder:
    def __init__(self, divert_at=None):
        self.chunks = []
        self.events = []
        self.divert_at = divert_at

    def on_chunk(self, line, k0, k1):
        self.chunks.append((k0, k1))
        if self.divert_at is not None and k0 <= self.divert_at < k1:
            line.divert_plan[self.divert_at:self.divert_at + 5] = True
            self.events.append({"time_s": self.divert_at * line.dt, "type": "diversion",
                                "data": {"n": 5}})


def test_observers_see_every_chunk_and_control_period_adds_boundaries():
    line = _line(50)
    rec = _Recorder()
    line.observers.append(rec)
    Engine(line, control_period_s=7.0).run()
    bounds = [k1 for _, k1 in rec.chunks]
    assert bounds == [7, 14, 21, 28, 35, 42, 49, 50]
    assert [k0 for k0, _ in rec.chunks] == [0] + bounds[:-1]


def test_divert_plan_drives_gate_and_observer_events_are_logged():
    line = _line(50)
    rec = _Recorder(divert_at=10)
    line.observers.append(rec)
    log = Engine(line, control_period_s=4.0).run()
    expected = np.zeros(50, bool)
    expected[10:15] = True
    assert np.array_equal(line.diverted, expected)
    acc, div = line.gate_mass()
    assert div[0] == pytest.approx(5.0)
    assert line.mass_balance() < 1e-12
    assert [e["type"] for e in log] == ["diversion"]
    assert log[0]["source"] == "_Recorder" and log[0]["time_s"] == 10.0


def test_record_port_keeps_internal_stream():
    line = _line(20)
    rec = line.record("stage.out")
    src = line.record("feeder.a.out")
    Engine(line, extra_sync_s=[3.0, 11.0]).run()
    assert np.allclose(src, 1.0)
    assert rec[0, 0] == 0.0 and np.allclose(rec[0, 1:], 1.0)
    with pytest.raises(ParameterError, match="port"):
        line.record("stage.nope")


def test_control_period_must_be_positive():
    with pytest.raises(ParameterError, match="control_period_s"):
        Engine(_line(5), control_period_s=0.0)


# ---------------------------------------------------------------------------- PAT monitor
import glob  # noqa: E402

import cmsim  # noqa: E402
from cmsim.config import load_scenario  # noqa: E402

SHIPPED = sorted(glob.glob("scenarios/*.toml"))


@pytest.mark.parametrize("path", SHIPPED)
def test_noise_free_sensors_release_no_nonconforming_tablet(path):
    sc = load_scenario(path)
    dur = min(sc.simulation.duration, 3600.0)  # shortened where long
    r = cmsim.run(path, overrides=["pat.noise_sd=0", f"simulation.duration={dur} s"])
    s = r.summary()["tablets"]
    assert s["nonconforming_accepted"] == 0.0
    # Waste bound: every diversion is justified by one nonconforming/disturbed interval. The
    # widest window of this line is method B for a 20 s disturbance or a PAT window:
    # 20 s + t_99.5% (245.4 s) + margins + back-projection < 300 s per disturbance; start-up
    # adds t_99.9% (293.8 s) + readings; shut-down diverts the rest of the run after feeding
    # stops (its material is not conforming by definition, 7.5).
    n_dist = sum(1 for d in sc.disturbances if d.start < dur)
    per_tick = 20.0 / 3600.0 / 250e-6  # tablets/s at 20 kg/h
    bound = per_tick * (300.0 * n_dist + (320.0 if sc.simulation.initial_state == "empty"
                                          else 0.0))
    if sc.name == "start_up_shut_down":
        bound += per_tick * (dur - 3000.0)
    # (also with a controller moving set points on purpose: the feeder trigger compares with
    # the current set point, so intended moves are not flagged)
    assert s["conforming_diverted"] <= bound
    # every diversion event is in the log with its audit data
    logged = [e for e in r.event_log if e["type"] == "diversion"]
    assert len(logged) == len(r.diversion_events)
    for e, ev in zip(logged, r.diversion_events, strict=True):
        assert e["data"]["tablets"] == ev["tablets"]
        for w in e["data"]["windows"]:
            assert {"start_s", "end_s", "method", "rtd_params", "decision_s"} <= set(w)


def _noisy(**monitor):
    d = load_scenario("scenarios/api_feeder_stop.toml").to_dict()
    d["pat"].update(noise_sd=0.0025, dropout_probability=0.05)
    d["monitor"] = {"ewma": True, "cusum": True, "load_cell_noise": 1e-4, "tablet_weight_rsd":
                    0.01, **monitor}
    return d


def test_monitor_is_chunk_invariant():
    d = _noisy()
    r1 = cmsim.run(d, seed=4)
    r2 = cmsim.run(d, seed=4, extra_sync_s=np.arange(7.3, 900.0, 13.7))
    assert np.array_equal(r1.diverted, r2.diverted)
    assert r1.diversion_events == r2.diversion_events
    s1, s2 = r1._cache["monitor_signals"], r2._cache["monitor_signals"]
    for k in s1:
        np.testing.assert_allclose(s1[k], s2[k], rtol=1e-12, atol=1e-15, err_msg=k)
    # the state of control changes at alarm decision times, not at chunk ends
    sc1 = r1.metadata["monitor"]["state_changes"]
    assert sc1 == r2.metadata["monitor"]["state_changes"] and len(sc1) >= 2
    # every diversion window names the alarm (key) that requested it
    keys = {e["data"]["key"] for e in r1.event_log if e["type"] == "alarm"}
    for e in r1.event_log:
        if e["type"] == "diversion":
            assert all(w["key"] in keys for w in e["data"]["windows"])


@pytest.mark.parametrize("syncs", [np.arange(11.0, 1800.0, 97.3), [299.5, 300.5, 612.0]])
def test_start_up_and_state_of_control_are_chunk_invariant(syncs):
    d = load_scenario("scenarios/start_up_shut_down.toml").to_dict()
    d["simulation"]["duration"] = min(float(d["simulation"]["duration"]), 1800.0)
    d["disturbances"] = [x for x in d.get("disturbances", [])
                         if float(x["start"]) < d["simulation"]["duration"]]
    d["pat"].update(noise_sd=0.0025)
    r1 = cmsim.run(d, seed=1)
    r2 = cmsim.run(d, seed=1, extra_sync_s=syncs)
    sc1 = r1.metadata["monitor"]["state_changes"]
    assert sc1 and sc1 == r2.metadata["monitor"]["state_changes"]
    assert np.array_equal(r1.diverted, r2.diverted)
    start = [e for e in r1.event_log if e["type"] == "state_of_control"
             and e["data"].get("reason") == "start-up complete"]
    assert len(start) == 1 and start[0]["time_s"] == sc1[0][0]
    # start-up diversion covers at least the settling time (line F >= 0.999: 293.8 s)
    # (the gate moves gate_delay after the decision at 0: from tick 1 at dt = 1 s; the line
    # is empty then)
    k = np.flatnonzero(r1.diverted)
    assert k[0] * r1.dt <= 1.0
    assert np.flatnonzero(~r1.diverted[k[0]:])[0] * r1.dt >= 293.8


def test_seeds_change_the_noise_and_replicates_bound_escapes_and_waste():
    """5 replicates of the API stop with realistic NIR noise (2.5 % of target, dropouts)."""
    d = _noisy()
    nirs, esc, waste = [], [], []
    for seed in range(5):
        r = cmsim.run(d, seed=seed)
        nirs.append(r._cache["monitor_signals"]["nir"][:50])
        s = r.summary()["tablets"]
        esc.append(s["nonconforming_accepted"])
        waste.append(s["conforming_diverted"])
    assert not np.array_equal(nirs[0], nirs[1], equal_nan=True)
    # the soft sensor and the feeder trigger see the stop whatever the NIR noise: no escapes
    assert max(esc) == 0.0
    # waste: the method B window of the stop (<= 10 + 245.4 + 2*5 s) plus at most ~two
    # false-alarm PAT windows of <= 220 s each over 15 min
    assert max(waste) <= 22.3 * (265.0 + 2 * 220.0)


# ------------------------------------------------------------- windows in every situation
from cmsim import rtd  # noqa: E402
from cmsim.monitor.windows import quantile_window, rtd_envelope  # noqa: E402


def _requests(r):
    """Committed diversion requests (audit records) by trigger."""
    out = {}
    for e in r.event_log:
        if e["type"] == "diversion":
            for w in e["data"]["windows"]:
                out.setdefault(w["trigger"], []).append(w)
    return out


def _patch_config(monkeypatch, **fields):
    """Set MonitorConfig fields the scenario mapping in cmsim.api does not pass (yet):
    ``rtd_uncertainty`` ([diversion]), ``chart_action``, ``feeder_reference``."""
    import cmsim.api as api  # noqa: PLC0415

    orig = api.monitor_config

    def cfg(scenario):
        c = orig(scenario)
        for k, v in fields.items():
            setattr(c, k, v)
        return c

    monkeypatch.setattr(api, "monitor_config", cfg)


def _stop_after_speed_step():
    d = load_scenario("scenarios/blender_speed_step.toml").to_dict()
    d.pop("pat", None)
    d["simulation"]["duration"] = 1500.0
    d["monitor"] = {"soft_sensor": False, "load_cell_period": 0, "tablet_weight_period": 0}
    d["diversion"] = {"quantile": 0.005, "margin": 0.0}
    d["disturbances"].append({"type": "feeder_stop", "feeder": "api", "start": 1000.0,
                              "duration": 10.0})
    return d


def test_method_b_window_uses_the_current_blender_rtd():
    d = _stop_after_speed_step()
    r = cmsim.run(d)
    (w,) = _requests(r)["feeder:api"]
    # independent: blender TIS n=5 with tau = 60 s (150/250)^-0.5 after the step at 600 s
    tau = 60.0 * (150.0 / 250.0) ** -0.5
    new = rtd.Series(rtd.TanksInSeries(tau, 5), rtd.PFR(10.0), rtd.CSTR(30.0))
    nominal = rtd.Series(rtd.TanksInSeries(60.0, 5), rtd.PFR(10.0), rtd.CSTR(30.0))
    t0, t1 = w["details"]["disturbance_start_s"], w["details"]["disturbance_end_s"]
    assert t0 == pytest.approx(1000.0) and t1 == pytest.approx(1010.0)
    exp = quantile_window(t0, t1, new, 0.005)
    nom = quantile_window(t0, t1, nominal, 0.005)
    assert w["start_s"] == pytest.approx(exp.start_s, abs=1e-9)
    assert w["end_s"] == pytest.approx(exp.end_s, abs=1e-9)
    assert abs(w["end_s"] - nom.end_s) > 30.0  # slower blender: the window ends later
    assert r.summary()["tablets"]["nonconforming_accepted"] == 0.0
    (changed,) = [e for e in r.event_log if e["type"] == "rtd_model_changed"]
    assert changed["time_s"] == pytest.approx(600.0)
    assert changed["data"]["mean_residence_time_s"] == pytest.approx(new.mean)


@pytest.mark.parametrize("method", ["A", "B"])
def test_rtd_uncertainty_widens_windows_monotonically(monkeypatch, method):
    d = load_scenario("scenarios/api_feeder_half.toml").to_dict()
    d.pop("pat", None)
    d["simulation"]["duration"] = 900.0
    d["monitor"] = {"load_cell_period": 0, "tablet_weight_period": 0,
                    ("soft_sensor" if method == "B" else "feeder_trigger"): False}
    if method == "B":  # a fault: the 20 s at 300 s as a stop
        (dist,) = d["disturbances"]
        dist.pop("mass_flow")
        dist["type"] = "feeder_stop"
    d["diversion"] = {"quantile": 0.005, "margin": 0.0}
    spans = []
    for u in (0.0, 0.05, 0.1, 0.2):
        monkeypatch.undo()
        _patch_config(monkeypatch, rtd_uncertainty=u)
        r = cmsim.run(d)
        (ev,) = r.diversion_events
        spans.append((ev["start_s"], ev["end_s"]))
        assert r.summary()["tablets"]["nonconforming_accepted"] == 0.0
        if method == "B":
            (w,) = _requests(r)["feeder:api"]
            line = rtd.Series(rtd.TanksInSeries(60.0, 5), rtd.PFR(10.0), rtd.CSTR(30.0))
            exp = quantile_window(300.0, 320.0, rtd_envelope(line, u), 0.005)
            assert (w["start_s"], w["end_s"]) == pytest.approx((exp.start_s, exp.end_s))
            assert len(w["rtd_params"]) == (1 if u == 0 else 3)
    if method == "B":
        assert spans[0] == pytest.approx((331.5, 565.5))  # nominal (worked example, on ticks)
    else:
        assert spans[0] == pytest.approx((358.5, 441.0))
    for (a0, b0), (a1, b1) in zip(spans[:-1], spans[1:], strict=True):
        assert a1 <= a0 and b1 >= b0 and (a1 < a0 or b1 > b0)


def test_ratio_control_set_point_moves_are_no_feeder_faults():
    sc = load_scenario("scenarios/control_ratio.toml")
    dur = min(sc.simulation.duration, 3600.0)
    r = cmsim.run("scenarios/control_ratio.toml",
                  overrides=["pat.noise_sd=0", f"simulation.duration={dur} s"])
    s = r.summary()["tablets"]
    assert s["nonconforming_accepted"] == 0.0
    # the nominal reference flagged the followers' intended moves (~9,800 tablets wasted)
    feeder_alarms = [e for e in r.event_log if e["type"] == "alarm"
                     and e["data"]["rule"].startswith("feeder:")]
    for e in feeder_alarms:  # any remaining alarm is a real deviation from the set point
        assert abs(e["data"]["flow_kg_s"] / e["data"]["reference_kg_s"] - 1.0) > 0.2
    per_s = 20.0 / 3600.0 / 250e-6
    n_dist = sum(1 for x in sc.disturbances if x.start < dur)
    assert s["conforming_diverted"] <= per_s * 300.0 * max(n_dist, 1)


# ------------------------------------------------------------------- MSPC through the engine
def test_mspc_trigger_raises_with_contributions_naming_the_feeder():
    d = load_scenario("scenarios/api_feeder_stop.toml").to_dict()
    d["pat"].update(noise_sd=0.0025)
    d["simulation"]["duration"] = 900.0
    d["monitor"] = {"mspc": True, "mspc_training": [20.0, 280.0], "mspc_alpha": 0.001,
                    "load_cell_noise": 2e-5, "load_cell_window": 4.0, "soft_sensor": False,
                    "feeder_trigger": False, "tablet_weight_period": 0}
    r = cmsim.run(d, seed=3)
    assert any(e["type"] == "mspc_trained" for e in r.event_log)
    alarms = [e for e in r.event_log if e["type"] == "alarm" and e["data"]["rule"] == "mspc"]
    assert alarms, "the API feeder stop must raise a T^2/Q alarm"
    first = alarms[0]["data"]
    assert 300.0 <= alarms[0]["time_s"] <= 330.0  # the stop starts at 300 s
    assert first["t2"] > first["t2_limit"] or first["q"] > first["q_limit"]
    assert first["largest_contribution"] == "load_cell.api"
    # once the content dip reaches the probe (~336 s) the NIR variable carries the alarm
    assert any(a["data"]["largest_contribution"] == "nir" and a["time_s"] > 330.0
               for a in alarms[1:])
    assert set(first["q_contributions"]) == {"nir", "load_cell.api", "load_cell.mcc",
                                             "load_cell.mgst"}
    assert sum(first["q_contributions"].values()) == pytest.approx(first["q"], rel=1e-9)
    assert "mspc" in {t for ev in r.diversion_events for t in ev["trigger"].split("+")}
    assert r.summary()["tablets"]["nonconforming_accepted"] == 0.0


def test_chart_signals_warn_by_default_and_divert_on_request(monkeypatch):
    """Noisy NIR on the undisturbed baseline: chart signals are logged and flagged per reading
    but divert nothing (spec persistence rarely fires); with chart_action = "divert" each
    signal opens a PAT window."""
    d = load_scenario("scenarios/baseline.toml").to_dict()
    d["simulation"]["duration"] = 1800.0
    d["pat"].update(noise_sd=0.0025)
    d["monitor"] = {"ewma": True, "cusum": True, "shewhart": True, "load_cell_period": 0,
                    "tablet_weight_period": 0}
    r = cmsim.run(d, seed=2)
    sig = r.pat_signals
    n_signals = sum(1 for e in r.event_log if e["type"] == "spc_signal")
    assert n_signals > 0
    for chart in ("ewma", "cusum", "shewhart"):
        flags = sig[f"spc.{chart}"]
        assert flags.shape == sig["spc_t"].shape and flags.dtype == bool
        # one logged signal per run of flags at most (a signal opens on a flagged reading)
        opened = sum(1 for e in r.event_log if e["type"] == "spc_signal"
                     and e["data"]["rule"] == chart)
        assert opened <= max(1, int(np.sum(np.diff(flags.astype(int)) == 1)) + 1)
    charts = {"ewma", "cusum", "shewhart"}
    assert not any(charts & set(ev["trigger"].split("+")) for ev in r.diversion_events)
    _patch_config(monkeypatch, chart_action="divert")
    r2 = cmsim.run(d, seed=2)
    assert any(charts & set(ev["trigger"].split("+")) for ev in r2.diversion_events)
    assert r2.summary()["tablets"]["conforming_diverted"] > \
        r.summary()["tablets"]["conforming_diverted"]


def test_monitor_config_new_fields_are_validated():
    from cmsim.monitor.pat import MonitorConfig  # noqa: PLC0415

    for kw, name in (({"chart_action": "stop"}, "chart_action"),
                     ({"feeder_reference": "x"}, "feeder_reference"),
                     ({"rtd_uncertainty": 1.0}, "rtd_uncertainty"),
                     ({"rtd_uncertainty": -0.1}, "rtd_uncertainty")):
        with pytest.raises(ParameterError, match=name):
            MonitorConfig(**kw)


def test_nominal_reference_still_flags_a_set_point_step(monkeypatch):
    """feeder_reference = "nominal" (the old behaviour) treats the half-rate set-point step as
    a feeder deviation: method B window of docs/monitor.md#diversion-windows (331.73-565.44 s, on
    ticks)."""
    _patch_config(monkeypatch, feeder_reference="nominal")
    d = load_scenario("scenarios/api_feeder_half.toml").to_dict()
    d.pop("pat", None)
    d["monitor"] = {"soft_sensor": False, "load_cell_period": 0, "tablet_weight_period": 0}
    d["diversion"] = {"quantile": 0.005, "margin": 0}
    r = cmsim.run(d)
    (ev,) = r.diversion_events
    assert ev["start_s"] <= 331.73 < ev["start_s"] + r.dt
    assert ev["end_s"] - r.dt < 565.44 <= ev["end_s"]
    (w,) = _requests(r)["feeder:api"]
    assert w["method"] == "B"


def test_readings_grow_with_the_chunks_and_equal_the_signals():
    from cmsim.api import build_monitor, pat_rng_names, rng_streams  # noqa: PLC0415
    from cmsim.line import build_line, rng_source_names  # noqa: PLC0415

    sc = load_scenario("scenarios/baseline.toml", overrides=["simulation.duration=2 min"])
    gens, _ = rng_streams(1, rng_source_names(sc) + pat_rng_names(sc))
    line = build_line(sc, gens)
    mon = build_monitor(sc, line, gens)
    seen = []
    for k in (20, 50, 100):
        line.run_to(k)
        seen.append(sum(a.size for a in mon.readings["t"]))
    assert seen[0] < seen[1] < seen[2]
    sig = mon.signals()
    for key in ("t", "nir", "nir_true"):
        np.testing.assert_array_equal(np.concatenate(mon.readings[key]), sig[key])


# ------------------------------------------------------------- shut-down
# (docs/monitor.md#start-up-and-shut-down)
from cmsim.monitor.pat import line_models  # noqa: E402
from cmsim.monitor.state import SHUTDOWN, evaluate_state_of_control  # noqa: E402

T999 = 293.8  # line (TIS5 60 s + PFR 10 s + CSTR 30 s) F = 0.999 [s], see above


def _sus(duration=3600.0, disturbances=None, noise=0.0):
    d = load_scenario("scenarios/start_up_shut_down.toml").to_dict()
    d["simulation"]["duration"] = duration
    d["pat"].update(noise_sd=noise)
    if disturbances is not None:
        d["disturbances"] = disturbances
    return d


def _all_feeders(type_, start, **kw):
    return [{"type": type_, "feeder": f, "start": start, **kw} for f in ("api", "mcc", "mgst")]


def _t_alpha():
    feed, _ = line_models(load_scenario("scenarios/start_up_shut_down.toml"))
    return float(feed.quantile(0.005))


def _start_up_end(r):
    """First tick not diverted after the start-up diversion (tick 0 precedes the gate)."""
    k0 = np.flatnonzero(r.diverted)[0]
    return k0 + np.flatnonzero(~r.diverted[k0:])[0]


def _state_events(r):
    return [e for e in r.event_log if e["type"] == "state_of_control"]


def test_shut_down_diverts_from_feed_stop_plus_t_alpha_to_the_end():
    r = cmsim.run(_sus())
    ta = _t_alpha()
    assert 25.0 < ta < 40.0  # the line's t_0.5% (TIS5 + PFR + CSTR): ~31.7 s
    dt = r.dt
    n = r.diverted.size
    k_sd = int(np.floor((3000.0 + ta) / dt))
    # the shut-down: every tick from the one containing stop + t_alpha to the end
    assert r.diverted[k_sd:].all()
    # in control in between: nothing diverted from the end of the start-up to stop + t_alpha
    k_up = _start_up_end(r)
    assert k_up * dt >= T999
    assert not r.diverted[k_up:k_sd].any()
    # independent oracle: the offline evaluator's SHUTDOWN ticks (feed stop at 3000 s, delay =
    # t_alpha of the same RTD) are all diverted, and they start within one tick of the gate
    t = np.arange(n) * dt
    feed, _ = line_models(load_scenario("scenarios/start_up_shut_down.toml"))
    off = evaluate_state_of_control(t, {}, line_model=feed, feed_stops=[(3000.0, None)],
                                    alpha=0.005)
    sd = off.state == SHUTDOWN
    assert r.diverted[sd].all()
    assert abs(np.flatnonzero(sd)[0] - k_sd) <= 1
    s = r.summary()["tablets"]
    assert s["nonconforming_accepted"] == 0.0
    # diverted shut-down material = everything the gate emitted after stop + t_alpha
    acc = r.gate_flow.sum(axis=0)
    ev = [e for e in r.diversion_events if "shut_down" in e["trigger"]]
    assert len(ev) == 1 and ev[0]["start_s"] == k_sd * dt and ev[0]["end_s"] == n * dt
    assert ev[0]["method"] == "B"
    assert ev[0]["mass_kg"] == pytest.approx(acc[k_sd:].sum() * dt, rel=1e-12)
    # audit trail: the stop, the shut-down state, the window with its RTD quantile
    stop = [e for e in r.event_log if e["type"] == "feed_stop"]
    assert len(stop) == 1 and stop[0]["data"]["stop_s"] == 3000.0
    assert stop[0]["data"]["t_alpha_s"] == pytest.approx(ta, rel=1e-9)
    states = _state_events(r)
    assert [e["data"].get("state") for e in states] == [None, "shut_down"]
    assert states[1]["time_s"] == pytest.approx(3000.0 + ta, rel=1e-12)
    assert r.metadata["monitor"]["state_changes"][-1] == [pytest.approx(3000.0 + ta), False]
    logged = [w for e in r.event_log if e["type"] == "diversion" for w in e["data"]["windows"]
              if w["trigger"] == "shut_down"]
    assert len(logged) == 1 and logged[0]["start_s"] == pytest.approx(3000.0 + ta)
    assert logged[0]["alpha"] == 0.005 and logged[0]["rtd_params"]


@pytest.mark.parametrize("how", ["feeder_step", "feeder_stop"])
def test_stop_and_restart_is_shut_down_plus_start_up(how):
    if how == "feeder_step":
        dist = _all_feeders("feeder_step", 1000.0, duration=600.0, mass_flow=0.0)
    else:
        dist = _all_feeders("feeder_stop", 1000.0, duration=600.0)
    r = cmsim.run(_sus(2400.0, dist))
    ta, dt = _t_alpha(), r.dt
    k_sd = int(np.floor((1000.0 + ta) / dt))
    states = _state_events(r)
    if how == "feeder_stop":  # the feeder triggers open first (flow off its set point)
        assert states[1]["data"] == {"in_control": False, "open_alarms": ["feeder:api"]}
        del states[1]
    kinds = [(e["data"].get("state"), e["data"].get("reason")) for e in states]
    assert kinds == [(None, "start-up complete"), ("shut_down", "feed stopped"),
                     ("start_up", "feeding resumed"), (None, "start-up complete")]
    t_ready = states[3]["time_s"]
    assert t_ready >= 1600.0 + T999  # the restart's start-up: settled, then PAT readings
    k_ready = int(np.ceil(t_ready / dt - 1e-9))
    # diverted continuously from stop + t_alpha until the restart's start-up is complete
    assert r.diverted[k_sd:k_ready].all()
    # in control (and not diverted) before the stop + t_alpha and after the new start-up
    # (the feeder_stop variant adds the feeder trigger's method B windows around the stop)
    k_up = _start_up_end(r)
    if how == "feeder_step":
        assert not r.diverted[k_up:k_sd].any()
    else:
        assert not r.diverted[k_up:int(np.floor((1000.0 + ta - 10.0) / dt))].any()
    assert not r.diverted[k_ready + 2:].any()
    assert r.summary()["tablets"]["nonconforming_accepted"] == 0.0
    triggers = "+".join(e["trigger"] for e in r.diversion_events)
    assert "shut_down" in triggers and triggers.count("start_up") == 2
    sc = r.metadata["monitor"]["state_changes"]
    assert [b for _, b in sc] == [True, False, True]


def test_short_pause_restarts_before_t_alpha_without_a_shut_down_state():
    # feeding stops for 10 s (< t_alpha): no shut-down window, but a new start-up
    r = cmsim.run(_sus(2400.0, _all_feeders("feeder_step", 1000.0, duration=10.0,
                                            mass_flow=0.0)))
    states = [e["data"].get("state") for e in _state_events(r)]
    assert states == [None, "start_up", None]
    assert not any("shut_down" in e["trigger"] for e in r.diversion_events)
    k = np.flatnonzero(r.diverted)
    second = k[k * r.dt > 900.0]
    # the new start-up diverts from the restart (decision + gate delay) on, continuously
    assert second[0] * r.dt == pytest.approx(1010.5, abs=r.dt)
    assert np.all(np.diff(second) == 1) and second[-1] * r.dt >= 1010.0 + T999
    assert r.summary()["tablets"]["nonconforming_accepted"] == 0.0


def test_single_api_feeder_stop_is_not_a_shut_down():
    r = cmsim.run("scenarios/api_feeder_stop.toml", overrides=["pat.noise_sd=0"])
    assert not any(e["type"] == "feed_stop" for e in r.event_log)
    trig = "+".join(e["trigger"] for e in r.diversion_events)
    assert "feeder:api" in trig and "shut_down" not in trig


@pytest.mark.parametrize("dist", [None, _all_feeders("feeder_step", 1000.0, duration=600.0,
                                                     mass_flow=0.0)])
def test_shut_down_and_restart_are_chunk_invariant(dist):
    d = _sus(3600.0 if dist is None else 2400.0, dist, noise=0.0025)
    r1 = cmsim.run(d, seed=3)
    syncs = np.concatenate([np.arange(13.0, 2400.0, 71.3), [1000.5, 1031.5, 1032.0, 1600.5,
                                                             3000.5, 3031.5, 3032.0]])
    r2 = cmsim.run(d, seed=3, extra_sync_s=syncs)
    assert np.array_equal(r1.diverted, r2.diverted)
    assert r1.diversion_events == r2.diversion_events
    assert r1.metadata["monitor"]["state_changes"] == r2.metadata["monitor"]["state_changes"]
    e1 = [(e["time_s"], e["type"]) for e in r1.event_log if e["source"] == "monitor"
          and e["type"] != "diversion"]
    e2 = [(e["time_s"], e["type"]) for e in r2.event_log if e["source"] == "monitor"
          and e["type"] != "diversion"]
    assert e1 == e2
