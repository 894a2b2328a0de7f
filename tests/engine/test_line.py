"""Line wiring, mass balance, chunk invariance, purity and seeding of the hybrid engine."""

from __future__ import annotations

import glob
import pickle

import numpy as np
import pytest

import cmsim
from cmsim.api import rng_streams
from cmsim.errors import ParameterError, SimulationError
from cmsim.line import Line, Node, alignment_shift
from cmsim.streams import ChannelMap


def scenario(**sim):
    """Small noisy 3-feeder line with a stop, a step, a refill lot change and a press stop."""
    return {
        "name": "engine-test",
        "simulation": {"duration": "15 min", "dt": "1 s", "seed": 11, **sim},
        "feeders": [
            {"name": "api", "material": "API", "role": "api", "mass_flow": "2 kg/h",
             "lot": "A", "noise_rsd": 0.03,
             "hopper": {"capacity": "0.5 kg", "refill_rate": "0.02 kg/s",
                        "refill_low": 0.4, "refill_high": 0.8, "surge": 0.05}},
            {"name": "mcc", "material": "MCC", "mass_flow": "17.8 kg/h", "noise_rsd": 0.02},
            {"name": "mgst", "material": "MgSt", "mass_flow": "0.2 kg/h", "noise_rsd": 0.05},
        ],
        "blender": {"rtd": {"model": "tanks_in_series", "mean_residence_time": "60 s",
                            "n_tanks": 5}, "speed": 250},
        "press": {"transfer_rtd": {"model": "pfr", "delay": "10 s"},
                  "feed_frame_rtd": {"model": "cstr", "mean_residence_time": "30 s"},
                  "tablet_mass": "250 mg"},
        "disturbances": [
            {"type": "feeder_stop", "feeder": "api", "start": "120 s", "duration": "10 s"},
            {"type": "feeder_step", "feeder": "mcc", "start": "200.4 s", "mass_flow": "19 kg/h",
             "duration": "60 s"},
            {"type": "refill", "feeder": "api", "start": "300 s", "lot": "B"},
            {"type": "blender_speed", "start": "400 s", "speed": 150},
            {"type": "press_stop", "start": "500 s", "duration": "30 s"},
        ],
    }


# ---------------------------------------------------------------------------- wiring
def _cmap():
    return ChannelMap.from_lots({"A": ["1"]}, api_material="A")


class _Src:
    rows = np.array([0])
    fed = np.zeros(1)
    events: list = []

    def step(self, out, k0):
        out += 1.0
        self.fed = self.fed + out.sum(axis=1) * 1.0


def _nodes():
    return [Node("src", "source", _Src(), outputs=("out",)),
            Node("gate", "gate", None, inputs=("in",))]


def test_wiring_minimal_line_runs_and_balances():
    line = Line(_cmap(), 1.0, 5, _nodes(), {"gate.in": "src.out"}, shift=2)
    line.advance(3)
    line.advance(2)
    # two ticks sit in the alignment buffer
    assert line.flow[0].tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert line.holdup()[0] == pytest.approx(2.0)
    assert line.check_mass_balance() < 1e-15


@pytest.mark.parametrize("conn, rule", [
    ({}, "dangling input"),
    ({"gate.in": "src.nope"}, "no output port"),
    ({"gate.out": "src.out"}, "no input port"),
    ({"gate.in": "nowhere.out"}, "node in"),
])
def test_wiring_errors_name_the_port(conn, rule):
    with pytest.raises(ParameterError, match=rule):
        Line(_cmap(), 1.0, 5, _nodes(), conn)


def test_unused_output_and_duplicated_stream_and_cycle_rejected():
    two = [Node("src", "source", _Src(), outputs=("out", "extra")),
           Node("gate", "gate", None, inputs=("in",))]
    with pytest.raises(ParameterError, match=r"nodes\[src\].*'extra'.*unused output"):
        Line(_cmap(), 1.0, 5, two, {"gate.in": "src.out"})
    nodes = _nodes() + [Node("mix", "mixer", None, inputs=("a",), outputs=("out",))]
    with pytest.raises(ParameterError, match="duplicated"):
        Line(_cmap(), 1.0, 5, nodes, {"gate.in": "src.out", "mix.a": "src.out"})
    cyc = [Node("gate", "gate", None, inputs=("in",)),
           Node("s1", "stage", None, inputs=("in",), outputs=("out", "o2")),
           Node("s2", "stage", None, inputs=("in",), outputs=("out",))]
    with pytest.raises(ParameterError, match="cycle"):
        Line(_cmap(), 1.0, 5, cyc, {"gate.in": "s1.o2", "s1.in": "s2.out", "s2.in": "s1.out"})


