"""What the plant measures: the instruments of the line and the signals table.

The monitor and the controllers may only see what a plant records. :class:`PlantRecorder` is
the one place that looks at the simulated line: after every chunk it turns the line's true
streams into the instrument readings a plant historian would hold, a :class:`SignalChunk`,
and appends them to a per-tick table. Everything downstream (the line-state estimator, the
rules, the diversion policy, ``cmsim replay``) reads only these chunks.

Signals (the table written as ``signals.parquet``; one row per tick, ``time_s = k dt``):

==========================  ========  ====================================================
column                      unit      meaning
==========================  ========  ====================================================
``time_s``                  s         start of the tick ``[k dt, (k+1) dt)``
``setpoint.<feeder>``       kg/s      commanded mass flow of the feeder during the tick
``running.<feeder>``        0/1       1 while the feeder runs (0 after a stop command)
``lc_time_s``               s         time of the load-cell flow estimate reported in this
                                      tick (NaN: none), on the load-cell clock
``lc_mass.<feeder>``        kg        the hopper weighing: net weight change since t = 0
                                      (refill-compensated, as the loss-in-weight controller
                                      books it); NaN without a reading
``lc_flow.<feeder>``        kg/s      the loss-in-weight controller's mass-flow estimate
                                      (least-squares slope of the weighings over the
                                      load-cell window); NaN without a reading
``nir_time_s``              s         time of the NIR prediction reported in this tick (NaN:
                                      none)
``nir``                     [-]       NIR prediction of the API mass fraction (absolute w/w);
                                      NaN for a dropout or no reading
``blender_speed``           rpm       impeller speed (NaN when the scenario gives none)
``press_running``           0/1       1 while the turret runs
``api_lot_gen``             [-]       generation of the newest API lot discharged so far
                                      (0 = the initial lot, +1 per new lot)
``api_lot_share``           [-]       share of that newest lot in the API discharge (from the
                                      hopper bookkeeping an MES keeps for genealogy)
==========================  ========  ====================================================

A sampled signal (load cells, NIR) is filed in the tick that contains its time stamp; a tick
holds at most one sample of each (sample periods are at least one tick).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmsim.errors import ParameterError
from cmsim.monitor.sensors import LoadCellBank, NIRSensor, slopes_of_weighings

__all__ = ["HeldControllerFlows", "PlantRecorder", "SignalChunk", "SignalsTable", "nir_start_time",
           "signal_columns"]


@dataclass
class SignalChunk:
    """Plant signals of ticks ``[k0, k1)``.

    Attributes
    ----------
    k0, k1 : int
        Tick range.
    setpoint : ndarray, shape (n_feeders, n)
        Commanded flows [kg/s].
    running : ndarray of bool, shape (n_feeders, n)
        Feeder running flags.
    lc_t : ndarray, shape (m,)
        Load-cell estimate times [s].
    lc_flow : ndarray, shape (n_feeders, m), or None
        Load-cell flow estimates [kg/s] (NaN: no estimate yet; None: not computed online).
    lc_mass : ndarray, shape (n_feeders, m)
        Weighings: net hopper weight change since t = 0 [kg] (NaN: no reading).
    nir_t, nir : ndarray, shape (r,)
        NIR prediction times [s] and values [mass fraction] (NaN: dropout).
    blender_speed : float
        Impeller speed during the chunk [rpm] (NaN: not given).
    press_running : bool
        Turret running during the chunk.
    api_lot_gen : ndarray of int, shape (n,)
        Newest API lot generation discharged so far.
    api_lot_share : ndarray, shape (n,)
        Share of the newest API lot in the API discharge [-].
    """

    k0: int
    k1: int
    setpoint: np.ndarray
    running: np.ndarray
    lc_t: np.ndarray
    lc_flow: np.ndarray
    nir_t: np.ndarray
    nir: np.ndarray
    blender_speed: float
    press_running: bool
    api_lot_gen: np.ndarray
    api_lot_share: np.ndarray
    lc_mass: np.ndarray | None = None


def signal_columns(feeders: Sequence[str]) -> list[str]:
    """Column names of the signals table for these feeder names (in table order)."""
    cols = ["time_s"]
    cols += [f"setpoint.{f}" for f in feeders] + [f"running.{f}" for f in feeders]
    cols += ["lc_time_s"] + [f"lc_mass.{f}" for f in feeders] + \
        [f"lc_flow.{f}" for f in feeders]
    cols += ["nir_time_s", "nir", "blender_speed", "press_running", "api_lot_gen",
             "api_lot_share"]
    return cols


def nir_start_time(sample_period: float, latency: float, integration_time: float,
                   probe_offset: float) -> float:
    """Time of the first NIR prediction [s]: the first multiple of the sample period at which
    a whole integration window of probe data exists."""
    first = probe_offset + latency + integration_time
    return math.ceil(first / sample_period - 1e-9) * sample_period


class PlantRecorder:
    """Line observer simulating the plant's instruments and recording the signals table.

    Parameters
    ----------
    line : cmsim.line.Line
        The line at tick 0 (feeders ``feeder.<name>``, ``blender``, ``press``).
    feeders : sequence of str
        Feeder names, in table order.
    api_feeder : str
        Name of the API feeder.
    potency : ndarray, shape (n_channels,)
        Active content per kg of each channel [-] (1 for every channel except API lots of
        another assay); the NIR sees ``sum(potency * API rows) / total``.
    nir : NIRSensor or None
        The NIR instrument (None: no probe).
    probe : {"blender_outlet", "feed_frame"}
        Probe location.
    upstream_stages : int
        Bin-kernel stages in front of the probe (its time stamps: ``(k + 1/2 + S/2) dt``).
    load_cells : LoadCellBank or None
        The feeders' load cells on the tick clock (None: no load cells).
    slopes : bool
        Also compute the controllers' flow estimates online (a policy reads them); otherwise
        the signals table derives them from the weighings when it is built.
    """

    name = "plant"

    def __init__(self, line: Any, feeders: Sequence[str], api_feeder: str,
                 potency: np.ndarray, nir: NIRSensor | None, probe: str,
                 upstream_stages: int, load_cells: LoadCellBank | None,
                 slopes: bool = True) -> None:
        if line.k != 0:
            raise ParameterError("line", line.k, "the plant recorder must start at tick 0")
        self.dt = float(line.dt)
        self.n_ticks = int(line.n_ticks)
        self.feeders = [str(f) for f in feeders]
        self._units = [line.nodes[f"feeder.{f}"].unit for f in self.feeders]
        self._records = [line.record(f"feeder.{f}.out") for f in self.feeders]
        # the channels a feeder writes (its material's lots): the rest of its record is zero
        self._feeder_rows = [np.sort(np.asarray(u.rows)) for u in self._units]
        cmap = line.channel_map
        self._api = self.feeders.index(api_feeder)
        self._api_rows = np.asarray(cmap.material_rows(cmap.api_material))
        self._potency = np.asarray(potency, dtype=np.float64)
        self._blender = line.nodes["blender"].unit
        self._press = line.nodes["press"].unit
        self.nir = nir
        self._port = "blender.out" if probe == "blender_outlet" else "press.out"
        if nir is not None:
            line.watch(self._port)
        self._offset = (0.5 + 0.5 * upstream_stages) * self.dt
        self.load_cells = load_cells
        self._slopes = bool(slopes)
        self._lots_seen: list[int] = []  # API rows (index in _api_rows), first seen order
        self.chunks: list[SignalChunk] = []
        self.nir_true: list[np.ndarray] = []  # noise-free window means (ground truth)

    def on_chunk(self, line: Any, k0: int, k1: int) -> SignalChunk:
        """Read ticks ``[k0, k1)`` of the line as a :class:`SignalChunk` (and keep it)."""
        n = k1 - k0
        nf = len(self.feeders)
        sp = np.empty((nf, n))
        run = np.empty((nf, n), dtype=bool)
        for i, u in enumerate(self._units):
            sp[i] = u.mass_flow
            run[i] = u.running
        lc_t = np.empty(0)
        lc_flow = lc_mass = np.empty((nf, 0))
        if self.load_cells is not None:
            rows = tuple(_discharge(r, c, k0, k1)
                         for r, c in zip(self._records, self._feeder_rows, strict=True))
            lc_t, lc_mass, lc_flow = self.load_cells.measure(rows, slopes=self._slopes)
        nir_t = np.empty(0)
        nir_y = np.empty(0)
        if self.nir is not None:
            probe = line.chunk_stream(self._port)
            tot = probe.sum(axis=0)
            api = self._potency[self._api_rows] @ probe[self._api_rows]
            w = np.divide(api, tot, out=np.zeros(n), where=tot > 0)
            grid = np.arange(k0, k1, dtype=np.float64)
            grid *= self.dt
            grid += self._offset
            nir_t, nir_y, true = self.nir.measure(grid, w, return_noise_free=True)
            self.nir_true.append(true)
        speed = getattr(self._blender, "speed", None)
        gen, share = self._lot_generations(self._records[self._api][:, k0:k1])
        ch = SignalChunk(k0, k1, sp, run, lc_t, lc_flow, nir_t, nir_y,
                         math.nan if speed is None else float(speed),
                         bool(self._press.running), gen, share, lc_mass)
        self.chunks.append(ch)
        return ch

    @property
    def table(self) -> SignalsTable:
        """The signals table of the ticks recorded so far (built when first read)."""
        cells = self.load_cells
        clock = None if cells is None else (cells.sample_period, cells.window)
        return SignalsTable(list(self.chunks), self.feeders, self.dt, clock)

    def _lot_generations(self, rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Newest API lot generation and its share of the API discharge per tick."""
        n = rec.shape[1]
        if self._api_rows.size == 1:  # one API lot in the whole run
            return np.zeros(n), np.ones(n)
        flows = rec[self._api_rows]
        present = flows > 0.0
        g0 = len(self._lots_seen)
        new = [(int(np.argmax(present[i])), i) for i in range(flows.shape[0])
               if i not in self._lots_seen and present[i].any()]
        gen = np.full(n, max(g0 - 1, 0), dtype=np.float64)
        for first, i in sorted(new):
            self._lots_seen.append(i)
            gen[first:] = len(self._lots_seen) - 1
        newest = np.asarray(self._lots_seen or [0])[gen.astype(np.intp)]
        tot = flows.sum(axis=0)
        share = np.ones(n)
        np.divide(flows[newest, np.arange(n)], tot, out=share, where=tot > 0)
        return gen, share


