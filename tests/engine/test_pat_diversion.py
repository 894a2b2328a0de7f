"""Observer hook of the line (``line.observers``, ``divert_plan``, ``record``) and the engine's
``control_period_s``; PAT monitor and diversion through the engine."""

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
