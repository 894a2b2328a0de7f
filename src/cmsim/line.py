"""The flowsheet: unit operations wired by named ports and advanced chunk by chunk.

A :class:`Line` is a directed acyclic graph of nodes with named ports::

    feeder.<name>.out ──► mix.<name>          (one mixer input per feeder)
    mix.out ──► blender.in ;  blender.out ──► press.in ;  press.out ──► gate.in

The order of evaluation comes from :class:`graphlib.TopologicalSorter`; wiring is checked when
the line is built: every input port must be connected exactly once, every output port must feed
exactly one input (a stream cannot be duplicated without breaking the mass balance), unknown
nodes or ports and cycles are rejected (:class:`cmsim.errors.ParameterError`).

:meth:`Line.advance` pushes **one chunk** of ``n`` ticks through every unit in that order and
stores the gate outflow (``(n_channels, n)``, kg/s) and the gate position (diverted mask) into
arrays preallocated for the whole run. Units carry their state between chunks, so any chunking
gives the same result (to rounding).

Time-stamp convention
---------------------
Tick ``k`` covers ``[k dt, (k+1) dt)``; feeders deliver tick averages (zero-order hold). Gate row
``k`` has ``time_s = k dt`` and holds the **tick-average outflow over** ``[k dt, (k+1) dt)``.

A dispersive stage realised by a bin kernel ``w[j] = F((j+1)dt) - F(j dt)`` (or by a recursive
filter with that impulse response) returns in ``y[k]`` the exact *instantaneous* outflow at
``(k+1) dt``, i.e. a value that the tick-average convention would file half a tick later: its
discrete mean delay is ``tau - dt/2`` instead of ``tau``. A chain of ``S`` such stages is
therefore ``S/2`` ticks early. Pure delays (plug flow realised as an integer shift of
``round(delay/dt)`` ticks) are exact in tick-average terms and add nothing. The line compensates
with an integer shift of ``floor(S/2 + 1/2)`` ticks, an alignment buffer in front of the gate
(whose contents are counted as line hold-up). The residual timing error is 0 for even ``S``
(e.g. blender + feed frame) and ``dt/2`` for odd ``S``, plus the plug-flow rounding; a step's
50 % crossing at the gate (tick averages read at the tick midpoints) then matches
``t0 + Series(stages).quantile(0.5)`` to within ``dt/2`` (tested).

Mass balance
------------
Per channel and per component: ``fed + initial hold-up = accepted + diverted + hold-up`` where
``fed`` is what the feeders discharged, ``accepted``/``diverted`` the gate outflow integrated
over the ticks with the gate in product/waste position, and hold-up the mass inside the units
plus the alignment buffer. :meth:`Line.mass_balance` returns the largest relative error;
:meth:`Line.check_mass_balance` raises :class:`cmsim.errors.SimulationError` above ``1e-9``.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cmsim.assembly import RunAssembly, assemble
from cmsim.errors import ParameterError, SimulationError
from cmsim.streams import ChannelMap
from cmsim.unitops.stage import alignment_shift  # re-exported: part of this module's API

__all__ = ["MASS_BALANCE_RTOL", "Line", "Node", "alignment_shift", "build_line"]

#: Relative tolerance of the per-component mass balance checked at the end of every run.
MASS_BALANCE_RTOL = 1e-9


@dataclass
class Node:
    """A node of the flowsheet.

    Parameters
    ----------
    name : str
        Unique node name (``"feeder.api"``, ``"mix"``, ``"blender"``, ``"press"``, ``"gate"``).
    kind : {"source", "mixer", "stage", "gate"}
        ``source``: ``unit.step(out, k0)`` adds its flows into ``out``; ``mixer``: sums its
        inputs; ``stage``: ``unit.step(inflow) -> outflow``; ``gate``: the end of the line.
    unit : object, optional
        The unit operation (sources and stages).
    inputs, outputs : tuple of str
        Port names.
    """

    name: str
    kind: str
    unit: Any = None
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    _in_src: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)


class Line:
    """Flowsheet of unit operations advanced in chunks of ticks.

    Parameters
    ----------
    channel_map : cmsim.streams.ChannelMap
        Channel layout of every stream.
    dt : float
        Tick length [s].
    n_ticks : int
        Length of the run [ticks]; gate arrays are preallocated for it.
    nodes : sequence of Node
        The nodes (exactly one of kind ``gate``).
    connections : mapping of str to str
        ``{"dst_node.in_port": "src_node.out_port"}``.
    shift : int
        Alignment shift in front of the gate [ticks] (:func:`alignment_shift`).
    initial_gate_flow : ndarray, shape (n_channels,), optional
        Flow [kg/s] that fills the alignment buffer at start (steady initial state).
    tablet_mass : float, optional
        Nominal tablet mass [kg] (carried for results).
    """

    def __init__(self, channel_map: ChannelMap, dt: float, n_ticks: int,
                 nodes: Sequence[Node], connections: Mapping[str, str], *, shift: int = 0,
                 initial_gate_flow: np.ndarray | None = None) -> None:
        if not isinstance(channel_map, ChannelMap):
            raise ParameterError("channel_map", channel_map, "must be a cmsim.streams.ChannelMap")
        self.channel_map = channel_map
        self.dt = float(dt)
        if isinstance(n_ticks, bool) or int(n_ticks) != n_ticks or n_ticks < 0:
            raise ParameterError("n_ticks", n_ticks, "must be an integer >= 0")
        self.n_ticks = int(n_ticks)
        self.nodes = {}
        for node in nodes:
            if node.name in self.nodes:
                raise ParameterError("nodes", node.name, "node names must be unique")
            if node.kind not in ("source", "mixer", "stage", "gate"):
                raise ParameterError(f"nodes[{node.name}].kind", node.kind,
                                     "must be 'source', 'mixer', 'stage' or 'gate'")
            self.nodes[node.name] = node
        gates = [n for n in self.nodes.values() if n.kind == "gate"]
        if len(gates) != 1:
            raise ParameterError("nodes", [n.name for n in gates], "need exactly one gate node")
        self.gate = gates[0]
        self.order = self._wire(dict(connections))
        self.sources = [self.nodes[n] for n in self.order if self.nodes[n].kind == "source"]
        self.stages = [self.nodes[n] for n in self.order if self.nodes[n].kind == "stage"]
        nc = channel_map.n_channels
        if isinstance(shift, bool) or int(shift) != shift or shift < 0:
            raise ParameterError("shift", shift, "must be an integer >= 0")
        self.shift = int(shift)
        self._buffer = np.zeros((nc, self.shift))
        if initial_gate_flow is not None and self.shift:
            self._buffer[:] = np.asarray(initial_gate_flow, dtype=np.float64)[:, None]
        self.flow = np.zeros((nc, self.n_ticks))
        self.diverted = np.zeros(self.n_ticks, dtype=bool)
        self.divert = False
        #: Per-tick diversion requests [bool] (the gate diverts tick ``k`` when ``divert`` is set
        #: while it is computed *or* ``divert_plan[k]``). Observers (the diversion manager) may
        #: set entries for ticks ``>= k0`` of the chunk they observe (never retroactively
        #: before their decision time); :meth:`advance` applies them after the observers ran.
        self.divert_plan = np.zeros(self.n_ticks, dtype=bool)
        #: Objects with ``on_chunk(line, k0, k1)``, called in list order after every advanced
        #: chunk ``[k0, k1)`` (monitor, diversion manager, controllers). An observer may change
        #: unit set points (effective from tick ``k1``) and ``divert_plan``.
        self.observers: list[Any] = []
        #: Optional per-tick records of internal streams, ``{"<node>.<port>": (n_channels,
        #: n_ticks) array}``; enable with :meth:`record`.
        self.records: dict[str, np.ndarray] = {}
        #: Outflow of each watched port over the last advanced chunk, ``{"<node>.<port>":
        #: (n_channels, k1 - k0) array}`` [kg/s] (the stream the line computed, no copy);
        #: valid while the observers of that chunk run. Enable with :meth:`watch`.
        self.chunk_streams: dict[str, np.ndarray] = {}
        self._watched: set[tuple[str, str]] = set()
        self.k = 0
        self.initial_holdup = self.holdup()

    # ------------------------------------------------------------------ wiring
    def _wire(self, connections: dict[str, str]) -> list[str]:
        def split(ref: str, what: str) -> tuple[str, str]:
            node, sep, port = str(ref).rpartition(".")
            if not sep or node not in self.nodes:
                raise ParameterError(f"connections[{what}]", ref,
                                     f"must be '<node>.<port>' with node in {list(self.nodes)}")
            return node, port

        used_outputs: dict[tuple[str, str], str] = {}
        graph: dict[str, set[str]] = {name: set() for name in self.nodes}
        for dst, src in connections.items():
            dn, dp = split(dst, dst)
            sn, sp = split(src, dst)
            if dp not in self.nodes[dn].inputs:
                raise ParameterError(f"connections[{dst}]", dst,
                                     f"{dn!r} has no input port {dp!r} "
                                     f"(inputs: {self.nodes[dn].inputs})")
            if sp not in self.nodes[sn].outputs:
                raise ParameterError(f"connections[{dst}]", src,
                                     f"{sn!r} has no output port {sp!r} "
                                     f"(outputs: {self.nodes[sn].outputs})")
            if (sn, sp) in used_outputs:
                raise ParameterError(f"connections[{dst}]", src,
                                     f"output already feeds {used_outputs[(sn, sp)]!r}; a stream "
                                     "cannot be duplicated")
            used_outputs[(sn, sp)] = dst
            self.nodes[dn]._in_src[dp] = (sn, sp)
            graph[dn].add(sn)
        for node in self.nodes.values():
            missing = [p for p in node.inputs if p not in node._in_src]
            if missing:
                raise ParameterError(f"nodes[{node.name}]", missing, "dangling input port(s)")
        for node in self.nodes.values():
            unused = [p for p in node.outputs if (node.name, p) not in used_outputs]
            if unused:
                raise ParameterError(f"nodes[{node.name}]", unused, "unused output port(s)")
        try:
            return list(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as exc:
            raise ParameterError("connections", exc.args[1], "the flowsheet has a cycle") from None

    # ------------------------------------------------------------------ stepping
    @property
    def time_s(self) -> float:
        """Current time ``k dt`` [s] (start of the next tick to compute)."""
        return self.k * self.dt

    def advance(self, n: int) -> None:
        """Advance every unit by ``n`` ticks in one chunk and record the gate outflow.

        Parameters
        ----------
        n : int
            Ticks to advance, ``0 <= n <= n_ticks - k``.
        """
        n = int(n)
        if n < 0 or self.k + n > self.n_ticks:
            raise ParameterError("n", n, f"must be in [0, {self.n_ticks - self.k}]")
        if n == 0:
            return
        k0 = self.k
        nc = self.channel_map.n_channels
        streams: dict[tuple[str, str], np.ndarray] = {}
        for name in self.order:
            node = self.nodes[name]
            kind = node.kind
            if kind == "source":
                out = np.zeros((nc, n))
                node.unit.step(out, k0)
                streams[(name, node.outputs[0])] = out
            elif kind == "mixer":
                it = iter(node.inputs)
                out = streams.pop(node._in_src[next(it)]).copy()
                for p in it:
                    out += streams.pop(node._in_src[p])
                streams[(name, node.outputs[0])] = out
            elif kind == "stage":
                inflow = streams.pop(node._in_src[node.inputs[0]])
                streams[(name, node.outputs[0])] = np.asarray(node.unit.step(inflow))
            else:  # gate
                inflow = streams.pop(node._in_src[node.inputs[0]])
                self._gate(inflow, k0, n)
                continue
            if self._watched:
                for port in node.outputs:
                    if (name, port) in self._watched:
                        self.chunk_streams[f"{name}.{port}"] = streams[(name, port)]
            if self.records:
                for port in node.outputs:
                    rec = self.records.get(f"{name}.{port}")
                    if rec is not None:
                        rec[:, k0:k0 + n] = streams[(name, port)]
        self.k = k0 + n
        for obs in self.observers:
            obs.on_chunk(self, k0, k0 + n)
        self.diverted[k0:k0 + n] |= self.divert_plan[k0:k0 + n]

    def watch(self, port: str) -> None:
        """Keep the per-chunk outflow of ``"<node>.<port>"`` for the observers.

        After every chunk ``[k0, k1)``, ``chunk_streams[port]`` (or :meth:`chunk_stream`) is
        the ``(n_channels, k1 - k0)`` outflow [kg/s] the port produced in that chunk: the
        array the line computed (no per-tick record of the whole run, no copy). Observers
        must read it in ``on_chunk`` and not write into it; keep a copy to retain it.

        Parameters
        ----------
        port : str
            Output port reference, ``"<node>.<port>"``.
        """
        node, _, p = str(port).rpartition(".")
        if node not in self.nodes or p not in self.nodes[node].outputs:
            raise ParameterError("port", port, "must name an output port '<node>.<port>'")
        self._watched.add((node, p))

    def chunk_stream(self, port: str) -> np.ndarray:
        """Outflow [kg/s] of the watched ``port`` over the last advanced chunk.

        Parameters
        ----------
        port : str
            Output port reference given to :meth:`watch`.

        Returns
        -------
        ndarray, shape (n_channels, k1 - k0)
            Row ``j`` is tick ``k0 + j`` of the chunk (same values as row ``k0 + j`` of a
            :meth:`record` of that port).
        """
        try:
            return self.chunk_streams[port]
        except KeyError:
            raise ParameterError("port", port, "is not watched (Line.watch) or no chunk has "
                                 "been advanced yet") from None

    def record(self, port: str) -> np.ndarray:
        """Record the per-tick outflow of ``"<node>.<port>"`` (e.g. ``"blender.out"``).

        Parameters
        ----------
        port : str
            Output port reference, ``"<node>.<port>"``.

        Returns
        -------
        ndarray, shape (n_channels, n_ticks)
            The record [kg/s], filled as the line advances (row ``k`` is the output the stage
            produced for input ticks ``<= k``, see the time-stamp convention).
        """
        node, _, p = str(port).rpartition(".")
        if node not in self.nodes or p not in self.nodes[node].outputs:
            raise ParameterError("port", port, "must name an output port '<node>.<port>'")
        if port not in self.records:
            if self.k:
                raise ParameterError("port", port, "must be recorded from tick 0")
            self.records[port] = np.zeros((self.channel_map.n_channels, self.n_ticks))
        return self.records[port]

    def _gate(self, inflow: np.ndarray, k0: int, n: int) -> None:
        s = self.shift
        dst = self.flow[:, k0:k0 + n]
        if s == 0:
            dst[:] = inflow
        elif n >= s:
            dst[:, :s] = self._buffer
            dst[:, s:] = inflow[:, :n - s]
            self._buffer = inflow[:, n - s:].copy()
        else:
            dst[:] = self._buffer[:, :n]
            self._buffer = np.concatenate((self._buffer[:, n:], inflow), axis=1)
        self.diverted[k0:k0 + n] = self.divert | self.divert_plan[k0:k0 + n]

    def run_to(self, k: int) -> None:
        """Advance (in one chunk) to tick ``k`` (no-op if already there)."""
        k = min(int(k), self.n_ticks)
        if k > self.k:
            self.advance(k - self.k)

    # ------------------------------------------------------------------ bookkeeping
    def fed(self) -> np.ndarray:
        """Mass discharged by the feeders so far per channel [kg]."""
        out = np.zeros(self.channel_map.n_channels)
        for node in self.sources:
            fed = np.asarray(node.unit.fed, dtype=np.float64)
            if fed.shape == out.shape:  # per stream channel
                out += fed
            else:  # per lot of the feeder's material, rows given by unit.rows
                out[np.asarray(node.unit.rows)] += fed
        return out

    def holdup(self) -> np.ndarray:
        """Mass inside the line (units and alignment buffer) per channel [kg]."""
        out = self._buffer.sum(axis=1) * self.dt
        for node in self.stages:
            out = out + np.asarray(node.unit.holdup, dtype=np.float64)
        return out

    def gate_mass(self) -> tuple[np.ndarray, np.ndarray]:
        """Accepted and diverted mass so far per channel [kg]."""
        flow = self.flow[:, :self.k]
        div = self.diverted[:self.k]
        return flow[:, ~div].sum(axis=1) * self.dt, flow[:, div].sum(axis=1) * self.dt

    def channel_masses(self) -> dict[str, np.ndarray]:
        """``fed``, ``accepted``, ``diverted``, ``holdup``, ``initial_holdup`` per channel [kg]."""
        acc, div = self.gate_mass()
        return {"fed": self.fed(), "accepted": acc, "diverted": div, "holdup": self.holdup(),
                "initial_holdup": np.asarray(self.initial_holdup, dtype=np.float64).copy()}

    def component_masses(self, masses: Mapping[str, np.ndarray] | None = None
                         ) -> dict[str, dict[str, float]]:
        """The channel masses (``masses``, default :meth:`channel_masses`) summed per material:
        ``{key: {material: kg}}``."""
        cm = self.channel_masses() if masses is None else masses
        return {key: {m: float(v[self.channel_map.material_rows(m)].sum())
                      for m in self.channel_map.materials} for key, v in cm.items()}

    def mass_balance(self, masses: Mapping[str, np.ndarray] | None = None) -> float:
        """Largest per-component relative error of the mass balance [-].

        ``|fed + initial - accepted - diverted - holdup| / max(fed + initial, tiny)`` per
        material; 0 for materials that never entered the line. ``masses``: the
        :meth:`channel_masses` already taken (default: taken here).
        """
        comp = self.component_masses(masses)
        worst = 0.0
        for m in self.channel_map.materials:
            inn = comp["fed"][m] + comp["initial_holdup"][m]
            out = comp["accepted"][m] + comp["diverted"][m] + comp["holdup"][m]
            scale = max(abs(inn), abs(out))
            if scale > 0.0:
                worst = max(worst, abs(inn - out) / scale)
        return worst

    def check_mass_balance(self, rtol: float = MASS_BALANCE_RTOL,
                           masses: Mapping[str, np.ndarray] | None = None) -> float:
        """Return :meth:`mass_balance`; raise SimulationError above ``rtol``."""
        err = self.mass_balance(masses)
        if not err <= rtol:
            comp = self.component_masses(masses)
            raise SimulationError(f"mass balance broken: max relative error {err:.3e} > {rtol:g}"
                                  f" (per component [kg]: {comp})")
        if np.any(self.flow[:, :self.k] < -1e-12 * max(1.0, float(np.abs(self.flow).max()))):
            raise SimulationError("negative flow at the gate")
        return err


def _hopper(table: Any) -> Any:
    from cmsim.unitops import Hopper  # noqa: PLC0415

    if table is None:
        return None
    return Hopper(capacity=table.capacity, initial_mass=table.initial,
                  refill_low=table.refill_low, refill_high=table.refill_high,
                  refill_rate=table.refill_rate, settle_time=table.settle_time,
                  surge=table.surge, surge_decay=table.surge_decay, mixing=table.mixing,
                  level_coefficient=table.level_coefficient)


def rng_source_names(scenario: Any) -> list[str]:
    """Names of the stochastic sources of a scenario's line, sorted (``feeder.<name>``)."""
    return sorted(f"feeder.{f.name}" for f in scenario.feeders)


