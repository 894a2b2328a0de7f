"""Stepped SimPy reference of the line: one SimPy process per unit, advancing every tick.

This is the textbook discrete-event formulation that the hybrid engine replaces
(docs/engine.md: 12-87x slower). It builds the *same* unit objects as :func:`cmsim.line.
build_line` (same kernels and recursions, same seeds) and the same disturbance actions, but
advances every unit one tick at a time from its own SimPy process: per tick, each feeder
process writes a ``(n_channels, 1)`` chunk, the mixer sums, blender and press step one tick,
and the gate applies the same integer alignment shift with a plain Python deque. Units are
chunk-invariant, so the outlet trace must equal the hybrid engine's to rounding.

Ordering within a tick: disturbance processes are created before the unit processes, so an
action at tick ``k`` (time ``round(t/dt) dt``) fires before the units step tick ``k`` (SimPy
processes same-time events in scheduling order), as in the hybrid engine's sync-then-apply.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import simpy

from cmsim import disturbances as dist
from cmsim.api import rng_streams
from cmsim.config import load_scenario
from cmsim.line import build_line, rng_source_names


def run_stepped(scenario: Any, seed: int | None = None,
                overrides: list[str] | None = None) -> np.ndarray:
    """Run a scenario with the stepped reference; return the gate flows (n_channels, n)."""
    sc = load_scenario(scenario, overrides=overrides)
    gens, _ = rng_streams(seed if seed is not None else sc.simulation.seed,
                          rng_source_names(sc))
    line = build_line(sc, gens)
    dt, n = line.dt, line.n_ticks
    nc = line.channel_map.n_channels
    units = {name: node.unit for name, node in line.nodes.items() if node.unit is not None}
    feeders = [node.unit for node in line.sources]
    blender, press = units["blender"], units["press"]
    gate = np.zeros((nc, n))
    shift = deque(line._buffer.T.copy()) if line.shift else deque()
    env = simpy.Environment()
    cur: dict[str, np.ndarray] = {}

    def disturbance(d: dist.Disturbance):
        k = round(d.start_s / dt)
        if k >= n:
            return
        yield env.timeout(k * dt)
        d.apply(units)
        if d.end_s is not None:
            k_end = round(d.end_s / dt)
            if k_end < n:
                yield env.timeout(k_end * dt - env.now)
                d.revert(units)

    def feeder_proc(f):
        for k in range(n):
            out = np.zeros((nc, 1))
            f.step(out, k)
            cur["mix"] = out if "mix" not in cur else cur["mix"] + out
            yield env.timeout(dt)

    def stage_proc(unit, src, dst):
        for _ in range(n):
            cur[dst] = unit.step(cur.pop(src))
            yield env.timeout(dt)

    def gate_proc():
        for k in range(n):
            col = cur.pop("press")[:, 0]
            if shift:
                shift.append(col.copy())
                col = shift.popleft()
            gate[:, k] = col
            yield env.timeout(dt)

    for d in sorted(dist.from_scenario(sc.disturbances, sc.feeders),
                    key=lambda d: (d.start_s, d.index)):
        env.process(disturbance(d))
    for f in feeders:
        env.process(feeder_proc(f))
    env.process(stage_proc(blender, "mix", "blender"))
    env.process(stage_proc(press, "blender", "press"))
    env.process(gate_proc())
    env.run()
    return gate
