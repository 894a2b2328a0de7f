"""Observer hook of the line (``line.observers``, ``divert_plan``, ``record``) and the engine's
``control_period_s``; the PAT monitor (line-state estimator, risk and quantile policies) and
diversion through the engine."""

from __future__ import annotations

import numpy as np
import pytest

from cmsim.engine import Engine
from cmsim.errors import ParameterError
from cmsim.line import Line, Node
from cmsim.streams import ChannelMap


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
    d["monitor"] = {"ewma": True, "cusum": True, "shewhart": True, "mspc": True,
                    "mspc_training": [20.0, 280.0], "chart_action": "divert",
                    "load_cell_noise": 1e-4, **monitor}
    # an NIR bias from 500 s: the readings stop fitting the model, the charts signal
    d["disturbances"].append({"type": "nir_fault", "kind": "bias", "start": 500.0,
                              "value": 0.004})
    return d


@pytest.mark.parametrize("policy", ["risk", "quantile"])
def test_monitor_with_every_chart_is_chunk_invariant(policy):
    d = _noisy()
    d["diversion"]["policy"] = policy
    r1 = cmsim.run(d, seed=4)
    r2 = cmsim.run(d, seed=4, extra_sync_s=np.arange(7.3, 900.0, 13.7))
    assert np.array_equal(r1.diverted, r2.diverted)

    def windows(r):  # (the order of the triggers is the order of their first request)
        return [(e["start_s"], e["end_s"], set(e["trigger"].split("+")), e["tablets"])
                for e in r.diversion_events]

    assert windows(r1) == windows(r2)
    s1, s2 = r1.pat_signals, r2.pat_signals
    for k in s1:  # (the estimator's sums may round differently by 1e-12)
        np.testing.assert_allclose(s1[k], s2[k], rtol=0, atol=1e-9, err_msg=k)
    assert r1.metadata["monitor"]["state_changes"] == r2.metadata["monitor"]["state_changes"]

    def monitor_events(r):
        return [(e["time_s"], e["type"], e["data"].get("rule")) for e in r.event_log
                if e["source"] == "monitor" and e["type"] != "diversion"]

    assert monitor_events(r1) == monitor_events(r2)
    assert any(t == "spc_signal" for _, t, _ in monitor_events(r1))


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
    # start-up diversion covers at least the settling time (line F >= 0.999: 293.8 s)
    # (the gate moves gate_delay after the decision at 0: from tick 1 at dt = 1 s; the line
    # is empty then)
    k = np.flatnonzero(r1.diverted)
    assert k[0] * r1.dt <= 1.0
    assert np.flatnonzero(~r1.diverted[k[0]:])[0] * r1.dt >= 293.8
    assert sc1[0][1] and sc1[0][0] >= 293.8  # in control once the start-up is qualified


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


def _stop_after_speed_step():
    d = load_scenario("scenarios/blender_speed_step.toml").to_dict()
    d.pop("pat", None)
    d["simulation"]["duration"] = 1500.0
    d["monitor"] = {"load_cell_period": 0}
    d["diversion"] = {"quantile": 0.005, "margin": 0.0, "policy": "quantile"}
    d["disturbances"].append({"type": "feeder_stop", "feeder": "api", "start": 1000.0,
                              "duration": 10.0})
    return d


def test_method_b_window_uses_the_current_blender_rtd():
    d = _stop_after_speed_step()
    r = cmsim.run(d)
    (w,) = _requests(r)["feeder:0"]
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


