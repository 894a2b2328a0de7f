"""Plain-text summaries of a scenario and of a run (``cmsim validate``, ``cmsim show``).

:func:`describe_scenario` writes the resolved summary of a validated scenario;
:func:`format_summary` the human-readable text of an output's ``summary.json``
(:func:`read_summary` reads it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cmsim.errors import InputError

__all__ = ["describe_scenario", "format_summary", "read_summary"]


def _fmt_time(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 600 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _describe_rtd(table: Any) -> str:
    d = table.model_dump(mode="json")
    kind = d.pop("model")
    if kind == "model":
        return f"parameter set {table.name!r} = {_describe_rtd(table.resolved)}"
    if kind == "series":
        return "series(" + ", ".join(_describe_rtd(s) for s in table.stages) + ")"
    if kind == "empirical":
        return f"empirical({d['file']}, {len(table.t)} points)"
    parts = []
    for k, v in d.items():
        parts.append(f"{k}={_fmt_time(v)}" if k in ("mean_residence_time", "delay")
                     else f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
    return f"{kind}({', '.join(parts)})"


def _fmt_field(key: str, value: Any) -> str:
    from cmsim.units import format_quantity  # noqa: PLC0415

    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    if key == "mass_flow":
        return format_quantity(value, "kg/h", 4)
    if key == "mass":
        return format_quantity(value, "kg", 4)
    if key in ("duration", "start"):
        return _fmt_time(value)
    if key in ("noise_rsd", "rate_per_hour"):
        return format_quantity(value, "%", 4)
    if key == "speed":
        return f"{value:g} rpm"
    return f"{value:g}"


def describe_scenario(s: Any, models: Any) -> str:
    """A short resolved summary of a validated scenario (``cmsim validate``).

    Parameters
    ----------
    s : cmsim.config.Scenario
        Validated scenario (SI values).
    models : cmsim.assembly.LineModels
        Its residence-time models (:func:`cmsim.assembly.build_models`).

    Returns
    -------
    str
        Lines: name, hash, simulation, feeders, target, RTDs, specification, PAT, diversion
        and disturbances.
    """
    from cmsim.units import convert_to  # noqa: PLC0415

    sim = s.simulation
    out: list[str] = []
    row = "  {:<16}{}".format
    out.append(row("name", s.name + (f" - {s.description}" if s.description else "")))
    out.append(row("sha256", s.sha256()))
    seed = "fresh entropy" if sim.seed is None else str(sim.seed)
    out.append(row("simulation", f"{_fmt_time(sim.duration)} at dt = {_fmt_time(sim.dt)} "
                   f"({s.n_ticks} ticks), initial state {sim.initial_state}, seed {seed}"))
    total = s.total_mass_flow
    out.append(row("feeders", f"{len(s.feeders)}, total {convert_to(total, 'kg/h'):g} kg/h"))
    for f in s.feeders:
        hop = ""
        if f.hopper is not None:
            h = f.hopper
            hop = (f", hopper {h.capacity:g} kg refilled "
                   f"{100 * h.refill_low:g}-{100 * h.refill_high:g} %")
        share = 100 * f.mass_flow / total
        out.append(f"    {f.name:<10} {f.material:<10} {f.role:<10} "
                   f"{convert_to(f.mass_flow, 'kg/h'):>8.4g} kg/h {share:6.2f} %"
                   f"  lot {f.lot}, noise {100 * f.noise_rsd:g} %{hop}")
    out.append(row("target API", f"{100 * s.target_api_fraction:.3f} % w/w; tablets "
                   f"{1e6 * s.press.tablet_mass:g} mg, {3600 * s.tablet_rate:,.0f} per hour"))
    speed = "" if s.blender.speed is None else f", {s.blender.speed:g} rpm"
    means = {k: m.mean for k, m in models.by_path().items()}
    for label, key, table in (("blender", "blender.rtd", s.blender.rtd),
                              ("transfer", "press.transfer_rtd", s.press.transfer_rtd),
                              ("feed frame", "press.feed_frame_rtd", s.press.feed_frame_rtd)):
        extra = speed if label == "blender" else ""
        out.append(row(label, f"{_describe_rtd(table)}{extra}; mean {means[key]:.4g} s"))
    out.append(row("line MRT", f"{sum(means.values()):.4g} s"))
    lo, hi = s.specification.api_content_limits
    out.append(row("specification", f"API content {100 * lo:g}-{100 * hi:g} % of target"))
    if s.pat is not None:
        p = s.pat
        out.append(row("PAT", f"{p.location}, every {_fmt_time(p.sample_period)}, noise sd "
                       f"{p.noise_sd:g}, latency {_fmt_time(p.latency)}"))
    else:
        out.append(row("PAT", "none"))
    if s.diversion is not None:
        dv = s.diversion
        how = (f"risk policy, max_risk {dv.max_risk:g}" if dv.policy == "risk" else
               f"quantile policy, alpha {dv.quantile:g}, margin {_fmt_time(dv.margin)}")
        if dv.rtd_uncertainty:
            how += f", RTD uncertainty {100 * dv.rtd_uncertainty:g} %"
        out.append(row("diversion", how))
    else:
        out.append(row("diversion", "none"))
    own = getattr(getattr(s, "monitor", None), "rtd", None)
    for key, label in (("blender", "blender"), ("transfer", "transfer"),
                       ("feed_frame", "feed frame")):
        table = getattr(own, key, None) if own is not None else None
        if table is not None:
            out.append(row("monitor RTD", f"{label} {_describe_rtd(table)}; mean "
                           f"{models.monitor[key].mean:.4g} s (its own characterisation)"))
    out.append(row("disturbances", str(len(s.disturbances))))
    for d in s.disturbances:
        fields = d.model_dump(mode="json")
        fields.pop("type")
        start = fields.pop("start")
        detail = ", ".join(f"{k}={_fmt_field(k, v)}" for k, v in fields.items()
                           if v is not None)
        out.append(f"    at {_fmt_time(start):>9}  {d.type}: {detail}")
    return "\n".join(out)


# --------------------------------------------------------------------------- run summary


def read_summary(target: Path) -> dict[str, Any]:
    """summary.json of an output directory (or the file itself) as a dict."""
    path = target / "summary.json" if target.is_dir() else target
    if not path.is_file():
        raise InputError(f"{target}: no summary.json (not a cmsim output directory?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isfinite(v) and v == int(v) and abs(v) < 1e15:
            return f"{int(v):,}"
        return f"{v:.6g}"
    return str(v)


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable text of a summary.json dict (docs/outputs.md)."""
    row = "{:<28}{}".format
    lines = []
    sha = s.get("scenario_sha256")
    lines.append(row("scenario", f"{s.get('scenario', '?')}"
                     + (f"  (sha256 {str(sha)[:16]}...)" if sha else "")))
    for key, label in (("seed", "seed"), ("cmsim_version", "cmsim version")):
        if key in s:
            lines.append(row(label, _num(s[key])))
    if "duration_s" in s:
        lines.append(row("simulated time", f"{_num(s['duration_s'])} s"))
    if "wall_time_s" in s:
        lines.append(row("wall time", f"{s['wall_time_s']:.3g} s"
                         if isinstance(s["wall_time_s"], int | float) else str(s["wall_time_s"])))
    tablets = s.get("tablets")
    if isinstance(tablets, dict) and tablets:
        lines.append("tablets")
        for k, v in tablets.items():
            lines.append(row("  " + k.replace("_", " "), _num(v)))
    mass = s.get("mass_kg")
    if isinstance(mass, dict) and mass:
        lines.extend(_mass_lines(mass))
    if "mass_balance_max_rel_error" in s:
        lines.append(row("mass balance max rel error", _num(s["mass_balance_max_rel_error"])))
    events = s.get("diversion_events")
    if isinstance(events, list):
        lines.append(row("diversion events", str(len(events))))
        for e in events:
            if isinstance(e, dict):
                lines.append(f"  {_num(e.get('start_s')):>10} - {_num(e.get('end_s')):<10} s  "
                             f"{_num(e.get('tablets'))} tablets  trigger: {e.get('trigger')}")
    lots = s.get("lots")
    if isinstance(lots, list) and lots:
        lines.extend(_lot_lines(lots))
    known = {"scenario", "scenario_sha256", "seed", "cmsim_version", "duration_s",
             "wall_time_s", "tablets", "mass_kg", "mass_balance_max_rel_error",
             "diversion_events", "lots"}
    for k, v in s.items():
        if k not in known and not isinstance(v, dict | list):
            lines.append(row(k, _num(v)))
    return "\n".join(lines)


