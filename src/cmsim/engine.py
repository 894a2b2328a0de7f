"""Hybrid discrete-event engine: SimPy for the discrete happenings, chunks of ticks in between.

This is the only module of cmsim that imports :mod:`simpy`.

Design (docs/engine.md): every scheduled disturbance is a SimPy process that waits
for its start, applies its action, and (when it has an end) waits again and reverts it. Before
any action at time ``t`` the engine **syncs**: it advances the whole line in one chunk from its
current tick to ``round(t / dt)`` (:meth:`cmsim.line.Line.run_to`). The end of the run is a final
sync. There is no SimPy process per unit or per tick; between two events the units run whole
arrays (numba kernels carry their state between chunks). Because the units are chunk-invariant,
extra syncs (progress updates, ``extra_sync_s``) do not change the outputs.

Events happening inside a unit while it runs (automatic refills, an empty hopper) are collected
from the units' ``events`` lists after the run and merged, by time, into the event log
``{time_s, type, source, data}``. Simultaneous events keep a fixed order: scenario order of the
disturbances (SimPy processes events scheduled for the same time in creation order), engine
events before unit events at equal times.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import simpy

from cmsim.disturbances import Disturbance
from cmsim.errors import ParameterError
from cmsim.line import Line

__all__ = ["Engine", "ProgressCallback"]

#: ``callback(done_ticks, total_ticks)`` called after every sync.
ProgressCallback = Callable[[int, int], None]


def _sync_times(times: Iterable[float]) -> list[float]:
    """``times`` as floats [s]; ParameterError unless finite and >= 0 (a string is not read
    digit by digit)."""
    try:
        if isinstance(times, str):
            raise TypeError
        out = [float(t) for t in times]
    except (TypeError, ValueError):
        out = [math.nan]
    if not all(math.isfinite(t) and t >= 0.0 for t in out):
        raise ParameterError("extra_sync_s", times, "must be finite times >= 0 [s]")
    return out


class Engine:
    """Run a :class:`~cmsim.line.Line` with scheduled disturbances.

    Parameters
    ----------
    line : cmsim.line.Line
        The line, at tick 0.
    disturbances : sequence of Disturbance
        Scheduled disturbances.
    units : mapping of str to object, optional
        Targets of the disturbances (default: the line's nodes by name, feeders as
        ``"feeder.<name>"``).
    progress : callable, optional
        ``progress(done_ticks, total_ticks)``, called after every sync.
    sync_every_s : float, optional
        Also sync every this many seconds [s] (for progress display; no effect on results).
    extra_sync_s : iterable of float, optional
        Additional sync times [s] (no-op events; used to test chunk invariance).
    control_period_s : float, optional
        Also sync every this many seconds [s] so that the line's observers
        (``line.observers``, e.g. controllers acting every period) see a chunk boundary at every
        multiple of the period. Observers must be chunk-invariant themselves; this guarantees
        they get a boundary at least that often.

    Notes
    -----
    Observers may carry an ``events`` list (dicts ``{time_s, type, data}``, optionally
    ``source``); these are merged into the event log like the units' internal events.
    """

    def __init__(self, line: Line, disturbances: Sequence[Disturbance] = (), *,
                 units: dict[str, Any] | None = None, progress: ProgressCallback | None = None,
                 sync_every_s: float | None = None,
                 extra_sync_s: Iterable[float] = (),
                 control_period_s: float | None = None) -> None:
        self.line = line
        self.disturbances = list(disturbances)
        self.units = units if units is not None else {
            name: node.unit for name, node in line.nodes.items() if node.unit is not None}
        self.progress = progress
        if sync_every_s is not None and not sync_every_s > 0:
            raise ParameterError("sync_every_s", sync_every_s, "must be > 0")
        self.sync_every_s = sync_every_s
        if control_period_s is not None and not control_period_s > 0:
            raise ParameterError("control_period_s", control_period_s, "must be > 0")
        self.control_period_s = control_period_s
        self.extra_sync_s = sorted(_sync_times(extra_sync_s))
        self.duration_s = line.n_ticks * line.dt
        self.log: list[dict[str, Any]] = []
        self.n_syncs = 0

    # ------------------------------------------------------------------ helpers
    def tick_of(self, time_s: float) -> int:
        """Tick at which an event at ``time_s`` is applied: ``round(time_s / dt)`` [-]."""
        return min(self.line.n_ticks, max(0, int(round(time_s / self.line.dt))))

    def sync(self, time_s: float) -> int:
        """Advance the line in one chunk to the tick of ``time_s``; return that tick."""
        k = self.tick_of(time_s)
        if k > self.line.k:
            self.line.run_to(k)
            self.n_syncs += 1
            if self.progress is not None:
                self.progress(self.line.k, self.line.n_ticks)
        return self.line.k

    def _record(self, k: int, type_: str, source: str, data: dict[str, Any]) -> None:
        self.log.append({"time_s": k * self.line.dt, "type": type_, "source": source,
                         "data": data})

    # ------------------------------------------------------------------ processes
    def _disturbance(self, env: simpy.Environment, d: Disturbance):
        yield env.timeout(d.start_s)
        k = self.sync(env.now)
        data = d.apply(self.units)
        if not d.logs_itself:
            self._record(k, d.type, d.target, data)
        end = d.end_s
        if end is not None and end < self.duration_s:
            yield env.timeout(end - d.start_s)
            k = self.sync(env.now)
            self._record(k, d.end_type, d.target, d.revert(self.units))

    def _sync_at(self, env: simpy.Environment, times: Sequence[float]):
        for t in times:
            if t > env.now:
                yield env.timeout(t - env.now)
            self.sync(env.now)

    # ------------------------------------------------------------------ run
    def run(self) -> list[dict[str, Any]]:
        """Run to the end of the line's horizon; return the merged event log.

        Returns
        -------
        list of dict
            ``{time_s, type, source, data}`` sorted by time (stable).
        """
        env = simpy.Environment()
        for d in sorted(self.disturbances, key=lambda d: (d.start_s, d.index)):
            if d.start_s < self.duration_s:
                env.process(self._disturbance(env, d))
        syncs = [t for t in self.extra_sync_s if 0.0 < t < self.duration_s]
        for period in (self.sync_every_s, self.control_period_s):
            if period is not None:
                n = int(self.duration_s // period)
                syncs += [i * period for i in range(1, n + 1) if i * period < self.duration_s]
        if syncs:
            env.process(self._sync_at(env, sorted(syncs)))
        env.run(until=self.duration_s)
        self.sync(self.duration_s)
        self.line.run_to(self.line.n_ticks)
        return self.event_log()

    def event_log(self) -> list[dict[str, Any]]:
        """Engine events merged with the units' internal events, sorted by time."""
        events = [(e["time_s"], 0, i, e) for i, e in enumerate(self.log)]
        j = 0
        for name, node in self.line.nodes.items():
            for ev in getattr(node.unit, "events", None) or []:
                j += 1
                events.append((float(ev["time_s"]), 1, j,
                               {"time_s": float(ev["time_s"]), "type": ev["type"],
                                "source": name, "data": dict(ev.get("data") or {})}))
        for obs in self.line.observers:
            for ev in getattr(obs, "events", None) or []:
                j += 1
                src = ev.get("source") or getattr(obs, "name", type(obs).__name__)
                events.append((float(ev["time_s"]), 1, j,
                               {"time_s": float(ev["time_s"]), "type": ev["type"],
                                "source": src, "data": dict(ev.get("data") or {})}))
        events.sort(key=lambda x: (x[0], x[1], x[2]))
        return [e for *_, e in events]