def test_rtd_uncertainty_widens_method_b_windows_monotonically():
    d = load_scenario("scenarios/api_feeder_half.toml").to_dict()
    d.pop("pat", None)
    d["simulation"]["duration"] = 900.0
    d["monitor"] = {"load_cell_period": 0}
    (dist,) = d["disturbances"]  # a fault: the 20 s at 300 s as a stop
    dist.pop("mass_flow")
    dist["type"] = "feeder_stop"
    line = rtd.Series(rtd.TanksInSeries(60.0, 5), rtd.PFR(10.0), rtd.CSTR(30.0))
    spans = []
    for u in (0.0, 0.05, 0.1, 0.2):
        d["diversion"] = {"quantile": 0.005, "margin": 0.0, "policy": "quantile",
                          "rtd_uncertainty": u}
        r = cmsim.run(d)
        (ev,) = r.diversion_events
        spans.append((ev["start_s"], ev["end_s"]))
        assert r.summary()["tablets"]["nonconforming_accepted"] == 0.0
        (w,) = _requests(r)["feeder:0"]
        exp = quantile_window(300.0, 320.0, rtd_envelope(line, u), 0.005)
        assert (w["start_s"], w["end_s"]) == pytest.approx((exp.start_s, exp.end_s))
        assert len(w["rtd_params"]) == (1 if u == 0 else 3)
    assert spans[0] == pytest.approx((331.5, 565.5))  # nominal (worked example, on ticks)
    for (a0, b0), (a1, b1) in zip(spans[:-1], spans[1:], strict=True):
        assert a1 <= a0 and b1 >= b0 and (a1 < a0 or b1 > b0)


# ------------------------------------------------------------------- MSPC through the engine
def test_mspc_signals_the_api_feeder_stop_through_its_flow_residual():
    d = load_scenario("scenarios/api_feeder_stop.toml").to_dict()
    d["pat"].update(noise_sd=0.0025)
    d["simulation"]["duration"] = 900.0
    d["monitor"] = {"mspc": True, "mspc_training": [20.0, 280.0], "mspc_alpha": 0.001,
                    "load_cell_noise": 2e-5, "load_cell_window": 4.0, "chart_action": "divert"}
    r = cmsim.run(d, seed=3)
    (trained,) = [e for e in r.event_log if e["type"] == "mspc_trained"]
    assert trained["data"]["variables"] == ["innovation", "flow:api", "flow:mcc",
                                            "flow:mgst"]
    signals = [e for e in r.event_log if e["type"] == "spc_signal"
               and e["data"]["rule"] == "mspc"]
    during = [e for e in signals if 300.0 <= e["time_s"] <= 330.0]
    assert during, "the API feeder stop must raise a T^2/Q signal"
    first = during[0]["data"]
    assert first["t2"] > first["t2_limit"] or first["q"] > first["q_limit"]
    assert first["largest_deviation"] == "flow:api"
    assert sum(first["q_contributions"].values()) == pytest.approx(first["q"], rel=1e-9)
    # in control (before the stop) the signals are rare: at most a few onsets in 280 s
    assert len([e for e in signals if 280.0 <= e["time_s"] < 300.0]) <= 1
    assert "mspc" in {t for ev in r.diversion_events for t in ev["trigger"].split("+")}
    assert r.summary()["tablets"]["nonconforming_accepted"] == 0.0


def test_readings_grow_with_the_chunks_and_equal_the_signals():
    from cmsim.api import pat_rng_names, rng_streams  # noqa: PLC0415
    from cmsim.config.schema import Monitor  # noqa: PLC0415
    from cmsim.line import build_line, rng_source_names  # noqa: PLC0415
    from cmsim.monitor.setup import build_line_monitor  # noqa: PLC0415

    sc = load_scenario("scenarios/baseline.toml", overrides=["simulation.duration=2 min"])
    gens, _ = rng_streams(1, rng_source_names(sc) + pat_rng_names(sc))
    line = build_line(sc, gens)
    mon = build_line_monitor(sc, sc.monitor or Monitor(), line, gens)
    seen = []
    for k in (20, 50, 100):
        line.run_to(k)
        seen.append(sum(a.size for a in mon.readings["t"]))
    assert seen[0] < seen[1] < seen[2]
    sig = mon.signals()
    for key in ("t", "nir"):
        np.testing.assert_array_equal(np.concatenate(mon.readings[key]), sig[key])


# ------------------------------------------------------------- shut-down
# (docs/monitor.md#start-up-and-shut-down)
from cmsim.monitor.state import SHUTDOWN, evaluate_state_of_control  # noqa: E402
from cmsim.monitor.windows import cached_series  # noqa: E402

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


