"""Compact HTML tables for Jupyter (``_repr_html_`` of results, RTD models and RTD fits).

Plain string formatting only (``html.escape`` and f-strings): no pandas, no templates, so the
numerics in :mod:`cmsim.rtd` can use it. The objects are read through their public attributes
(duck typing); nothing here imports the rest of cmsim.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

__all__ = ["fmt", "rtd_fit_html", "rtd_model_html", "result_html", "table"]

#: Quantiles shown for an RTD model [-].
MODEL_QUANTILES = (0.005, 0.05, 0.5, 0.95, 0.995)

#: Units of the RTD model parameters by name.
_PARAM_UNITS = {"mean_residence_time": "s", "delay": "s", "n_tanks": "-", "peclet": "-"}

_STYLE = "border-collapse:collapse;font-size:0.9em"
_TH = "text-align:left;padding:1px 8px"
_TD = "text-align:right;padding:1px 8px;font-family:monospace"


def fmt(x: Any, digits: int = 6) -> str:
    """A number with ``digits`` significant digits (``nan``, ``inf`` as words), else ``str``."""
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, (int, float)) or hasattr(x, "__float__"):
        v = float(x)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.{digits}g}"
    return str(x)


def table(rows: Iterable[Sequence[Any]], *, header: Sequence[str] | None = None,
          caption: str | None = None) -> str:
    """An HTML table; every cell is escaped. The first cell of a row is a row header.

    Parameters
    ----------
    rows : iterable of sequences
        Cell texts (``str`` is taken as is, numbers through :func:`fmt`).
    header : sequence of str, optional
        Column headings.
    caption : str, optional
        Table caption.
    """
    out = [f'<table style="{_STYLE}">']
    if caption:
        out.append(f'<caption style="text-align:left;font-weight:bold">{escape(caption)}'
                   "</caption>")
    if header:
        out.append("<thead><tr>" + "".join(f'<th style="{_TH}">{escape(str(h))}</th>'
                                           for h in header) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        cells = [c if isinstance(c, str) else fmt(c) for c in row]
        out.append("<tr>" + f'<th style="{_TH}">{escape(cells[0])}</th>'
                   + "".join(f'<td style="{_TD}">{escape(c)}</td>' for c in cells[1:])
                   + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


# ------------------------------------------------------------------------------- RTD models
def _param_rows(model: Any) -> list[tuple[str, str]]:
    stages = getattr(model, "stages", None)
    if stages is not None:  # Series: one row per stage
        return [(f"stage {i + 1}", repr(s)) for i, s in enumerate(stages)]
    rows = []
    for name, value in model.params.items():
        if isinstance(value, (tuple, list)) and len(value) > 4:  # tabulated curves
            vals = [float(v) for v in value]
            text = f"{len(vals)} values, {fmt(min(vals))} to {fmt(max(vals))}"
        else:
            text = fmt(value)
        unit = _PARAM_UNITS.get(name)
        rows.append((f"{name} [{unit}]" if unit else name, text))
    return rows


def rtd_model_html(model: Any) -> str:
    """Name, parameters, mean, variance and a few quantiles of a :mod:`cmsim.rtd` model."""
    rows: list[tuple[str, Any]] = list(_param_rows(model))
    rows += [("mean [s]", model.mean), ("variance [s^2]", model.variance),
             ("standard deviation [s]", math.sqrt(max(model.variance, 0.0)))]
    qs = model.quantile(list(MODEL_QUANTILES))
    rows += [(f"t_{100 * q:g}% [s]", float(t)) for q, t in zip(MODEL_QUANTILES, qs,
                                                               strict=True)]
    return table(rows, header=("", "value"), caption=f"RTD model: {type(model).__name__}")


# --------------------------------------------------------------------------------- RTD fits
def rtd_fit_html(fit: Any, level: float = 0.95) -> str:
    """Fitted parameters with standard errors and confidence intervals, R^2 and RMS."""
    ci = fit.confidence_interval(level)
    values = {**fit.params, **fit.nuisance}
    rows = []
    for name in fit.covariance_names:
        unit = _PARAM_UNITS.get(name)
        lo, hi = ci[name]
        rows.append((f"{name} [{unit}]" if unit else name, values[name], fit.stderr[name],
                     lo, hi))
    pct = f"{100 * level:g} %"
    params = table(rows, header=("parameter", "value", "stderr", f"{pct} low", f"{pct} high"),
                   caption=f"RTD fit: {fit.model_name} ({fit.kind} data)")
    stats = table([
        ("R^2", fit.r_squared),
        ("residual RMS", fit.residual_rms),
        ("points used / dof", f"{fit.n_points} / {fit.dof}"),
        ("converged", str(bool(fit.success))),
        ("fitted mean [s]", fit.model.mean),
        ("fitted variance [s^2]", fit.model.variance),
    ], header=("", "value"))
    return f"<div>{params}{stats}</div>"


# ------------------------------------------------------------------------ simulation results
def _lot_text(channels: Sequence[tuple[str, str]]) -> str:
    lots: dict[str, list[str]] = {}
    for material, lot in channels:
        lots.setdefault(material, []).append(lot)
    return "; ".join(f"{m}: {', '.join(ls)}" for m, ls in lots.items())


def result_html(result: Any) -> str:
    """Key figures of a :class:`cmsim.SimulationResult`: tablets, escapes, waste, mass, lots."""
    s = result.summary()
    tab = s["tablets"]
    mass = {key: sum(float(v) for v in result.mass.get(key, {}).values())
            for key in ("fed", "initial_holdup", "accepted", "diverted", "holdup")}
    sha = str(s.get("scenario_sha256") or "")

    def count(x: float) -> str:  # tablet counts are floats (mass / tablet mass)
        return f"{float(x):.1f}"

    rows = [
        ("duration [s]", s["duration_s"]),
        ("tablets produced", count(tab["produced"])),
        ("tablets accepted", count(tab["accepted"])),
        ("tablets diverted", count(tab["diverted"])),
        ("escapes (nonconforming accepted)", count(tab["nonconforming_accepted"])),
        ("waste (conforming diverted)", count(tab["conforming_diverted"])),
        ("diversion events", len(s.get("diversion_events") or ())),
        ("mass in: fed + initial hold-up [kg]", mass["fed"] + mass["initial_holdup"]),
        ("mass out: accepted + diverted + hold-up [kg]",
         mass["accepted"] + mass["diverted"] + mass["holdup"]),
        ("mass balance error (max relative)", fmt(s["mass_balance_max_rel_error"], 3)),
        ("lots", _lot_text(result.channels)),
        ("seed", str(s.get("seed"))),
        ("scenario SHA-256", sha[:16] + ("..." if len(sha) > 16 else "")),
    ]
    return table(rows, header=("", "value"), caption=f"cmsim run: {s.get('scenario')}")
