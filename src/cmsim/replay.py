"""``cmsim replay``: re-apply the monitor to recorded plant signals, without re-simulating.

A run writes the plant signals its monitor read (``signals.parquet``, columns documented in
:mod:`cmsim.monitor.plant`) with the resolved scenario in the file's metadata. Replaying it
with unchanged settings gives the same gate decisions as the run (the monitor only ever
sees these signals); with other settings (``--set diversion.max_risk=0.01``,
``--set diversion.policy=quantile``, ``--set monitor.innovation_cusum_h=6``) it re-tunes the
monitor on the same data. A table exported from a plant historian in the same format can be
replayed with a scenario file that describes the line (``--scenario``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cmsim.errors import InputError

__all__ = ["ReplayResult", "add_replay_parser", "chunks_of", "replay", "write_replay"]


@dataclass
class ReplayResult:
    """Decisions of a replayed monitor.

    Attributes
    ----------
    dt : float
        Tick [s].
    diverted : ndarray of bool
        Gate decision per tick.
    content, sd, risk : ndarray
        Estimated content and its standard deviation (fractions of target) and risk per tick.
    events : list of dict
        Monitor events (alarms, state of control).
    policy : str
        Policy used.
    """

    dt: float
    diverted: np.ndarray
    content: np.ndarray
    sd: np.ndarray
    risk: np.ndarray
    events: list[dict[str, Any]] = field(default_factory=list)
    policy: str = "risk"

    def intervals(self) -> list[tuple[float, float]]:
        """Diverted gate intervals ``[start, end)`` [s]."""
        edges = np.diff(np.concatenate(([0], self.diverted.astype(np.int8), [0])))
        return [(a * self.dt, b * self.dt) for a, b in
                zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)]

    def summary(self) -> dict[str, Any]:
        """Policy, diverted ticks and intervals, alarms."""
        return {"policy": self.policy, "diverted_ticks": int(self.diverted.sum()),
                "diverted_intervals_s": [list(iv) for iv in self.intervals()],
                "alarms": sum(1 for e in self.events if e["type"] == "alarm")}


def chunks_of(table: dict[str, np.ndarray], feeders: list[str], dt: float,
              max_ticks: int = 3600) -> Iterator[Any]:
    """Signal chunks of a table, split where the blender speed or the press state changes
    (equipment events take effect at a chunk start, as in the line)."""
    from cmsim.monitor.plant import SignalChunk  # noqa: PLC0415

    n = table["time_s"].size
    speed = table["blender_speed"]
    press = table["press_running"]
    change = np.flatnonzero((np.diff(np.nan_to_num(speed, nan=-1.0)) != 0)
                            | (np.diff(press) != 0)) + 1
    cuts = sorted(set(change.tolist()) | set(range(0, n, max_ticks)) | {n})
    sp = np.stack([table[f"setpoint.{f}"] for f in feeders])
    run = np.stack([table[f"running.{f}"] for f in feeders]) > 0.5
    lc = np.stack([table[f"lc_flow.{f}"] for f in feeders])
    lm = np.stack([table[f"lc_mass.{f}"] for f in feeders])
    lc_t = table["lc_time_s"]
    nir_t = table["nir_time_s"]
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        lsel = np.flatnonzero(np.isfinite(lc_t[a:b])) + a
        nsel = np.flatnonzero(np.isfinite(nir_t[a:b])) + a
        yield SignalChunk(a, b, sp[:, a:b], run[:, a:b], lc_t[lsel], lc[:, lsel],
                          nir_t[nsel], table["nir"][nsel], float(speed[a]),
                          bool(press[a] > 0.5), table["api_lot_gen"][a:b],
                          table["api_lot_share"][a:b], lm[:, lsel])


def _check_table(table: dict[str, np.ndarray], feeders: list[str], dt: float,
                 source: str) -> None:
    """Every column of a signals table against the rules of its format
    (:mod:`cmsim.monitor.plant`); the first broken rule is reported with its column and row."""
    from cmsim.config.schema import MAX_MASS_FLOW  # noqa: PLC0415
    from cmsim.monitor.plant import signal_columns  # noqa: PLC0415

    missing = [c for c in signal_columns(feeders) if c not in table]
    if missing:
        raise InputError(f"{source}: signals table lacks column(s) {', '.join(missing)} "
                         "(see the signals table format in the documentation)")
    t = np.asarray(table["time_s"], dtype=np.float64)
    if t.size and not np.allclose(t, np.arange(t.size) * dt, rtol=0, atol=1e-6 * dt):
        raise InputError(f"{source}: time_s must be k * dt with dt = {dt} s (one row per tick "
                         "from 0)")
    horizon_kg = 10.0 * MAX_MASS_FLOW * max(t.size * dt, 1.0)

    def rule(col: str, bad: np.ndarray, text: str) -> None:
        rows = np.flatnonzero(bad)
        if rows.size:
            i = int(rows[0])
            raise InputError(f"{source}: column {col}, row {i} (time_s = {t[i]:g}): "
                             f"{float(table[col][i])!r} {text} ({rows.size} such row(s))")

    with np.errstate(invalid="ignore"):
        for f in feeders:
            sp = table[f"setpoint.{f}"]
            rule(f"setpoint.{f}", ~((sp >= 0) & (sp <= MAX_MASS_FLOW)),
                 f"must be a mass flow in [0, {MAX_MASS_FLOW:g}] kg/s")
            rule(f"lc_flow.{f}", np.abs(table[f"lc_flow.{f}"]) > 10 * MAX_MASS_FLOW,
                 f"must be a mass flow within +-{10 * MAX_MASS_FLOW:g} kg/s, or empty (NaN)")
            rule(f"lc_mass.{f}", np.abs(table[f"lc_mass.{f}"]) > horizon_kg,
                 f"must be a weight change within +-{horizon_kg:g} kg, or empty (NaN)")
        for col in (*(f"running.{f}" for f in feeders), "press_running"):
            rule(col, ~np.isin(table[col], (0.0, 1.0)), "must be 0 or 1")
        for col in ("lc_time_s", "nir_time_s"):
            ts = table[col]
            stamped = np.isfinite(ts)
            rule(col, stamped & (np.floor(ts / dt + 1e-9) != np.arange(ts.size)),
                 f"must be a time within its row's tick [k dt, (k + 1) dt) with dt = {dt:g} s, "
                 "or empty (NaN)")
            rule(col, np.isinf(ts), "must be a time or empty (NaN)")
        rule("nir", ~np.isnan(table["nir"]) & ~((table["nir"] >= -1) & (table["nir"] <= 2)),
             "must be a predicted mass fraction in [-1, 2], or empty (NaN: a dropout)")
        speed = table["blender_speed"]
        rule("blender_speed", ~np.isnan(speed) & ~((speed > 0) & np.isfinite(speed)),
             "must be a speed > 0 rpm, or empty (NaN) when the scenario gives none")
        gen = table["api_lot_gen"]
        rule("api_lot_gen", ~((gen >= 0) & (gen == np.round(gen)) & np.isfinite(gen)),
             "must be a lot generation 0, 1, 2, ...")
        rule("api_lot_gen", np.concatenate(([False], np.diff(gen) < 0)),
             "must not decrease (a lot generation counts the API lots discharged so far)")
        share = table["api_lot_share"]
        rule("api_lot_share", ~((share >= 0) & (share <= 1)), "must be a share in [0, 1]")


def replay(source: str | os.PathLike, *, scenario: Any = None,
           overrides: Iterable[str] | None = None) -> ReplayResult:
    """Re-apply the monitor to a recorded signals table.

    Parameters
    ----------
    source : path-like
        A run's output directory (its ``signals.parquet``), or a signals table as Parquet or
        CSV (``.csv``, e.g. a plant historian export).
    scenario : path, dict or Scenario, optional
        The line and monitor settings (default: the scenario stored with the signals).
    overrides : iterable of str, optional
        ``path=value`` overrides of the scenario (monitor settings, policy, ...).

    Returns
    -------
    ReplayResult
    """
    from cmsim.assembly import build_models  # noqa: PLC0415
    from cmsim.config import load_scenario  # noqa: PLC0415
    from cmsim.config.schema import Monitor  # noqa: PLC0415
    from cmsim.io import read_signals_table  # noqa: PLC0415
    from cmsim.monitor.setup import assemble_monitor, monitor_parts  # noqa: PLC0415

    path = Path(source)
    if path.is_dir():
        path = path / "signals.parquet"
    if not path.is_file():
        raise InputError(f"{source}: no signals table (a run directory with signals.parquet, "
                         "or a .parquet or .csv file, is expected)")
    table, meta = read_signals_table(path)
    raw = scenario if scenario is not None else meta.get("scenario")
    if raw is None:
        raise InputError(f"{path}: no scenario stored with the signals; pass --scenario")
    sc = load_scenario(raw, overrides=overrides or None)  # refuses a plain string
    feeders = [f.name for f in sc.feeders]
    dt = float(sc.simulation.dt)
    _check_table(table, feeders, dt, str(path))
    n = int(table["time_s"].size)
    if n != int(sc.n_ticks):
        raise InputError(f"{path}: {n} rows, but the scenario runs {sc.n_ticks} ticks")
    models = build_models(sc)  # once, for the shift and the monitor
    _check_memory(sc, models, table, str(path))
    shift = int(meta["line_shift"]) if "line_shift" in meta else _default_shift(sc, models)
    n_lots = int(meta.get("n_api_lots", int(np.nanmax(table["api_lot_gen"])) + 1))
    parts = monitor_parts(sc, sc.monitor or Monitor(), shift, n_lots, models)
    mon = assemble_monitor(parts, n, drive_gate=sc.diversion is not None)
    for ch in chunks_of(table, feeders, dt):
        mon.process(ch)
    return ReplayResult(dt, mon.plan.copy() if mon.drive_gate else np.zeros(n, bool),
                        mon.content, mon.sd, mon.risk, mon.events,
                        getattr(parts["policy"], "name", "risk"))


def _check_memory(sc: Any, models: Any, table: dict[str, np.ndarray], source: str) -> None:
    """Refuse a table whose monitor cannot fit in memory (the run's length, or the slowest
    blender speed of the table)."""
    from cmsim.assembly import scenario_channel_map  # noqa: PLC0415
    from cmsim.footprint import memory_problems  # noqa: PLC0415

    speed = table["blender_speed"]
    speeds = ([("column blender_speed", float(np.nanmin(speed)))]
              if np.isfinite(speed).any() else [])
    problems = memory_problems(sc, float(sc.simulation.dt), int(sc.n_ticks),
                               scenario_channel_map(sc).n_channels, models, speeds=speeds)
    if problems:
        where, value, rule = problems[0]  # one at most: the field with the largest part
        raise InputError(f"{source}: {where} = {value}: {rule}")


def _default_shift(sc: Any, models: Any) -> int:
    from cmsim.unitops.stage import chain_shift  # noqa: PLC0415

    return chain_shift((models.blender, models.transfer, models.feed_frame),
                       float(sc.simulation.dt))


def write_replay(result: ReplayResult, out: str | os.PathLike) -> Path:
    """Write ``replay.json`` (summary) and ``decisions.parquet`` (per tick) atomically."""
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    import pandas as pd  # noqa: PLC0415

    from cmsim.io import check_output_dir, write_json  # noqa: PLC0415

    target = check_output_dir(out).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write_json(tmp / "replay.json", {**result.summary(), "events": result.events})
        n = result.diverted.size
        pd.DataFrame({"time_s": np.arange(n) * result.dt, "diverted": result.diverted,
                      "content": result.content, "content_sd": result.sd,
                      "risk": result.risk}).to_parquet(tmp / "decisions.parquet", index=False)
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def add_replay_parser(sub: Any, common: Any, add_set: Any) -> None:
    """Register ``cmsim replay`` on the CLI's subparsers."""
    p = sub.add_parser(
        "replay", parents=[common], help="re-apply the monitor to recorded plant signals",
        description="Re-apply the PAT monitor to the plant signals of a run (its "
                    "signals.parquet) or to a signals table in the same format (.parquet or "
                    ".csv, e.g. a plant historian export), without re-simulating; --set "
                    "changes monitor settings.")
    p.add_argument("source", metavar="RUN_DIR|TABLE", type=Path,
                   help="output directory of a run, or a signals .parquet or .csv file")
    p.add_argument("--scenario", type=Path, default=None,
                   help="scenario file describing the line (default: the one stored with "
                   "the signals)")
    add_set(p)
    p.add_argument("--out", type=Path, default=None,
                   help="write replay.json and decisions.parquet there")
    p.set_defaults(handler=_cmd_replay)


def _cmd_replay(args: Any) -> int:
    from cmsim._outdir import make_dir  # noqa: PLC0415
    from cmsim.io import check_output_dir  # noqa: PLC0415

    if args.out is not None:  # refused before replaying, not after
        parent = check_output_dir(args.out).absolute().parent
        make_dir(parent, f"--out {args.out}: cannot write in {parent}", probe=True)
    res = replay(args.source, scenario=args.scenario, overrides=args.set)
    s = res.summary()
    iv = s["diverted_intervals_s"]
    print(f"policy {s['policy']}: {s['diverted_ticks']} ticks diverted in {len(iv)} "
          f"interval(s); {s['alarms']} alarm(s)")
    if not args.quiet:
        for a, b in iv[:20]:
            print(f"  divert {a:10.1f} - {b:10.1f} s")
        if len(iv) > 20:
            print(f"  ... {len(iv) - 20} more")
    if args.out is not None:
        print(f"written: {write_replay(res, args.out)}")
    return 0
