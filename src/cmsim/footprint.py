"""Will a run fit in memory? A lower bound of what it needs, named by the field that sets it.

A run keeps per-tick records of its whole length, and its stages, monitor and controllers keep
state that grows with their times: a residence time's reach, a plug-flow delay, the NIR
latency, the gate delay, the load-cell period and window, a feeder controller's load-cell
window. A value typed in the wrong unit (``1e9 s``) asks for hundreds of GiB; without this
check numpy fails part way (or the operating system ends the process). :func:`memory_problems`
adds up a lower bound of each part and, above the memory of the machine (or of its container),
reports the field with the largest part. The scenario is read duck-typed (this module imports
no configuration code).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from cmsim.disturbances import scenario_field
from cmsim.unitops.stage import speed_capable

__all__ = ["BYTES_PER_STATE_TICK_CHANNEL", "BYTES_PER_TICK", "BYTES_PER_TICK_CHANNEL",
           "machine_memory", "memory_problems"]

#: Bytes a run keeps per tick at least: per channel (gate flow, line records) and besides
#: (diversion masks, set points, feeder and monitor signals). A lower bound of measured runs
#: (about 500 bytes per tick with 3 channels and the monitor), so a refused run never fits.
BYTES_PER_TICK_CHANNEL = 8
BYTES_PER_TICK = 80
#: State of a stage and of the monitor's kernels: two float64 values per channel and tick of
#: the residence time's reach (mean + 30 standard deviations, beyond its 1e-12 tail).
BYTES_PER_STATE_TICK_CHANNEL = 16
#: The monitor's state per tick of a time setting: its estimator's delay line holds four
#: float64 rows over the NIR lag and eight gate delays; the load-cell response of one period
#: spans 14 periods; the load-cell window holds one int64 per weighing.
_RING_ROWS, _GATE_DELAYS, _LOAD_CELL_SPAN = 4, 8, 14


def machine_memory() -> float | None:
    """Physical memory this process may use [bytes]: the machine's RAM, or the container's
    (cgroup v2 ``memory.max``) limit where that is lower; None where unknown."""
    try:
        total = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, float(limit))
    except OSError:
        pass
    return total if total > 0 else None


def _gib(n_bytes: float) -> str:
    gib = n_bytes / 2**30
    return f"{gib:,.1f} GiB" if gib < 1e6 else f"{gib:.3g} GiB"


def _reach(model: Any) -> float:
    """Mean + 30 standard deviations of an RTD [s] (beyond its 1e-12 tail)."""
    return float(model.mean) + 30.0 * math.sqrt(max(float(model.variance), 0.0))



def _slowest_blender(scenario: Any, speeds: list[tuple[str, float]] | None
                     ) -> tuple[str, float, float] | None:
    """The slowest blender speed of ``speeds`` ((field path, speed [rpm]); default: the
    scenario's ``blender_speed`` disturbances): (path, speed [rpm], factor of the blender's
    tank times), where it slows the blender; else None."""
    nominal = getattr(scenario.blender, "speed", None)
    if speeds is None:
        speeds = [(f"disturbances[{i}].speed", float(scenario_field(d, "speed")))
                  for i, d in enumerate(scenario.disturbances)
                  if scenario_field(d, "type") == "blender_speed"]
    if nominal is None or not speeds:
        return None
    path, speed = min(speeds, key=lambda x: x[1])
    log_factor = float(scenario.blender.speed_exponent) * math.log(float(nominal) / speed)
    if log_factor <= 0.0:
        return None
    return path, speed, math.exp(min(log_factor, 700.0))


def _parts(scenario: Any, dt: float, n_ticks: int, n_channels: int, models: Any,
           speeds: list[tuple[str, float]] | None) -> dict[str, tuple[str, float]]:
    """``{field path: (value as shown, bytes [B])}``: the lower bound of each part."""
    state = BYTES_PER_STATE_TICK_CHANNEL * n_channels / dt
    parts = {"simulation.duration": (
        f"{n_ticks * dt:g} s", n_ticks * (BYTES_PER_TICK + BYTES_PER_TICK_CHANNEL * n_channels))}
    for path, model in models.by_path().items():
        parts[path] = (f"reaches {_reach(model):.4g} s", _reach(model) * state)
    slowest = _slowest_blender(scenario, speeds)
    if slowest is not None:  # a slower blender holds its material longer
        where, speed, factor = slowest
        blender = models.blender
        tanks = [m for m in getattr(blender, "stages", (blender,)) if speed_capable(m)]
        parts[where] = (f"{speed:g} rpm", (factor - 1.0) * sum(map(_reach, tanks)) * state)
    ring = 8.0 * _RING_ROWS / dt
    gate_delay = scenario_field(scenario.press, "gate_delay")
    times = {"press.gate_delay": (gate_delay, ring * _GATE_DELAYS)}
    pat, mon = getattr(scenario, "pat", None), getattr(scenario, "monitor", None)
    if pat is not None:
        times["pat.latency"] = (scenario_field(pat, "latency"), ring)
        times["pat.integration_time"] = (scenario_field(pat, "integration_time"), ring / 2.0)
    if mon is not None:
        period = scenario_field(mon, "load_cell_period") or 0.0
        times["monitor.load_cell_period"] = (period, 8.0 * _LOAD_CELL_SPAN / dt)
        times["monitor.load_cell_window"] = (scenario_field(mon, "load_cell_window"),
                                             8.0 / max(float(period), dt))
    ctl = getattr(scenario, "control", None)
    pi = getattr(ctl, "feeder_pi", None) if ctl is not None else None
    if pi is not None:  # each controlled feeder's load-cell ring: a float and an index per tick
        n = len(scenario_field(pi, "feeders") or scenario.feeders)
        times["control.feeder_pi.window"] = (scenario_field(pi, "window"), 16.0 * n / dt)
    for path, (value, per_second) in times.items():
        if value is not None:
            parts[path] = (f"{float(value):g} s", float(value) * per_second)
    return parts


def memory_problems(scenario: Any, dt: float, n_ticks: int, n_channels: int, models: Any,
                    limit: float | None = None,
                    speeds: list[tuple[str, float]] | None = None
                    ) -> list[tuple[str, Any, str]]:
    """A run that cannot fit in memory, named by the field with the largest part.

    Parameters
    ----------
    scenario : cmsim.config.Scenario
        Validated scenario (SI values).
    dt : float
        Time step [s].
    n_ticks : int
        Ticks of the run [-].
    n_channels : int
        Channels of the line's streams [-].
    models : cmsim.assembly.LineModels
        The residence-time models.
    limit : float, optional
        Memory available [bytes] (default :func:`machine_memory`; no check where unknown).
    speeds : list of (str, float), optional
        Blender speeds [rpm] the run will see, with the field that sets each (default: the
        scenario's ``blender_speed`` disturbances).

    Returns
    -------
    list of (field path, value, rule)
        Empty when the run fits; else one problem, for the field with the largest part.
    """
    limit = machine_memory() if limit is None else float(limit)
    if limit is None:
        return []
    parts = _parts(scenario, dt, n_ticks, n_channels, models, speeds)
    total = math.fsum(b for _, b in parts.values())
    if total <= limit:
        return []
    path = max(parts, key=lambda p: parts[p][1])
    value, part = parts[path]
    fix = ("shorten the run or take a longer dt" if path == "simulation.duration"
           else "check the value's unit, or take a longer dt")
    return [(path, value,
             f"at dt = {dt:g} s this part of the run needs at least {_gib(part)} "
             f"({_gib(total)} in all); this machine has {_gib(limit)}: {fix}")]