def _line_rtd():
    sc = load_scenario("scenarios/start_up_shut_down.toml")
    return cached_series(sc.blender.rtd.build(), sc.press.transfer_rtd.build(),
                         sc.press.feed_frame_rtd.build())


def _t_alpha():
    return float(_line_rtd().quantile(0.005))


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
    # the shut-down: every gate tick from the one containing stop + t_alpha
    k_sd = int(np.floor((3000.0 + ta) / dt))
    assert k_sd * dt <= 3000.0 + ta < (k_sd + 1) * dt
    assert r.diverted[k_sd:].all()
    # in control in between: nothing diverted from the end of the start-up to stop + t_alpha
    k_up = _start_up_end(r)
    assert k_up * dt >= T999
    assert not r.diverted[k_up:k_sd].any()
    # independent oracle: the offline evaluator's SHUTDOWN ticks (feed stop at 3000 s, delay =
    # t_alpha of the same RTD) are diverted from the monitor's first one on, and they start
    # within one tick of it
    t = np.arange(n) * dt
    off = evaluate_state_of_control(t, {}, line_model=_line_rtd(),
                                    feed_stops=[(3000.0, None)], alpha=0.005)
    sd = np.flatnonzero(off.state == SHUTDOWN)
    assert abs(sd[0] - k_sd) <= 1 and r.diverted[sd[sd >= k_sd]].all()
    s = r.summary()["tablets"]
    assert s["nonconforming_accepted"] == 0.0
    # diverted shut-down material = everything the gate emitted after stop + t_alpha
    acc = r.gate_flow.sum(axis=0)
    ev = [e for e in r.diversion_events if "shut_down" in e["trigger"]]
    assert len(ev) == 1 and ev[0]["start_s"] == k_sd * dt and ev[0]["end_s"] == n * dt
    assert ev[0]["mass_kg"] == pytest.approx(acc[k_sd:].sum() * dt, rel=1e-12)
    # audit trail: the start-up, the stop with its shut-down time
    stop = [e for e in r.event_log if e["type"] == "feed_stop"]
    assert len(stop) == 1 and stop[0]["data"]["stop_s"] == 3000.0
    assert stop[0]["data"]["t_alpha_s"] == pytest.approx(ta, rel=1e-9)
    assert stop[0]["data"]["shut_down_s"] == pytest.approx(3000.0 + ta, rel=1e-12)
    states = _state_events(r)
    assert [e["data"].get("reason") for e in states] == ["line started empty",
                                                          "start-up complete"]
    assert r.metadata["monitor"]["state_changes"][-1] == [k_sd * dt, False]


@pytest.mark.parametrize("how", ["feeder_step", "feeder_stop"])
def test_stop_and_restart_is_shut_down_plus_start_up(how):
    if how == "feeder_step":
        dist = _all_feeders("feeder_step", 1000.0, duration=600.0, mass_flow=0.0)
    else:
        dist = _all_feeders("feeder_stop", 1000.0, duration=600.0)
    r = cmsim.run(_sus(2400.0, dist))
    ta, dt = _t_alpha(), r.dt
    k_sd = int(np.floor((1000.0 + ta) / dt))  # the gate tick containing stop + t_alpha
    states = _state_events(r)
    kinds = [(e["data"].get("state"), e["data"].get("reason")) for e in states]
    assert kinds == [("start_up", "line started empty"), (None, "start-up complete"),
                     ("start_up", "feeding resumed"), (None, "start-up complete")]
    assert [e["time_s"] for e in r.event_log if e["type"] in ("feed_stop", "feed_restart")] \
        == [1000.0, 1600.0]
    t_ready = states[3]["time_s"]
    assert t_ready >= 1600.0 + T999  # the restart's start-up: settled, then PAT readings
    k_ready = int(np.ceil(t_ready / dt - 1e-9))
    # diverted continuously from stop + t_alpha until the restart's start-up is complete
    assert r.diverted[k_sd:k_ready].all()
    # in control (and not diverted) before the stop + t_alpha and after the new start-up
    k_up = _start_up_end(r)
    assert not r.diverted[k_up:k_sd].any()
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
    assert states == ["start_up", None, "start_up", None]
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
    assert "risk" in trig and "shut_down" not in trig


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
