"""Self-contained HTML report of a run (``report.html`` in the output directory).

The report is one HTML file with inline CSS and the figures embedded as base64 PNG data URIs:
no external resource, no JavaScript. It lists the scenario and its provenance, the tablet and
mass tables of :meth:`SimulationResult.summary`, the mass-balance error, the diversion windows,
the lot genealogy (:meth:`SimulationResult.lot_forward` per lot), the figures of
:mod:`cmsim.plotting` and the event log. Every text taken from the run is escaped with
:func:`html.escape`.

Optional run metadata used when present (``result.metadata``):

* ``description`` (str): the scenario description;
* ``line_rtd`` (dict): RTD from the API feeder to the gate as ``{"model": <class name in
  cmsim.rtd>, **params}`` (a ``Series`` as ``{"model": "Series", "stages": [...]}``); without it
  the funnel plot is left out (with a note);
* ``api_feeder`` (str): name of the API feeder, whose pulses are overlaid on the funnel plot.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io as _io
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cmsim._fs import atomic_write

__all__ = ["EVENTS_SHOWN", "METHODS", "TRIGGERS", "figure_names", "gate_rtd", "render_figure",
           "render_figures", "render_html", "rtd_from_params", "write_report"]

#: Largest number of event-log records listed in the report (the full log is events.jsonl).
EVENTS_SHOWN = 500

_CSS = """
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;margin:24px auto;max-width:1180px;
color:#1d232a;line-height:1.4;padding:0 16px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:28px 0 8px;padding-bottom:3px;
border-bottom:2px solid #d5dbe1}
.desc{color:#45505b;margin:0 0 14px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:0.9em}
th,td{border:1px solid #d5dbe1;padding:3px 9px;text-align:left;vertical-align:top}
th{background:#eef2f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.kpi{border:1px solid #d5dbe1;border-radius:6px;padding:8px 14px;min-width:150px}
.kpi .v{font-size:1.35em;font-weight:bold}.kpi .l{font-size:0.8em;color:#45505b}
.ok{border-left:6px solid #2e8b57}.bad{border-left:6px solid #c0392b}
.neutral{border-left:6px solid #7f8c8d}
figure{margin:10px 0 18px}figure img{max-width:100%;border:1px solid #e3e7eb}
figcaption{font-size:0.85em;color:#45505b}
.note{font-size:0.85em;color:#6b4f00;background:#fff7e0;padding:4px 8px;border-radius:4px}
code,.mono{font-family:"DejaVu Sans Mono",Consolas,monospace;font-size:0.85em}
td.data{max-width:620px;word-break:break-word}
footer{margin-top:30px;font-size:0.8em;color:#6b7680}
h3{font-size:1.0em;margin:16px 0 4px}
dl.legend{font-size:0.85em;display:grid;grid-template-columns:max-content auto;gap:2px 12px}
dl.legend dd{margin:0}
"""


# --------------------------------------------------------------------------------- helpers
def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _num(x: Any, fmt: str = ",.1f") -> str:
    if x is None:
        return "&mdash;"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return _e(x)
    if not math.isfinite(v):
        return _e(v)
    return _e(format(v, fmt))


def _table(header: list[str], rows: list[list[tuple[str, bool]]], cls: str = "") -> str:
    """HTML table; ``rows`` hold ``(already-escaped html, numeric)`` cells."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if numeric else
                         f'<td class="{cls}">{c}</td>' if cls else f"<td>{c}</td>"
                         for c, numeric in row) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def rtd_from_params(params: Mapping[str, Any]) -> Any:
    """Build an RTD model from ``{"model": <class name in cmsim.rtd>, **params}``.

    Parameters
    ----------
    params : mapping
        Model name and constructor parameters (SI); a series as ``{"model": "Series",
        "stages": [<params>, ...]}``.

    Returns
    -------
    cmsim.rtd.RTDModel

    Raises
    ------
    cmsim.errors.ParameterError
        Unknown model name or invalid parameters.
    """
    from cmsim import rtd  # noqa: PLC0415
    from cmsim.errors import ParameterError  # noqa: PLC0415

    if not isinstance(params, Mapping) or "model" not in params:
        raise ParameterError("params", params, "must be a mapping with a 'model' key")
    name = str(params["model"])
    kwargs = {k: v for k, v in params.items() if k != "model"}
    if name == "Series" or "stages" in kwargs:
        stages = kwargs.get("stages")
        if not isinstance(stages, (list, tuple)) or not stages:
            raise ParameterError("params.stages", stages, "must be a non-empty list")
        return rtd.Series(*[rtd_from_params(s) for s in stages])
    cls = getattr(rtd, name, None)
    if not (isinstance(cls, type) and issubclass(cls, rtd.RTDModel)):
        raise ParameterError("params.model", name, "must name an RTD model class of cmsim.rtd")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ParameterError("params", dict(params), f"invalid for {name}: {exc}") from exc


def gate_rtd(result: Any) -> Any:
    """RTD from the API feeder to the gate recorded with a run, or None.

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run; reads ``result.metadata["line_rtd"]`` (see the module docstring).

    Returns
    -------
    cmsim.rtd.RTDModel or None
    """
    from cmsim.errors import ParameterError  # noqa: PLC0415

    p = (getattr(result, "metadata", None) or {}).get("line_rtd")
    if p is None:
        return None
    try:
        return rtd_from_params(p)
    except (ParameterError, ValueError):
        return None


def _png(fig: Any) -> bytes:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _delta(result: Any) -> tuple[float, float]:
    lo, hi = result.api_content_limits
    return (1.0 - float(lo), float(hi) - 1.0)


def figure_names(result: Any, *, model: Any = None) -> list[str]:
    """Names of the report figures this run gets, in report order.

    ``api_trace``, ``monitor`` and ``innovations`` (with the line-state monitor), ``funnel``
    (only with a feeder-to-gate RTD and limits that admit a funnel), ``lots_gantt``,
    ``mass_flow``.
    """
    names = ["api_trace"]
    if "est_sd" in (result.pat_signals or {}):
        names.append("monitor")
    if "z" in (result.pat_signals or {}) and np.size(result.pat_signals["z"]):
        names.append("innovations")
    if _funnel_inputs(result, model) is not None:
        names.append("funnel")
    return names + ["lots_gantt", "mass_flow"]


def _funnel_inputs(result: Any, model: Any) -> tuple[Any, tuple[float, float], float] | None:
    model = gate_rtd(result) if model is None else model
    if model is None:
        return None
    lo, hi = _delta(result)
    w0 = float(result.target_api_fraction)
    if not (0.0 < lo < 1.0 and 0.0 < hi < 1.0 and 0.0 < w0 < 1.0 / (1.0 + hi)):
        return None  # else no overfeed can exceed the upper limit
    return model, (lo, hi), w0


def render_figure(result: Any, name: str, *, model: Any = None) -> bytes:
    """Render one figure of a run to PNG bytes (a matplotlib Figure, no pyplot).

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    name : str
        One of :func:`figure_names`, or ``"api_content"`` / ``"lots"`` (the simple figures of
        the output directory).
    model : cmsim.rtd.RTDModel, optional
        RTD from the API feeder to the gate for the funnel plot; default :func:`gate_rtd`.

    Returns
    -------
    bytes
    """
    from matplotlib.figure import Figure  # noqa: PLC0415

    from cmsim import plotting  # noqa: PLC0415

    if name == "funnel":
        inputs = _funnel_inputs(result, model)
        if inputs is None:
            raise ValueError("this run has no funnel plot (no feeder-to-gate RTD or limits)")
        rtd_model, delta, w0 = inputs
        feeder = (result.metadata or {}).get("api_feeder")
        events = plotting.disturbance_points(result, [feeder]) if feeder else None
        fig = Figure(figsize=(10, 4.6), layout="constrained")
        plotting.funnel(rtd_model, delta, ax=fig.add_subplot(), api_fraction=w0, events=events)
        return _png(fig)
    sizes = {"api_trace": (10, 4.6), "lots_gantt": (10, 1.6 + 0.45 * len(result.channels)),
             "mass_flow": (10, 2.8), "api_content": (8, 4), "lots": (8, 4),
             "monitor": (10, 4.2), "innovations": (10, 3.2)}
    draw = {"api_trace": plotting.api_trace, "lots_gantt": plotting.lot_gantt,
            "monitor": plotting.monitor_estimate, "innovations": plotting.innovations,
            "mass_flow": plotting.mass_flow, "api_content": plotting.api_content,
            "lots": plotting.lot_shares}
    if name not in draw:
        raise ValueError(f"unknown figure {name!r}")
    fig = Figure(figsize=sizes[name], layout="constrained")
    draw[name](result, ax=fig.add_subplot())
    return _png(fig)


def render_figures(result: Any, *, model: Any = None) -> dict[str, bytes]:
    """Render the report figures to PNG bytes (matplotlib Figure objects, no pyplot).

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    model : cmsim.rtd.RTDModel, optional
        RTD from the API feeder to the gate for the funnel plot; default :func:`gate_rtd`.

    Returns
    -------
    dict
        ``{"api_trace", "funnel" (only with an RTD), "lots_gantt", "mass_flow"}`` -> PNG bytes.
    """
    return {name: render_figure(result, name, model=model)
            for name in figure_names(result, model=model)}


# --------------------------------------------------------------------------------- sections
def _kpis(s: Mapping[str, Any], result: Any) -> str:
    tab = s["tablets"]
    esc = float(tab.get("nonconforming_accepted") or 0.0)
    err = float(s.get("mass_balance_max_rel_error") or 0.0)
    items = [
        ("tablets produced", _num(tab["produced"]), "neutral"),
        ("tablets accepted", _num(tab["accepted"]), "neutral"),
        ("tablets diverted", _num(tab["diverted"]), "neutral"),
        ("nonconforming accepted (escapes)", _num(esc), "ok" if esc < 0.5 else "bad"),
        ("conforming diverted (waste)", _num(tab.get("conforming_diverted")), "neutral"),
        ("mass-balance max rel. error", _num(err, ".2e"), "ok" if err < 1e-9 else "bad"),
        ("diversion windows", _e(len(s.get("diversion_events") or [])), "neutral"),
    ]
    return '<div class="kpis">' + "".join(
        f'<div class="kpi {c}"><div class="v">{v}</div><div class="l">{_e(lbl)}</div></div>'
        for lbl, v, c in items) + "</div>"


def _provenance(s: Mapping[str, Any], result: Any) -> str:
    md = result.metadata or {}
    versions = md.get("versions") or {}
    rows = [
        ("scenario", _e(s.get("scenario"))),
        ("scenario file", _e(Path(str(md["scenario_source"])).name
                              if md.get("scenario_source") else None)),
        ("scenario SHA-256", f'<span class="mono">{_e(s.get("scenario_sha256"))}</span>'),
        ("seed (root entropy)", f'<span class="mono">{_e(s.get("seed"))}</span>'),
        ("cmsim version", _e(s.get("cmsim_version"))),
        ("other versions", _e(", ".join(f"{k} {v}" for k, v in versions.items()))),
        ("simulated duration", f"{_num(s.get('duration_s'), ',.1f')} s"),
        ("time step", f"{_num(result.dt, 'g')} s"),
        ("wall time", f"{_num(s.get('wall_time_s'), '.3f')} s"),
        ("trace epsilon", _num(result.trace_epsilon, "g")),
        ("initial state", _e(md.get("initial_state"))),
        ("tablet mass", f"{_num(1e6 * float(result.tablet_mass), 'g')} mg"),
        ("target API fraction", _num(result.target_api_fraction, ".6g")),
        ("API content limits", "{} &ndash; {} % of target".format(
            *(_num(100.0 * x, "g") for x in result.api_content_limits))),
    ]
    return _table(["item", "value"], [[(_e(k), False), (v, False)] for k, v in rows])


def _tablets(s: Mapping[str, Any]) -> str:
    labels = {"produced": "produced", "accepted": "accepted", "diverted": "diverted",
              "nonconforming_produced": "nonconforming produced",
              "nonconforming_accepted": "nonconforming accepted (escapes)",
              "conforming_diverted": "conforming diverted (waste)"}
    rows = [[(_e(labels.get(k, k)), False), (_num(v), True)] for k, v in s["tablets"].items()]
    return _table(["tablets", "count [-]"], rows)


def _mass(s: Mapping[str, Any], result: Any) -> str:
    mk = s["mass_kg"]
    init = (result.mass or {}).get("initial_holdup", {}) if hasattr(result, "mass") else {}
    rows = []
    tot = np.zeros(6)
    for m in result.materials:
        vals = [float(init.get(m, 0.0)), float(mk["fed"].get(m, 0.0)),
                float(mk["accepted"].get(m, 0.0)), float(mk["diverted"].get(m, 0.0)),
                float(mk["holdup"].get(m, 0.0))]
        resid = vals[0] + vals[1] - vals[2] - vals[3] - vals[4]
        tot += np.array([*vals, resid])
        rows.append([(_e(m), False)] + [(_num(v, ".6f"), True) for v in vals]
                    + [(_num(resid, ".2e"), True)])
    rows.append([("<b>total</b>", False)] + [(f"<b>{_num(v, '.6f')}</b>", True) for v in tot[:5]]
                + [(f"<b>{_num(tot[5], '.2e')}</b>", True)])
    return _table(["material", "initial hold-up [kg]", "fed [kg]", "accepted [kg]",
                   "diverted [kg]", "final hold-up [kg]",
                   "residual initial+fed-out-hold-up [kg]"], rows)


def _diversions(s: Mapping[str, Any], result: Any) -> str:
    events = s.get("diversion_events") or []
    if not events:
        return "<p>No diversion window was opened in this run.</p>"
    rows = []
    for d in events:
        a, b = d.get("start_s"), d.get("end_s")
        dur = float(b) - float(a) if a is not None and b is not None else None
        tablets = d.get("tablets")
        mass = d.get("mass_kg")
        if mass is None and tablets is not None:
            mass = float(tablets) * float(result.tablet_mass)
        rows.append([(_e(d.get("trigger")), False), (_e(d.get("method", "")), False),
                     (_num(a, ",.2f"), True), (_num(b, ",.2f"), True),
                     (_num(dur, ",.2f"), True), (_num(tablets), True), (_num(mass, ".4f"), True)])
    return _table(["trigger", "method", "start [s]", "end [s]", "duration [s]", "tablets [-]",
                   "mass [kg]"], rows)


def _genealogy(result: Any) -> str:
    rows = []
    for m, lot in result.channels:
        f = result.lot_forward(m, lot)
        rows.append([(_e(m), False), (_e(lot), False),
                     (_num(f.get("initial_holdup_kg"), ".5f"), True),
                     (_num(f.get("fed_kg"), ".5f"), True), (_num(f["accepted_kg"], ".5f"), True),
                     (_num(f["diverted_kg"], ".5f"), True), (_num(f["holdup_kg"], ".5f"), True),
                     (_num(f["accepted_tablets"]), True), (_num(f["diverted_tablets"]), True),
                     (_num(f["first_time_s"], ",.1f"), True),
                     (_num(f["last_time_s"], ",.1f"), True)])
    return _table(["material", "lot", "initial hold-up [kg]", "fed [kg]", "accepted [kg]",
                   "diverted [kg]", "hold-up at end [kg]", "tablets accepted [-]",
                   "tablets diverted [-]", "first at gate [s]", "last at gate [s]"], rows)


def _plain(value: Any) -> str:
    """A data value as short readable text (numbers to 6 significant digits)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_plain(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        shown = ", ".join(_plain(v) for v in value[:6])
        return f"[{shown}{', ...' if len(value) > 6 else ''}]"
    return str(value)


def _event_details(data: Mapping[str, Any]) -> str:
    """``key = value`` lines of an event's data (the source has its own column)."""
    items = [(k, v) for k, v in data.items() if k != "source"]
    return "<br>".join(f"{_e(k.replace('_', ' '))} = {_e(_plain(v))}" for k, v in items)


def _events(result: Any) -> str:
    log = list(getattr(result, "event_log", None) or [])
    if not log:
        return "<p>The event log is empty.</p>"
    rows = []
    for ev in log[:EVENTS_SHOWN]:
        rows.append([(_num(ev.get("time_s"), ",.2f"), True),
                     (_e(ev.get("type")), False),
                     (_e(ev.get("source")), False),
                     (_event_details(ev.get("data") or {}), False)])
    note = ""
    if len(log) > EVENTS_SHOWN:
        note = (f'<p class="note">First {EVENTS_SHOWN} of {len(log)} events; the complete, '
                "hash-chained log is events.jsonl.</p>")
    return note + _table(["time [s]", "event", "source", "details"], rows, cls="data")


#: What the diversion triggers mean (``feeder:<name>`` is matched by its prefix).
TRIGGERS = {
    "pat_oos": "NIR readings outside the specification for the required number of readings",
    "risk": "the probability that the content at the gate is outside the limits exceeds max_risk",
    "model_mismatch": "the estimator's innovation CUSUM: the NIR no longer fits its model",
    "mspc": "Hotelling T\u00b2 or Q of (innovation, load-cell flow residuals) above its limit",
    "shewhart": "Shewhart chart signal on the estimator's innovations",
    "ewma": "EWMA chart signal on the estimator's innovations",
    "cusum": "CUSUM chart signal on the estimator's innovations",
    "feeder": "a feeder's flow off its reference by more than the allowed deviation",
    "start_up": "the line started empty: divert until the state of control is reached",
    "shut_down": "every feeder stopped: divert until the end or the restart's start-up",
    "disturbance": "a known feeder disturbance (scheduled in the scenario)",
    "model_predicted_oos": "the RTD model predicts content out of limits",
    "manual": "a diversion requested without a monitoring rule",
}

#: How a diversion window is computed.
METHODS = {
    "A": "method A: the predicted content at the gate (feeder data through the RTD) is out of "
         "limits, plus margins",
    "B": "method B: from the disturbance's start and end through the RTD quantiles (the "
         "material that can be affected), plus margins",
    "PAT": "PAT: from the out-of-specification readings through the probe-to-gate RTD",
}


def _legend(s: Mapping[str, Any]) -> str:
    """Meaning of the triggers and methods that appear in this run's diversion windows."""
    triggers: list[str] = []
    methods: list[str] = []
    for d in s.get("diversion_events") or []:
        triggers += [x for x in str(d.get("trigger") or "").split("+") if x]
        methods += [x for x in str(d.get("method") or "").split("+") if x]
    items = []
    for trig in dict.fromkeys(triggers):
        key = "feeder" if trig.startswith("feeder:") else trig
        items.append((trig, TRIGGERS.get(key, "(no description)")))
    for m in dict.fromkeys(methods):
        items.append((f"method {m}", METHODS.get(m, "(no description)")))
    if not items:
        return ""
    body = "".join(f"<dt><code>{_e(k)}</code></dt><dd>{_e(v)}</dd>" for k, v in items)
    return f'<dl class="legend">{body}</dl>'


def _kv_rows(data: Mapping[str, Any]) -> list[list[tuple[str, bool]]]:
    return [[(_e(k), False), (_e(_plain(v)), False)] for k, v in data.items()
            if v is not None]


def _inputs(result: Any) -> str:
    """The scenario as the run used it: feeders, RTDs, disturbances, monitor (SI units)."""
    sc = (result.metadata or {}).get("scenario_data")
    if not isinstance(sc, Mapping):
        return "<p>The scenario of this run was not recorded.</p>"
    parts = ['<p>Values in SI units: [s], [kg], [kg/s], fractions [-]; the complete '
             "scenario is <code>scenario.toml</code> next to this report.</p>"]
    feeders = sc.get("feeders") or []
    if feeders:
        cols = ["name", "material", "role", "mass_flow", "lot", "noise_rsd"]
        rows = []
        for f in feeders:
            cells = [(_e(f.get(c)), False) for c in cols[:3]]
            cells.append((_num(3600.0 * float(f.get("mass_flow") or 0.0), ".4g"), True))
            cells.append((_e(f.get("lot")), False))
            cells.append((_num(100.0 * float(f.get("noise_rsd") or 0.0), "g"), True))
            cells.append((_e(_plain(f.get("hopper"))), False))
            rows.append(cells)
        parts += ["<h3>Feeders</h3>", _table(["name", "material", "role", "set point [kg/h]",
                                              "lot", "noise [% of set point]", "hopper"],
                                             rows)]
    rtds = {"blender": (sc.get("blender") or {}).get("rtd"),
            "transfer to the press": (sc.get("press") or {}).get("transfer_rtd"),
            "feed frame": (sc.get("press") or {}).get("feed_frame_rtd")}
    parts += ["<h3>Residence time distributions</h3>",
              _table(["unit", "model"], [[(_e(k), False), (_e(_plain(v)), False)]
                                         for k, v in rtds.items() if v is not None])]
    dist = sc.get("disturbances") or []
    parts.append("<h3>Disturbances</h3>")
    if dist:
        rows = [[(_num(d.get("start"), ",.1f"), True), (_e(d.get("type")), False),
                 (_e(_plain({k: v for k, v in d.items()
                             if k not in ("type", "start") and v is not None})), False)]
                for d in dist]
        parts.append(_table(["start [s]", "type", "parameters"], rows))
    else:
        parts.append("<p>None.</p>")
    for key, title in (("specification", "Specification"), ("pat", "PAT (NIR probe)"),
                       ("diversion", "Diversion"), ("monitor", "Monitor rules"),
                       ("control", "Control")):
        section = sc.get(key)
        if isinstance(section, Mapping) and section:
            parts += [f"<h3>{_e(title)}</h3>", _table(["field", "value"], _kv_rows(section))]
    return "\n".join(parts)


_CAPTIONS = {
    "api_trace": "True API content at the press gate (line), NIR readings at the probe "
                 "(markers, probe time), specification limits (dashed), diversion windows "
                 "(hatched) and ticks diverted by the gate (shaded).",
    "funnel": "Tolerable rectangular pulses of the API feeder: a pulse of a given duration "
              "and flow deviation inside the shaded funnel keeps the gate within "
              "specification (boundary delta / g(d), exact concentration form). Diamonds: "
              "feeder pulses of this run (red = outside the funnel).",
    "lots_gantt": "Where each lot is present at the press gate (lot share above the trace "
                  "epsilon), in tablet time; triangles mark hopper refills (feeder time).",
    "mass_flow": "Total mass flow at the press gate.",
    "monitor": "The line-state monitor's content estimate at the gate with a 3-sigma band, "
               "the true content, the limits (dashed), the diverted ticks (shaded) and the "
               "risk P(content outside the limits) on the right axis.",
    "innovations": "Standardised innovations of the monitor's NIR update (dots) and their "
                   "two-sided CUSUM with its decision interval (dashed): a signal means the "
                   "model no longer explains the readings.",
}
_TITLES = {"api_trace": "API content", "funnel": "Funnel plot",
           "lots_gantt": "Lots at the gate", "mass_flow": "Mass flow",
           "monitor": "Monitor estimate and risk", "innovations": "Innovations"}


def _figure(name: str, png: bytes) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return (f'<figure id="fig-{_e(name)}"><img alt="{_e(_TITLES.get(name, name))}" '
            f'src="data:image/png;base64,{b64}"><figcaption>{_e(_CAPTIONS.get(name, ""))}'
            "</figcaption></figure>")


def render_html(result: Any, *, model: Any = None,
                figures: Mapping[str, bytes] | None = None) -> str:
    """The report as an HTML string (see :func:`write_report`).

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    model : cmsim.rtd.RTDModel, optional
        RTD from the API feeder to the gate for the funnel plot (default :func:`gate_rtd`).
    figures : mapping of str to bytes, optional
        Pre-rendered PNGs from :func:`render_figures` (rendered here when omitted).

    Returns
    -------
    str
    """
    s = result.summary()
    md = result.metadata or {}
    figs = dict(figures) if figures is not None else render_figures(result, model=model)
    no_figures = figures is not None and not figs
    title = f"cmsim report: {s.get('scenario') or 'unnamed scenario'}"
    desc = md.get("description")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="desc">{_e(desc)}</p>' if desc else "",
        _kpis(s, result),
        "<h2>API content</h2>",
        _figure("api_trace", figs["api_trace"]) if "api_trace" in figs else "",
        "<h2>Diversion</h2>", _diversions(s, result), _legend(s),
        "<h2>Tablets</h2>", _tablets(s),
        "<h2>Mass balance</h2>",
        f"<p>Largest per-component relative error of initial hold-up + fed = accepted + "
        f"diverted + final hold-up: <b>{_num(s.get('mass_balance_max_rel_error'), '.3e')}</b>"
        "</p>", _mass(s, result),
        _figure("mass_flow", figs["mass_flow"]) if "mass_flow" in figs else "",
        "<h2>Funnel plot (API feeder to gate)</h2>",
        _figure("funnel", figs["funnel"]) if "funnel" in figs else
        '<p class="note">Figures were not rendered for this run (--no-figures).</p>'
        if no_figures else
        '<p class="note">No feeder-to-gate RTD was recorded with this run (or the limits and API '
        "fraction admit no funnel), so the funnel plot is not drawn.</p>",
        "<h2>Lot genealogy</h2>", _genealogy(result),
        _figure("lots_gantt", figs["lots_gantt"]) if "lots_gantt" in figs else "",
        "<h2>Inputs</h2>", _inputs(result),
        "<h2>Provenance</h2>", _provenance(s, result),
        f"<h2>Event log ({len(result.event_log or [])} events)</h2>", _events(result),
        f"<footer>Written {_e(_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M:%S UTC'))} "
        f"by cmsim {_e(s.get('cmsim_version'))}. Self-contained file: no external resources, "
        "no scripts.</footer>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def write_report(result: Any, path: str | os.PathLike, *, model: Any = None,
                 figures: Mapping[str, bytes] | None = None) -> Path:
    """Write the self-contained HTML report of a run, atomically.

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    path : path-like
        Target file (its directory must exist); replaced atomically (temporary file in the
        same directory, then a rename), so readers never see a partial file.
    model : cmsim.rtd.RTDModel, optional
        RTD from the API feeder to the gate for the funnel plot (default: from the run's
        metadata, see :func:`gate_rtd`; no funnel plot when neither is available).
    figures : mapping of str to bytes, optional
        Pre-rendered PNGs from :func:`render_figures`.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    target = Path(path)
    text = render_html(result, model=model, figures=figures)
    return atomic_write(target, lambda p: p.write_text(text, encoding="utf-8"))