def build_line(scenario: Any, rng_streams: Mapping[str, np.random.Generator], *,
               tail: float = 1e-12, assembly: RunAssembly | None = None) -> Line:
    """Build the line of a validated scenario.

    Parameters
    ----------
    scenario : cmsim.config.Scenario
        Validated scenario (SI values).
    rng_streams : mapping of str to numpy.random.Generator
        One generator per stochastic source, keyed by the names of :func:`rng_source_names`.
    tail : float
        Truncation level of convolution kernels [-] (below the trace epsilon).
    assembly : cmsim.assembly.RunAssembly, optional
        The scenario already assembled (:func:`cmsim.assembly.assemble`); assembled here when
        not given.

    Returns
    -------
    Line
        At tick 0; for ``simulation.initial_state = "steady"`` every stage holds the steady
        state of the nominal feeder flows (initial lots), else the line starts empty.
    """
    from cmsim.unitops import ContinuousBlender, LossInWeightFeeder, TabletPress  # noqa: PLC0415

    sim = scenario.simulation
    asm = assembly if assembly is not None else assemble(scenario)
    dt, n_ticks, cmap = asm.dt, asm.n_ticks, asm.channel_map
    nc = cmap.n_channels
    nodes: list[Node] = []
    connections: dict[str, str] = {}
    steady = np.zeros(nc)
    for f in scenario.feeders:
        tc = float(f.noise_correlation_time)
        feeder = LossInWeightFeeder(
            f.name, f.material, f.mass_flow, cmap, f.lot, dt, n_ticks=n_ticks,
            rng=rng_streams.get(f"feeder.{f.name}"), noise_rsd=f.noise_rsd,
            noise_correlation_time=tc if tc > 0 else dt * 1e-9,  # 0 = white noise
            hopper=_hopper(f.hopper))
        nodes.append(Node(f"feeder.{f.name}", "source", feeder, outputs=("out",)))
        connections[f"mix.{f.name}"] = f"feeder.{f.name}.out"
        steady[cmap.index(f.material, f.lot)] += f.mass_flow
    nodes.append(Node("mix", "mixer", None, inputs=tuple(f.name for f in scenario.feeders),
                      outputs=("out",)))
    b = scenario.blender
    blender = ContinuousBlender(asm.models.blender, dt, nc, speed=b.speed,
                                speed_exponent=b.speed_exponent, tail=tail)
    p = scenario.press
    press = TabletPress(asm.models.transfer, asm.models.feed_frame, p.tablet_mass, dt, nc,
                        gate_delay=p.gate_delay, tail=tail)
    nodes.append(Node("blender", "stage", blender, inputs=("in",), outputs=("out",)))
    nodes.append(Node("press", "stage", press, inputs=("in",), outputs=("out",)))
    nodes.append(Node("gate", "gate", None, inputs=("in",)))
    connections.update({"blender.in": "mix.out", "press.in": "blender.out",
                        "gate.in": "press.out"})
    initial = sim.initial_state == "steady"
    if initial:
        blender.reset(steady)
        press.reset(steady)
    shift = alignment_shift(blender.n_dispersive + press.n_dispersive)
    return Line(cmap, dt, n_ticks, nodes, connections, shift=shift,
                initial_gate_flow=steady if initial else None)