_MASS_LABELS = {"initial_holdup": "initial hold-up", "fed": "+ fed", "accepted": "= accepted",
                "diverted": "+ diverted", "holdup": "+ final hold-up"}


def _mass_lines(mass: dict[str, Any]) -> list[str]:
    """The mass table: initial hold-up + fed = accepted + diverted + final hold-up."""
    comps: list[str] = []
    for part in mass.values():
        if isinstance(part, dict):
            comps.extend(c for c in part if c not in comps)
    lines = ["mass [kg]".ljust(28) + "".join(f"{c:>14}" for c in comps)]
    for k, part in mass.items():
        if isinstance(part, dict):
            cells = "".join(f"{part[c]:>14.6g}" if isinstance(part.get(c), int | float)
                            else f"{'-':>14}" for c in comps)
            lines.append("  " + _MASS_LABELS.get(k, k).ljust(26) + cells)
    return lines


def _lot_lines(lots: list[Any]) -> list[str]:
    """Per-lot tablets and time at the gate (a tablet with two lots counts under both)."""
    lines = ["lots at the gate          tablets accepted  diverted   first [s]    last [s]"]
    for r in lots:
        if not isinstance(r, dict):
            continue
        name = f"{r.get('material')} {r.get('lot')}"
        lines.append(f"  {name:<24}{_num(r.get('tablets_accepted')):>16}"
                     f"{_num(r.get('tablets_diverted')):>10}"
                     f"{_num(r.get('first_at_gate_s')):>12}{_num(r.get('last_at_gate_s')):>12}")
    lines.append("  (a tablet that contains two lots of a material counts under both lots)")
    return lines