def test_alignment_shift_rule():
    assert [alignment_shift(s) for s in range(6)] == [0, 1, 1, 2, 2, 3]
    with pytest.raises(ParameterError):
        alignment_shift(-1)


def test_broken_mass_balance_raises():
    class Leaky(_Src):
        def step(self, out, k0):
            out += 1.0
            self.fed = self.fed + 1.1 * out.sum(axis=1)

    line = Line(_cmap(), 1.0, 4, [Node("src", "source", Leaky(), outputs=("out",)),
                                  Node("gate", "gate", None, inputs=("in",))],
                {"gate.in": "src.out"})
    line.run_to(4)
    with pytest.raises(SimulationError, match="mass balance"):
        line.check_mass_balance()


# ---------------------------------------------------------------------------- whole runs
@pytest.fixture(scope="module")
def base_run():
    return cmsim.run(scenario())


def test_mass_balance_and_invariants(base_run):
    r = base_run
    assert r.mass_balance_max_rel_error < 1e-9
    cm = r.channel_mass
    lhs = cm["fed"] + cm["initial_holdup"]
    rhs = cm["accepted"] + cm["diverted"] + cm["holdup"]
    np.testing.assert_allclose(lhs, rhs, rtol=1e-9, atol=0)
    assert np.all(r.gate_flow >= -1e-15)
    ts = r.timeseries
    for m in r.materials:
        lots = [c for c in ts.columns if c.startswith(f"lot.{m}.")]
        flowing = r.component_flow(m) > 0
        np.testing.assert_allclose(ts.loc[flowing, lots].sum(axis=1), 1.0, atol=1e-12)
    frac = ts[[f"fraction.{m}" for m in r.materials]].sum(axis=1)
    np.testing.assert_allclose(frac[r.mass_flow > 0], 1.0, atol=1e-12)


def test_press_stop_makes_no_tablets_and_events_logged(base_run):
    r = base_run
    t = r.time_s
    stopped = (t >= 500) & (t < 530)
    # the alignment shift delays the gate by at most one tick: interior of the stop is empty
    assert np.all(r.tablets[stopped & (t >= 502)] == 0.0)
    types = list(r.events["type"])
    for ty in ("feeder_stop", "feeder_start", "feeder_step", "feeder_step_end",
               "blender_speed", "press_stop", "press_start", "refill_start", "refill_end"):
        assert ty in types, ty
    assert list(r.events["time_s"]) == sorted(r.events["time_s"])
    # an event at 200.4 s is applied at tick round(200.4 / 1) = 200
    step = r.events[r.events["type"] == "feeder_step"].iloc[0]
    assert step["time_s"] == 200.0


def test_tablets_equal_gate_mass_over_tablet_mass(base_run):
    r = base_run
    s = r.summary()
    gate_kg = sum(s["mass_kg"]["accepted"].values()) + sum(s["mass_kg"]["diverted"].values())
    assert s["tablets"]["produced"] == pytest.approx(gate_kg / 250e-6, rel=1e-12)
    assert s["tablets"]["accepted"] + s["tablets"]["diverted"] == pytest.approx(
        s["tablets"]["produced"], rel=1e-12)
    # nothing diverted without a diversion manager: every nonconforming tablet is accepted
    assert s["tablets"]["diverted"] == 0.0
    assert s["tablets"]["nonconforming_accepted"] == s["tablets"]["nonconforming_produced"]
    assert s["tablets"]["nonconforming_produced"] > 0  # the 10 s API stop leaves the spec


def test_extra_syncs_do_not_change_outputs(base_run):
    rng = np.random.default_rng(5)
    extra = rng.uniform(0, 900, size=40)
    r2 = cmsim.run(scenario(), extra_sync_s=extra)
    assert r2.metadata["n_syncs"] > base_run.metadata["n_syncs"] + 30
    np.testing.assert_allclose(r2.gate_flow, base_run.gate_flow, rtol=0, atol=1e-12 * 0.01)
    assert [e["type"] for e in r2.event_log] == [e["type"] for e in base_run.event_log]


def test_event_free_run_split_anywhere_is_identical():
    sc = scenario()
    sc["disturbances"] = []
    a = cmsim.run(sc)
    b = cmsim.run(sc, extra_sync_s=[1.0, 2.0, 3.0, 17.3, 450.0, 451.0, 899.0])
    assert np.max(np.abs(a.gate_flow - b.gate_flow)) < 1e-12 * np.max(a.gate_flow)