def _discharge(record: np.ndarray, rows: np.ndarray, k0: int, k1: int) -> np.ndarray:
    """A feeder's total discharge over ticks ``[k0, k1)`` [kg/s] from its per-channel record,
    summed over the channels it writes only (the others hold exact zeros: the same sums); a
    view of the record when it writes one channel."""
    if rows.size == 1:
        return record[int(rows[0]), k0:k1]
    return record[rows, k0:k1].sum(axis=0)


class SignalsTable(Mapping):
    """The signals table (columns of :func:`signal_columns`, one row per tick) of a list of
    chunks, built on first access (a run that is not written never pays for it)."""

    def __init__(self, chunks: list[SignalChunk], feeders: Sequence[str], dt: float,
                 clock: tuple[float, float] | None = None) -> None:
        self._chunks, self._feeders, self._dt = chunks, list(feeders), float(dt)
        self._clock = clock  # load-cell (period, window): slopes derived when not recorded
        self._tab: dict[str, np.ndarray] | None = None

    def _build(self) -> dict[str, np.ndarray]:
        if self._tab is not None:
            return self._tab
        chunks, feeders = self._chunks, self._feeders
        n = chunks[-1].k1 if chunks else 0
        tab = {c: np.full(n, np.nan) for c in signal_columns(feeders)}
        tab["time_s"] = np.arange(n) * self._dt
        for ch in chunks:
            a, b = ch.k0, ch.k1
            for i, f in enumerate(feeders):
                tab[f"setpoint.{f}"][a:b] = ch.setpoint[i]
                tab[f"running.{f}"][a:b] = ch.running[i]
            tab["blender_speed"][a:b] = ch.blender_speed
            tab["press_running"][a:b] = ch.press_running
            tab["api_lot_gen"][a:b] = ch.api_lot_gen
            tab["api_lot_share"][a:b] = ch.api_lot_share
            cols = {} if ch.lc_flow is None else \
                {f"lc_flow.{f}": ch.lc_flow[i] for i, f in enumerate(feeders)}
            if ch.lc_mass is not None:
                cols.update({f"lc_mass.{f}": ch.lc_mass[i] for i, f in enumerate(feeders)})
            _file(tab, self._dt, ch.lc_t, "lc_time_s", cols)
            _file(tab, self._dt, ch.nir_t, "nir_time_s", {"nir": ch.nir})
        if chunks and chunks[0].lc_flow is None and self._clock is not None:
            # the controllers' slopes, from the recorded weighings (as the bank computes them)
            t = np.concatenate([ch.lc_t for ch in chunks])
            mass = np.concatenate([ch.lc_mass for ch in chunks], axis=1)
            flow = slopes_of_weighings(mass, *self._clock)
            _file(tab, self._dt, t, "lc_time_s",
                  {f"lc_flow.{f}": flow[i] for i, f in enumerate(feeders)})
        self._tab = tab
        return tab

    def __getitem__(self, key: str) -> np.ndarray:
        return self._build()[key]

    def __iter__(self):
        return iter(signal_columns(self._feeders))

    def __len__(self) -> int:
        return len(signal_columns(self._feeders))


