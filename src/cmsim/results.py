"""The result of a run: :class:`SimulationResult`.

A result holds numpy arrays and plain metadata only (so it pickles cheaply and across processes);
pandas frames are built on first access and cached (not pickled).

Tablet counts are **floats**: the tablets formed in a tick are the tick's gate mass divided by
the nominal tablet mass, and every count in :meth:`SimulationResult.summary` is a sum of these
per-tick values.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cmsim import tracing
from cmsim.errors import ParameterError

__all__ = ["MASS_KEYS", "SimulationResult"]

#: Keys of ``summary()["mass_kg"]``, in the order of the balance
#: ``initial_holdup + fed = accepted + diverted + holdup`` (holdup: at the end of the run).
MASS_KEYS = ("initial_holdup", "fed", "accepted", "diverted", "holdup")


@dataclass(eq=False)
class SimulationResult:
    """Outcome of :func:`cmsim.run`.

    Parameters
    ----------
    dt : float
        Tick length [s].
    materials : tuple of str
        Material names (component order of the mass dictionaries).
    channels : tuple of (str, str)
        ``(material, lot)`` per row of ``gate_flow``.
    api_material : str
        Name of the active ingredient.
    gate_flow : ndarray, shape (n_channels, n_ticks)
        Tick-averaged mass flow per channel at the press gate [kg/s]; row ``k`` covers
        ``[k dt, (k+1) dt)`` and has ``time_s = k dt``.
    diverted : ndarray of bool, shape (n_ticks,)
        Gate position per tick (True = to waste).
    tablet_mass : float
        Nominal tablet mass [kg].
    target_api_fraction : float
        Target API mass fraction (API share of the nominal feeder flows) [-].
    api_content_limits : (float, float)
        Specification on the API content as a fraction of target [-].
    mass : dict
        ``{"fed", "accepted", "diverted", "holdup", "initial_holdup"}`` each
        ``{material: kg}``.
    channel_mass : dict
        Same keys, each an ndarray per channel [kg] (for genealogy).
    mass_balance_max_rel_error : float
        Largest per-component relative error of fed + initial hold-up = accepted + diverted +
        hold-up [-].
    event_log : list of dict
        Event log ``{time_s, type, source, data}`` in time order.
    metadata : dict
        Scenario name and SHA-256, seed and entropy, versions, wall time, trace epsilon, ...
    diversion_events : list of dict
        ``{start_s, end_s, trigger, tablets}`` per diversion window (empty until a diversion
        manager drives the gate).
    tick_signals : dict of str to ndarray
        Extra per-tick columns of :attr:`timeseries` (``setpoint.<feeder>`` and
        ``flow.<feeder>`` [kg/s]), each of shape ``(n_ticks,)``.
    pat_signals : dict of str to ndarray
        The PAT monitor's recorded signals
        (:meth:`cmsim.monitor.line_monitor.LineMonitor.signals`): ``t`` [s] / ``nir`` (API
        mass fraction [-], NaN = dropout) / ``nir_true``, ``soft_t`` [s] / ``soft`` (the
        estimator's content at the gate, fraction of target [-]) / ``est_sd``, ``risk``,
        ``z_t`` / ``z`` (standardised innovations). Empty without a monitor.
    control_history : dict of str to ndarray
        Supervisory control actions (:attr:`cmsim.control.Supervisor.history`): ``time_s``
        [s], ``nir_reading`` [-], ``predicted_fraction`` [-], ``correction`` [-],
        ``api_set_point`` [kg/s]. Empty without supervisory control.
    plant_signals : dict of str to ndarray or None
        The plant signals table the monitor read (columns of
        :mod:`cmsim.monitor.plant`; one row per tick); None without the line-state monitor.
    """

    dt: float
    materials: tuple[str, ...]
    channels: tuple[tuple[str, str], ...]
    api_material: str
    gate_flow: np.ndarray
    diverted: np.ndarray
    tablet_mass: float
    target_api_fraction: float
    api_content_limits: tuple[float, float]
    mass: dict[str, dict[str, float]]
    channel_mass: dict[str, np.ndarray]
    mass_balance_max_rel_error: float
    event_log: list[dict[str, Any]]
    metadata: dict[str, Any]
    diversion_events: list[dict[str, Any]] = field(default_factory=list)
    tick_signals: dict[str, np.ndarray] = field(default_factory=dict)
    pat_signals: dict[str, np.ndarray] = field(default_factory=dict)
    control_history: dict[str, np.ndarray] = field(default_factory=dict)
    plant_signals: dict[str, np.ndarray] | None = None
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    # ------------------------------------------------------------------ basic quantities
    @property
    def n_ticks(self) -> int:
        """Number of gate ticks."""
        return int(self.gate_flow.shape[1])

    @property
    def time_s(self) -> np.ndarray:
        """Gate time stamps ``k dt`` [s]."""
        return np.arange(self.n_ticks) * self.dt

    @property
    def trace_epsilon(self) -> float:
        """Trace threshold :math:`\\varepsilon_{trace}` [-] used by the genealogy queries."""
        return float(self.metadata.get("trace_epsilon", tracing.DEFAULT_TRACE_EPSILON))

    def _rows(self, material: str) -> list[int]:
        return [i for i, (m, _) in enumerate(self.channels) if m == material]

    @property
    def mass_flow(self) -> np.ndarray:
        """Total gate mass flow per tick [kg/s]."""
        if "mass_flow" not in self._cache:
            self._cache["mass_flow"] = self.gate_flow.sum(axis=0)
        return self._cache["mass_flow"]

    @property
    def tablets(self) -> np.ndarray:
        """Tablets formed per tick (float) = tick mass / tablet mass [-]."""
        return self.mass_flow * self.dt / self.tablet_mass

    def component_flow(self, material: str) -> np.ndarray:
        """Gate flow of one material per tick [kg/s]."""
        rows = self._rows(material)
        if not rows:
            raise ParameterError("material", material, f"must be one of {self.materials}")
        return self.gate_flow[rows].sum(axis=0)

    def fraction(self, material: str) -> np.ndarray:
        """True mass fraction of ``material`` per tick [-] (NaN where nothing flows)."""
        total = self.mass_flow
        comp = self.component_flow(material)
        out = np.full(self.n_ticks, np.nan)
        ok = total > 0.0
        out[ok] = comp[ok] / total[ok]
        return out

    @property
    def api_content(self) -> np.ndarray:
        """True API content per tick as a fraction of target [-] (NaN where nothing flows).

        API lots with an assay other than 1 (``metadata["channel_potency"]``) count with
        their assay."""
        if "api_content" not in self._cache:
            pot = self.metadata.get("channel_potency")
            if pot is None:
                frac = self.fraction(self.api_material)
            else:
                rows = self._rows(self.api_material)
                api = np.asarray(pot, dtype=np.float64)[rows] @ self.gate_flow[rows]
                total = self.mass_flow
                frac = np.full(self.n_ticks, np.nan)
                ok = total > 0.0
                frac[ok] = api[ok] / total[ok]
            self._cache["api_content"] = frac / self.target_api_fraction
        return self._cache["api_content"]

    @property
    def nonconforming(self) -> np.ndarray:
        """Per tick: true API content outside ``api_content_limits`` (bool)."""
        lo, hi = self.api_content_limits
        c = self.api_content
        with np.errstate(invalid="ignore"):
            return (c < lo) | (c > hi)

    # ------------------------------------------------------------------ PAT and control
    def _tick_of(self, t: np.ndarray) -> np.ndarray:
        """Row of the tick containing each time ``t`` [s] (``floor(t / dt)``)."""
        return np.floor(np.asarray(t, dtype=np.float64) / self.dt + 1e-9).astype(np.int64)

    def _end_row(self, t: float) -> int:
        """First row whose tick end ``(k+1) dt`` is at or after ``t`` [s]."""
        return max(0, int(math.ceil(t / self.dt - 1.0 - 1e-9)))

    @property
    def nir_readings(self):
        """The PAT monitor's NIR readings as a pandas DataFrame (None without an NIR probe).

        Columns: ``time_s`` (time the reading was reported, probe time) [s], ``api_fraction``
        (API mass fraction as read) [-], ``api_content`` (fraction of target) [-], ``location``
        (probe position). Dropouts are NaN. Assigning a mapping/DataFrame replaces it (used by
        plotting tests).
        """
        override = self.__dict__.get("_nir_readings_override")
        if override is not None:
            return override
        sig = self.pat_signals
        if "t" not in sig or "nir" not in sig:
            return None
        if "nir_readings" not in self._cache:
            import pandas as pd  # noqa: PLC0415

            t = np.asarray(sig["t"], dtype=np.float64)
            y = np.asarray(sig["nir"], dtype=np.float64)
            loc = (self.metadata.get("pat") or {}).get("location")
            self._cache["nir_readings"] = pd.DataFrame({
                "time_s": t, "api_fraction": y, "api_content": y / self.target_api_fraction,
                "location": pd.Series([loc] * t.size, dtype=object)})
        return self._cache["nir_readings"]

    @nir_readings.setter
    def nir_readings(self, value) -> None:
        self.__dict__["_nir_readings_override"] = value

    def _alarm_columns(self) -> dict[str, np.ndarray]:
        """``pat.alarm`` / ``pat.nir_alarm``: a monitoring rule open at the end of the tick."""
        n = self.n_ticks
        nir_rules = {"pat_oos", "shewhart", "ewma", "cusum", "mspc"}
        opened: dict[str, tuple[float, str]] = {}
        spans: list[tuple[float, float, str]] = []
        for e in self.event_log:
            if e.get("source") != "monitor" or e["type"] not in ("alarm", "alarm_cleared"):
                continue
            d = e.get("data") or {}
            key = str(d.get("key", d.get("rule")))
            if e["type"] == "alarm":
                opened[key] = (float(e["time_s"]), str(d.get("rule")))
            elif key in opened:
                t0, rule = opened.pop(key)
                spans.append((t0, float(e["time_s"]), rule))
        spans += [(t0, math.inf, rule) for t0, rule in opened.values()]
        out = {}
        for name, sel in (("pat.alarm", None), ("pat.nir_alarm", nir_rules)):
            count = np.zeros(n + 1, dtype=np.int64)
            for t0, t1, rule in spans:
                if sel is not None and rule not in sel:
                    continue
                a = min(self._end_row(t0), n)
                b = n if math.isinf(t1) else min(self._end_row(t1), n)
                if b > a:
                    count[a] += 1
                    count[b] -= 1
            out[name] = np.cumsum(count[:n]) > 0
        return out

    def pat_columns(self) -> dict[str, np.ndarray]:
        """Per-tick PAT columns of :attr:`timeseries` (empty without a PAT monitor).

        Returns
        -------
        dict of str to ndarray
            ``pat.nir_api_content`` and ``pat.nir_true_api_content`` (NIR reading as the
            monitor used it and its noise-free window average as fraction of target [-], in
            the row of the tick in which the reading was reported, NaN elsewhere, for
            dropouts and for the repeats of a frozen signal);
            ``pat.soft_sensor_api_content`` (the estimator's content of that gate tick [-]),
            ``pat.soft_sensor_sd`` (its standard deviation [-]), ``pat.model_api_content``
            and ``pat.model_sd`` (the same without the NIR's model-error correction: the
            content if the NIR is what is wrong [-]) and ``pat.risk`` (the probability that
            the tick's content is outside the limits, the larger of the two estimates' [-]);
            ``pat.alarm`` / ``pat.nir_alarm`` (any rule / any NIR-based rule open at the end of
            the tick) and ``pat.in_control`` (state of control at the end of the tick).
        """
        sig = self.pat_signals
        n = self.n_ticks
        cols: dict[str, np.ndarray] = {}
        if not sig and "pat" not in self.metadata:
            return cols
        for key, src in (("pat.nir_api_content", "nir"), ("pat.nir_true_api_content",
                                                          "nir_true")):
            if "t" in sig and src in sig:
                col = np.full(n, np.nan)
                rows = self._tick_of(sig["t"])
                ok = (rows >= 0) & (rows < n)
                col[rows[ok]] = np.asarray(sig[src], dtype=np.float64)[ok] \
                    / self.target_api_fraction
                cols[key] = col
        if "soft_t" in sig and "soft" in sig and np.size(sig["soft_t"]):
            rows = self._tick_of(sig["soft_t"])
            ok = (rows >= 0) & (rows < n)
            for key, src in (("pat.soft_sensor_api_content", "soft"),
                             ("pat.soft_sensor_sd", "est_sd"),
                             ("pat.model_api_content", "soft_model"),
                             ("pat.model_sd", "est_sd_model"), ("pat.risk", "risk")):
                if src in sig:
                    col = np.full(n, np.nan)
                    col[rows[ok]] = np.asarray(sig[src], dtype=np.float64)[ok]
                    cols[key] = col
        cols.update(self._alarm_columns())
        mon = self.metadata.get("monitor") or {}
        state = np.full(n, bool((self.metadata.get("pat") or {}).get("initial_in_control",
                                                                     True)))
        for t, flag in mon.get("state_changes", []):
            state[min(self._end_row(float(t)), n):] = bool(flag)
        cols["pat.in_control"] = state
        return cols

    def control_columns(self) -> dict[str, np.ndarray]:
        """Per-tick supervisory-control columns of :attr:`timeseries` (empty without one).

        Returns
        -------
        dict of str to ndarray
            ``control.correction`` (multiplier ``c`` [-] in force during the tick: set by the
            last action at a tick ``<= k``, 1 before the first), and, in the row of each action
            tick, ``control.nir_api_content`` (the NIR value the loop used, fraction of target
            [-]) and ``control.predicted_api_content`` (feedforward prediction [-]); NaN in
            other rows.
        """
        h = self.control_history
        n = self.n_ticks
        if not h or "time_s" not in h:
            return {}
        rows = np.rint(np.asarray(h["time_s"], dtype=np.float64) / self.dt).astype(np.int64)
        ok = (rows >= 0) & (rows < n)
        corr = np.ones(n)
        c = np.asarray(h["correction"], dtype=np.float64)
        for r, val in zip(rows[ok].tolist(), c[ok].tolist(), strict=True):
            corr[r:] = val
        cols = {"control.correction": corr}
        for key, src in (("control.nir_api_content", "nir_reading"),
                         ("control.predicted_api_content", "predicted_fraction")):
            vals = np.asarray(h.get(src, np.empty(0)), dtype=np.float64)
            if vals.size == rows.size and np.isfinite(vals).any():
                col = np.full(n, np.nan)
                col[rows[ok]] = vals[ok] / self.target_api_fraction
                cols[key] = col
        return cols

    # ------------------------------------------------------------------ tables
    @property
    def timeseries(self):
        """pandas DataFrame, one row per gate tick (columns: docs/outputs.md).

        Columns: ``time_s`` [s], ``mass_flow_kg_s`` [kg/s], ``tablets`` (float per tick),
        ``fraction.<material>`` [-], ``api_content`` (fraction of target) [-],
        ``lot.<material>.<lot>`` (lot share of the material) [-], ``diverted`` (bool); then the
        PAT and control signals: ``setpoint.<feeder>`` (feeder set point during the tick)
        [kg/s], ``flow.<feeder>`` (true feeder discharge, tick average) [kg/s], the columns of
        :meth:`pat_columns` and :meth:`control_columns`. Feeder and PAT signals are at their
        own location (feeder, probe), not shifted to the gate.
        """
        if "timeseries" not in self._cache:
            import pandas as pd  # noqa: PLC0415

            cols: dict[str, np.ndarray] = {
                "time_s": self.time_s,
                "mass_flow_kg_s": self.mass_flow,
                "tablets": self.tablets,
            }
            for m in self.materials:
                cols[f"fraction.{m}"] = self.fraction(m)
            cols["api_content"] = self.api_content
            phi = tracing.lot_shares(self.gate_flow, self.channels)
            for i, (m, lot) in enumerate(self.channels):
                cols[f"lot.{m}.{lot}"] = phi[i]
            cols["diverted"] = np.asarray(self.diverted, dtype=bool)
            for key, arr in self.tick_signals.items():
                cols[key] = np.asarray(arr)
            cols.update(self.pat_columns())
            cols.update(self.control_columns())
            self._cache["timeseries"] = pd.DataFrame(cols)
        return self._cache["timeseries"]

    @property
    def events(self):
        """pandas DataFrame of the event log: ``time_s``, ``type``, ``source``, ``data``."""
        if "events" not in self._cache:
            import pandas as pd  # noqa: PLC0415

            rows = [{"time_s": float(e["time_s"]), "type": e["type"],
                     "source": e.get("source"), "data": dict(e.get("data") or {})}
                    for e in self.event_log]
            self._cache["events"] = pd.DataFrame(rows, columns=["time_s", "type", "source",
                                                                 "data"])
        return self._cache["events"]

    def event_records(self) -> list[dict[str, Any]]:
        """The event log as a list of plain dicts ``{time_s, type, source, data}``."""
        return [dict(e) for e in self.event_log]

    def event_chain(self):
        """The hash-chained log written to ``events.jsonl`` (:func:`cmsim.io.event_chain`).

        Returns
        -------
        cmsim.eventlog.EventLog
            Its length and ``head`` hash are the anchors in ``summary()["event_log"]``.
        """
        if "event_chain" not in self._cache:
            from cmsim import io  # noqa: PLC0415

            self._cache["event_chain"] = io.event_chain(self.event_records())
        return self._cache["event_chain"]

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict[str, Any]:
        """The ``summary.json`` dictionary (docs/outputs.md).

        Returns
        -------
        dict
            ``scenario``, ``seed``, ``cmsim_version``, ``scenario_sha256``, ``duration_s``,
            ``wall_time_s``, ``tablets`` (float counts), ``mass_kg``,
            ``mass_balance_max_rel_error``, ``diversion_events`` and ``event_log``:
            ``{records, head_hash}``, the number of records of ``events.jsonl`` and the hash of
            its last record (anchors for ``cmsim verify-log``, which detect a removed tail).
        """
        tablets = self.tablets
        div = np.asarray(self.diverted, dtype=bool)
        nonconf = self.nonconforming
        md = self.metadata
        chain = self.event_chain()
        return {
            "scenario": md.get("scenario"),
            "seed": md.get("seed"),
            "cmsim_version": md.get("cmsim_version"),
            "scenario_sha256": md.get("scenario_sha256"),
            "duration_s": self.n_ticks * self.dt,
            "wall_time_s": md.get("wall_time_s"),
            "tablets": {
                "produced": float(tablets.sum()),
                "accepted": float(tablets[~div].sum()),
                "diverted": float(tablets[div].sum()),
                "nonconforming_produced": float(tablets[nonconf].sum()),
                "nonconforming_accepted": float(tablets[nonconf & ~div].sum()),
                "conforming_diverted": float(tablets[~nonconf & div].sum()),
            },
            # initial hold-up + fed = accepted + diverted + (final) hold-up, per material
            "mass_kg": {key: dict(self.mass[key]) for key in MASS_KEYS if key in self.mass},
            "mass_balance_max_rel_error": float(self.mass_balance_max_rel_error),
            "diversion": self._diversion_summary(tablets, div, nonconf),
            "diversion_events": [dict(d) for d in self.diversion_events],
            "lots": self.lot_table(),
            "event_log": {"records": len(chain), "head_hash": chain.head},
        }

    def _diversion_summary(self, tablets: np.ndarray, div: np.ndarray,
                           nonconf: np.ndarray) -> dict[str, Any]:
        """Policy, expected escapes (the monitor's own sum of risk over accepted tablets) next
        to the true escapes and the waste [tablets]."""
        mon = self.metadata.get("monitor") or {}
        return {"policy": mon.get("policy"),
                "expected_escapes": mon.get("expected_escapes"),
                "true_escapes": float(tablets[nonconf & ~div].sum()),
                "waste": float(tablets[~nonconf & div].sum())}

    def lot_table(self) -> list[dict[str, Any]]:
        """Per (material, lot): tablets accepted and diverted, time span at the gate, masses.

        A tablet made while two lots of a material were at the gate contains both, so it counts
        under both lots: per-lot tablet counts can add up to more than the tablets produced.
        Masses [kg] add up exactly.

        Returns
        -------
        list of dict
            ``material``, ``lot``, ``tablets_accepted``, ``tablets_diverted`` [-],
            ``first_at_gate_s``, ``last_at_gate_s`` [s] (None if the lot never reached the
            gate), ``initial_holdup_kg``, ``fed_kg``, ``accepted_kg``, ``diverted_kg``,
            ``holdup_kg`` [kg]. Empty for a result without per-channel masses.
        """
        needed = ("fed", "initial_holdup", "holdup")
        if not all(k in (self.channel_mass or {}) for k in needed):
            return []  # a result built by hand without per-channel masses
        if "lot_table" not in self._cache:
            rows = []
            for material, lot in self.channels:
                f = self.lot_forward(material, lot)
                rows.append({
                    "material": material, "lot": lot,
                    "tablets_accepted": f["accepted_tablets"],
                    "tablets_diverted": f["diverted_tablets"],
                    "first_at_gate_s": f["first_time_s"], "last_at_gate_s": f["last_time_s"],
                    "initial_holdup_kg": f["initial_holdup_kg"], "fed_kg": f["fed_kg"],
                    "accepted_kg": f["accepted_kg"], "diverted_kg": f["diverted_kg"],
                    "holdup_kg": f["holdup_kg"],
                })
            self._cache["lot_table"] = rows
        return [dict(r) for r in self._cache["lot_table"]]

    def provenance(self) -> dict[str, Any]:
        """Provenance stored with every output file (seed, entropy, sha256, versions)."""
        md = self.metadata
        keys = ("scenario", "scenario_sha256", "seed", "entropy", "spawn_keys",
                "cmsim_version", "versions", "dt_s", "trace_epsilon", "initial_state")
        return {k: md.get(k) for k in keys if k in md}

    # ------------------------------------------------------------------ genealogy
    def lot_forward(self, material: str, lot: str) -> dict[str, float | None]:
        """Forward genealogy: where did lot ``lot`` of ``material`` go?

        Returns
        -------
        dict
            ``accepted_kg``, ``diverted_kg``, ``holdup_kg`` [kg]; ``accepted_tablets``,
            ``diverted_tablets`` (tablets in ticks where the lot share exceeds the trace epsilon);
            ``first_time_s``, ``last_time_s`` [s] (None if the lot never reached the gate);
            plus ``fed_kg`` and ``initial_holdup_kg`` [kg] so that
            ``fed + initial_holdup = accepted + diverted + holdup``.
        """
        holdup = self.channel_mass.get("holdup")
        out = tracing.lot_forward(self.gate_flow, self.diverted, self.channels, material, lot,
                                  dt=self.dt, tablet_mass=self.tablet_mass, holdup=holdup,
                                  epsilon=self.trace_epsilon)
        row = list(self.channels).index((material, str(lot)))
        out["fed_kg"] = float(self.channel_mass["fed"][row])
        out["initial_holdup_kg"] = float(self.channel_mass["initial_holdup"][row])
        return out

    def lots_between(self, t0: float, t1: float):
        """Backward genealogy: lots in the tablets made in ``[t0, t1)`` [s].

        Returns
        -------
        pandas.DataFrame
            Columns ``material``, ``lot``, ``mass_kg`` [kg], ``share`` [-] (share of that
            material's mass in the window).
        """
        import pandas as pd  # noqa: PLC0415

        rows = tracing.lots_between(self.gate_flow, self.channels, t0, t1, dt=self.dt,
                                    epsilon=self.trace_epsilon)
        return pd.DataFrame(rows, columns=["material", "lot", "mass_kg", "share"])

    # ------------------------------------------------------------------ output
    def plot(self, fig=None):
        """Overview figure: API content vs limits, mass flow, lot shares.

        Parameters
        ----------
        fig : matplotlib.figure.Figure, optional
            Figure to draw into (a new one by default).

        Returns
        -------
        matplotlib.figure.Figure
        """
        from cmsim import plotting  # noqa: PLC0415

        return plotting.overview(self, fig=fig)

    def write(self, out_dir: str | os.PathLike, *, figures: bool = True, report: bool = True,
              overwrite: bool = False) -> str:
        """Write the output directory (atomically; see :mod:`cmsim.io`).

        Parameters
        ----------
        out_dir : path-like
            Target directory (absent or empty; with ``overwrite`` also an earlier cmsim output
            directory, replaced as a whole).
        figures : bool
            Write the PNG figures (default True).
        report : bool
            Write ``report.html`` (default True).
        overwrite : bool
            Replace an existing cmsim output directory (default False).

        Returns
        -------
        str
            The directory written.
        """
        from cmsim import io  # noqa: PLC0415

        return str(io.write_output_dir(self, out_dir, figures=figures, report=report,
                                       overwrite=overwrite))

    def _repr_html_(self) -> str:
        """Jupyter display: a compact table of the key figures (tablets, escapes, waste, mass
        in and out, mass balance error, lots, seed, scenario hash)."""
        from cmsim._html import result_html  # noqa: PLC0415

        return result_html(self)

    def __repr__(self) -> str:
        s = self.summary()
        return (f"SimulationResult(scenario={s['scenario']!r}, duration_s={s['duration_s']:g}, "
                f"tablets={s['tablets']['produced']:.6g}, "
                f"mass_balance_max_rel_error={s['mass_balance_max_rel_error']:.3g})")