def test_run_is_pure_and_seed_matters(base_run):
    again = cmsim.run(scenario())
    assert np.array_equal(again.gate_flow, base_run.gate_flow)
    assert again.timeseries.equals(base_run.timeseries)
    other = cmsim.run(scenario(), seed=12)
    assert not np.array_equal(other.gate_flow, base_run.gate_flow)
    assert other.summary()["seed"] == 12 and base_run.summary()["seed"] == 11


def test_result_pickle_round_trip(base_run):
    base_run.timeseries  # noqa: B018 - fill the cache, which is not pickled
    r2 = pickle.loads(pickle.dumps(base_run))
    assert np.array_equal(r2.gate_flow, base_run.gate_flow)
    assert r2.summary() == base_run.summary()
    assert r2.timeseries.equals(base_run.timeseries)
    assert r2.lot_forward("API", "B") == base_run.lot_forward("API", "B")


def test_rng_streams_keyed_by_name_not_position():
    g1, info1 = rng_streams(7, ["feeder.b", "feeder.c"])
    g2, info2 = rng_streams(7, ["feeder.a", "feeder.b", "feeder.c", "pat"])
    for name in ("feeder.b", "feeder.c"):
        assert np.array_equal(g1[name].random(5), g2[name].random(5))
        assert info1["spawn_keys"][name] == info2["spawn_keys"][name]
    assert info1["entropy"] == 7
    assert not np.array_equal(g2["feeder.a"].random(5), g2["feeder.b"].random(5))
    _, fresh = rng_streams(None, ["x"])
    g3, _ = rng_streams(fresh["entropy"], ["x"])  # recorded entropy reproduces the run
    with pytest.raises(ParameterError, match="seed"):
        rng_streams(-1, ["x"])


SHIPPED = sorted(glob.glob("scenarios/*.toml"))


@pytest.mark.parametrize("path", SHIPPED or ["<none>"])
def test_shipped_scenarios_balance(path):
    if path == "<none>":
        pytest.skip("no shipped scenarios yet")
    config = pytest.importorskip("cmsim.config")
    sc = config.load_scenario(path)
    last = max([d.start for d in sc.disturbances] + [0.0])
    short = max(1800.0, last + 120.0)
    overrides = [f"simulation.duration={short} s"] if sc.simulation.duration > short else []
    r = cmsim.run(path, overrides=overrides)
    assert r.mass_balance_max_rel_error < 1e-9
    assert np.all(r.gate_flow >= -1e-15)
    assert r.n_ticks == round(min(short, sc.simulation.duration) / r.dt)
    np.testing.assert_allclose(r.channel_mass["fed"] + r.channel_mass["initial_holdup"],
                               r.channel_mass["accepted"] + r.channel_mass["diverted"]
                               + r.channel_mass["holdup"], rtol=1e-9)


def test_watched_port_gives_each_chunk_of_the_record_without_copying_the_run():
    """``Line.watch``: the per-chunk stream seen by an observer equals the chunk's rows of a
    full ``record`` of the same port, for any chunking."""
    from cmsim.config import load_scenario
    from cmsim.engine import Engine
    from cmsim.line import build_line, rng_source_names

    sc = load_scenario("scenarios/baseline.toml", overrides=["simulation.duration=20 min"])
    seen = []

    class _Obs:
        def on_chunk(self, line, k0, k1):
            v = line.chunk_stream("blender.out")
            assert v.shape == (line.channel_map.n_channels, k1 - k0)
            seen.append((k0, k1, v.copy()))

    for syncs in ([], [1.5, 100.0, 333.3, 700.0]):
        seen.clear()
        rng = {n: np.random.default_rng(i) for i, n in enumerate(rng_source_names(sc))}
        line = build_line(sc, rng)
        line.watch("blender.out")
        rec = line.record("blender.out")
        line.observers.append(_Obs())
        Engine(line, extra_sync_s=syncs).run()
        assert [(a, b) for a, b, _ in seen][-1][1] == line.n_ticks
        assert len(seen) == len(syncs) + 1
        for k0, k1, v in seen:
            np.testing.assert_array_equal(v, rec[:, k0:k1])
        assert "blender.out" in line.chunk_streams and "press.out" not in line.chunk_streams


def test_watch_and_chunk_stream_name_bad_ports():
    from cmsim.config import load_scenario
    from cmsim.line import build_line, rng_source_names

    sc = load_scenario("scenarios/baseline.toml", overrides=["simulation.duration=1 min"])
    line = build_line(sc, {n: np.random.default_rng(0) for n in rng_source_names(sc)})
    with pytest.raises(ParameterError, match="port"):
        line.watch("blender.nope")
    with pytest.raises(ParameterError, match="not watched"):
        line.chunk_stream("press.out")