def _file(tab: dict[str, np.ndarray], dt: float, t: np.ndarray, time_col: str,
          values: Mapping[str, np.ndarray]) -> None:
    """File samples in the rows of the ticks containing their time stamps (rows past the end
    of the table are dropped)."""
    if t.size == 0:
        return
    n = tab["time_s"].size
    rows = np.floor(t / dt + 1e-9).astype(np.int64)
    ok = rows < n
    tab[time_col][rows[ok]] = t[ok]
    for col, v in values.items():
        tab[col][rows[ok]] = v[ok]


class HeldControllerFlows:
    """The loss-in-weight controllers' flow estimates held per tick, chunk by chunk.

    Parameters
    ----------
    dt : float
        Tick [s].
    """

    def __init__(self, dt: float) -> None:
        self.dt = float(dt)
        self._last: np.ndarray | None = None

    def __call__(self, ch: SignalChunk) -> np.ndarray:
        """Flow estimates [kg/s] per feeder and tick of the chunk: each weighing's slope held
        until the next (the commanded flow of each tick until a first estimate, e.g. without
        load cells)."""
        cmd = ch.setpoint * ch.running
        prev = cmd if self._last is None else np.broadcast_to(self._last[:, None], cmd.shape)
        if not ch.lc_t.size:
            return prev
        rows = np.floor(ch.lc_t / self.dt + 1e-9).astype(np.int64) - ch.k0
        idx = np.searchsorted(rows, np.arange(ch.k1 - ch.k0), side="right") - 1
        held = np.where(idx >= 0, ch.lc_flow[:, np.maximum(idx, 0)], prev)
        held = np.where(np.isfinite(held), held, cmd)
        last = ch.lc_flow[:, -1]
        self._last = np.where(np.isfinite(last), last, cmd[:, -1] if self._last is None
                              else self._last)
        return held
