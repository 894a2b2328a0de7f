"""Plots of a :class:`cmsim.results.SimulationResult` (matplotlib, imported lazily).

Every helper takes ``ax=None`` (a new figure is made through pyplot when omitted) and returns
the Axes (or the Figure for :func:`overview`). Importing this module does not import matplotlib.

Artists that tests and reports look up carry a ``gid``: ``"api-true"``, ``"api-measured"``,
``"spec-limit"``, ``"diversion-window"``, ``"diverted"`` (:func:`api_trace`),
``"funnel-overfeed"``, ``"funnel-underfeed"``, ``"funnel-acceptable"``, ``"funnel-events"``
(:func:`funnel`), ``"lot:<material>/<lot>"`` and ``"charge"`` (:func:`lot_gantt`).

Optional result members (used when present, ignored when absent):

* ``result.diversion_events``: list of dicts with ``start_s``, ``end_s`` [s], ``trigger``,
  ``tablets``;
* ``result.nir_readings``: mapping or DataFrame with ``time_s`` [s] and either
  ``api_content`` (fraction of target) [-] or ``api_fraction`` (mass fraction) [-]; NaN entries
  (dropouts) are skipped. Optional ``location`` (str) labels the trace.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "api_content",
    "api_trace",
    "disturbance_points",
    "funnel",
    "innovations",
    "lot_gantt",
    "lot_intervals",
    "lot_shares",
    "mass_flow",
    "monitor_estimate",
    "nir_readings",
    "overview",
]

#: Colours used throughout (tab10 names), so every figure reads the same way.
_C_TRUE = "tab:blue"
_C_MEAS = "black"
_C_LIMIT = "tab:red"
_C_DIVERT = "tab:red"
_C_WINDOW = "tab:orange"
_C_OK = "tab:green"


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt  # noqa: PLC0415

    _, ax = plt.subplots(layout="constrained")
    return ax


def _style(ax: Any) -> None:
    ax.grid(True, which="major", alpha=0.3, lw=0.6)
    _plain_numbers(ax)


def _plain_numbers(ax: Any) -> None:
    """No offset notation (``1e-11+2e1``) on linear axes: engineers read plain values."""
    from matplotlib.ticker import ScalarFormatter  # noqa: PLC0415

    for axis in (ax.xaxis, ax.yaxis):
        fmt = axis.get_major_formatter()
        if isinstance(fmt, ScalarFormatter):
            fmt.set_useOffset(False)


def _at_least_span(ax: Any, values: np.ndarray, rel: float = 0.05) -> None:
    """Give a (nearly) constant curve a y-range of +-``rel`` of its level, not +-1e-12."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return
    lo, hi = float(v.min()), float(v.max())
    level = max(abs(lo), abs(hi), 1e-300)
    if hi - lo < rel * level:
        mid = 0.5 * (lo + hi)
        ax.set_ylim(mid - rel * level, mid + rel * level)


def _time_scale(t_end: float) -> tuple[float, str]:
    """Divisor and axis label for a run of length ``t_end`` [s]."""
    if t_end > 3 * 3600:
        return 3600.0, "time [h]"
    if t_end > 600:
        return 60.0, "time [min]"
    return 1.0, "time [s]"


def _time_axis(result: Any) -> tuple[np.ndarray, str]:
    t = result.time_s
    scale, label = _time_scale(float(result.n_ticks * result.dt))
    return t / scale, label


def _mask_spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(a, b)]`` index ranges (``b`` exclusive) where ``mask`` is True."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], m.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _shade_diverted(ax: Any, result: Any, scale: float, *, label: str | None = None) -> int:
    """Shade the ticks where the gate diverted; return the number of spans drawn."""
    dt = float(result.dt)
    spans = _mask_spans(np.asarray(result.diverted, dtype=bool))
    for i, (a, b) in enumerate(spans):
        ax.axvspan(a * dt / scale, b * dt / scale, color=_C_DIVERT, alpha=0.15, lw=0,
                   gid="diverted", label=label if i == 0 else None)
    return len(spans)


def nir_readings(result: Any) -> tuple[np.ndarray, np.ndarray, str | None] | None:
    """Measured NIR readings of a result as API content, if the run recorded any.

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run; uses ``result.nir_readings`` when present (see the module docstring).

    Returns
    -------
    (ndarray, ndarray, str or None) or None
        Reading times [s], API content as a fraction of target [-] (dropouts removed) and the
        probe location; None when the result has no readings.
    """
    rd = getattr(result, "nir_readings", None)
    if rd is None:
        return None
    try:
        t = np.asarray(rd["time_s"], dtype=np.float64)
    except (KeyError, TypeError, IndexError):
        return None
    cols = getattr(rd, "columns", None)
    keys = set(cols) if cols is not None else set(rd.keys()) if hasattr(rd, "keys") else set()
    if "api_content" in keys:
        y = np.asarray(rd["api_content"], dtype=np.float64)
    elif "api_fraction" in keys:
        y = np.asarray(rd["api_fraction"], dtype=np.float64) / float(result.target_api_fraction)
    else:
        return None
    location = rd.get("location") if hasattr(rd, "get") and not hasattr(rd, "columns") else None
    ok = np.isfinite(t) & np.isfinite(y)
    return t[ok], y[ok], (str(location) if location is not None else None)


def api_content(result: Any, ax: Any = None) -> Any:
    """API content at the gate as a fraction of target, with the specification limits.

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    scale, label = _time_scale(float(result.n_ticks * result.dt))
    t = result.time_s / scale
    ax.plot(t, 100.0 * result.api_content, lw=1.0, color=_C_TRUE, label="API content")
    lo, hi = result.api_content_limits
    for lim in (lo, hi):
        ax.axhline(100.0 * lim, color=_C_LIMIT, ls="--", lw=0.8)
    _shade_diverted(ax, result, scale)
    ax.set_xlabel(label)
    ax.set_ylabel("API content [% of target]")
    ax.set_title("API content at the press gate")
    _style(ax)
    return ax


def monitor_estimate(result: Any, ax: Any = None) -> Any:
    """The line-state monitor's view of the gate: its content estimate with a 3-sigma band
    against the true content, the limits, the diverted ticks and the risk (right axis).

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        A run with the line-state monitor (``pat_signals`` has ``soft``, ``est_sd``, ``risk``).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.

    Returns
    -------
    matplotlib.axes.Axes
    """
    sig = result.pat_signals
    if "est_sd" not in sig:
        raise ValueError("this run has no line-state monitor (no [pat]/[diversion] table)")
    ax = _axes(ax)
    scale, label = _time_scale(float(result.n_ticks * result.dt))
    t = result.time_s / scale
    c = 100.0 * np.asarray(sig["soft"], dtype=np.float64)
    band = 300.0 * np.asarray(sig["est_sd"], dtype=np.float64)
    ax.fill_between(t, c - band, c + band, color=_C_WINDOW, alpha=0.25, lw=0,
                    label="estimate +- 3 sd")
    ax.plot(t, c, color=_C_WINDOW, lw=1.0, label="monitor estimate")
    ax.plot(t, 100.0 * result.api_content, color=_C_TRUE, lw=0.8, label="true content")
    for lim in result.api_content_limits:
        ax.axhline(100.0 * lim, color=_C_LIMIT, ls="--", lw=0.8)
    _shade_diverted(ax, result, scale, label="diverted")
    ax.set_xlabel(label)
    ax.set_ylabel("API content [% of target]")
    risk_ax = ax.twinx()
    risk_ax.semilogy(t, np.clip(np.asarray(sig["risk"], dtype=np.float64), 1e-9, 1.0),
                     color="tab:purple", lw=0.6, alpha=0.7, label="risk")
    risk_ax.set_ylim(1e-9, 2.0)
    risk_ax.set_ylabel("risk P(out of limits) [-]")
    ax.legend(loc="lower left", fontsize="small")
    ax.set_title("Line-state monitor: estimate and risk at the gate")
    _style(ax)
    return ax


def innovations(result: Any, ax: Any = None, *, k: float | None = None,
                h: float | None = None) -> Any:
    """Standardised innovations of the monitor's NIR update and their two-sided CUSUM.

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        A run with the line-state monitor (``pat_signals`` has ``z_t`` and ``z``).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.
    k, h : float, optional
        CUSUM reference value and decision interval [-] (default 0.5 and 8, the monitor's).

    Returns
    -------
    matplotlib.axes.Axes
    """
    sig = result.pat_signals
    if "z" not in sig:
        raise ValueError("this run has no line-state monitor innovations")
    k = 0.5 if k is None else float(k)
    h = 8.0 if h is None else float(h)
    ax = _axes(ax)
    scale, label = _time_scale(float(result.n_ticks * result.dt))
    zt = np.asarray(sig["z_t"], dtype=np.float64)
    z = np.asarray(sig["z"], dtype=np.float64)
    hi = np.empty(z.size)
    lo = np.empty(z.size)
    cp = cm = 0.0
    for i, x in enumerate(z.tolist()):  # restarted after a signal, as in the monitor
        cp, cm = max(0.0, cp + x - k), max(0.0, cm - x - k)
        hi[i], lo[i] = cp, cm
        if cp > h or cm > h:
            cp = cm = 0.0
    ax.plot(zt / scale, z, ".", ms=1.5, color=_C_MEAS, alpha=0.5, label="innovation z")
    ax.plot(zt / scale, hi, color=_C_TRUE, lw=0.9, label="CUSUM C+")
    ax.plot(zt / scale, -lo, color=_C_OK, lw=0.9, label="CUSUM C- (negated)")
    for y in (h, -h):
        ax.axhline(y, color=_C_LIMIT, ls="--", lw=0.8)
    ax.set_xlabel(label)
    ax.set_ylabel("standardised innovation [-]")
    ax.legend(loc="lower left", fontsize="small")
    ax.set_title("NIR innovations and their CUSUM (model-mismatch chart)")
    _style(ax)
    return ax


def api_trace(result: Any, ax: Any = None) -> Any:
    """True vs measured API content with specification limits and diversion bands.

    Draws the true API content at the gate [% of target] (line, gid ``"api-true"``), the
    specification limits (gid ``"spec-limit"``), the NIR readings when the result has them
    (markers, gid ``"api-measured"``; probe time, so they lead the gate trace by the
    probe-to-gate transport time), one band per diversion window of
    ``result.diversion_events`` (gid ``"diversion-window"``, hatched outline) and the ticks the
    gate actually diverted (gid ``"diverted"``, filled).

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    scale, label = _time_scale(float(result.n_ticks * result.dt))
    t = result.time_s / scale
    lo, hi = result.api_content_limits
    windows = list(getattr(result, "diversion_events", None) or [])
    for i, w in enumerate(windows):
        ax.axvspan(float(w["start_s"]) / scale, float(w["end_s"]) / scale, facecolor="none",
                   edgecolor=_C_WINDOW, hatch="//", lw=0.8, gid="diversion-window",
                   label="diversion window" if i == 0 else None)
    _shade_diverted(ax, result, scale, label="diverted at the gate")
    meas = nir_readings(result)
    if meas is not None and meas[0].size:
        where = f" ({meas[2]})" if meas[2] else ""
        ax.plot(meas[0] / scale, 100.0 * meas[1], ls="none", marker=".", ms=3,
                color=_C_MEAS, alpha=0.6, gid="api-measured", label=f"NIR measured{where}")
    ax.plot(t, 100.0 * result.api_content, lw=1.2, color=_C_TRUE, gid="api-true",
            label="true (gate)")
    ax.axhline(100.0 * hi, color=_C_LIMIT, ls="--", lw=0.9, gid="spec-limit",
               label=f"limits {100 * lo:g}-{100 * hi:g} %")
    ax.axhline(100.0 * lo, color=_C_LIMIT, ls="--", lw=0.9, gid="spec-limit")
    ax.axhline(100.0, color="0.5", lw=0.6)
    ax.set_xlabel(label)
    ax.set_ylabel("API content [% of target]")
    ax.set_title("API content: true at the gate vs measured, with diversion")
    ax.legend(fontsize="small", loc="best")
    _style(ax)
    return ax


def mass_flow(result: Any, ax: Any = None) -> Any:
    """Total mass flow at the gate [kg/h].

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    t, label = _time_axis(result)
    flow = result.mass_flow * 3600.0
    ax.plot(t, flow, lw=1.0, color=_C_OK)
    _at_least_span(ax, flow)
    ax.set_xlabel(label)
    ax.set_ylabel("mass flow [kg/h]")
    ax.set_title("Mass flow at the press gate")
    _style(ax)
    return ax


def lot_shares(result: Any, ax: Any = None) -> Any:
    """Lot shares of each material at the gate (one line per lot; materials with one lot are
    drawn too, at 1).

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from cmsim import tracing  # noqa: PLC0415

    ax = _axes(ax)
    t, label = _time_axis(result)
    phi = tracing.lot_shares(result.gate_flow, result.channels)
    for i, (m, lot) in enumerate(result.channels):
        ax.plot(t, phi[i], lw=1.0, label=f"{m} / {lot}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(label)
    ax.set_ylabel("lot share [-]")
    ax.set_title("Lot shares at the press gate")
    ax.legend(fontsize="small", loc="best")
    _style(ax)
    return ax


def lot_intervals(result: Any) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Where each lot is present at the gate, in tablet time.

    A tick ``k`` (covering ``[k dt, (k+1) dt)``) contains a lot when its share of the material's
    gate flow exceeds the trace epsilon ``result.trace_epsilon`` (the rule of
    :meth:`SimulationResult.lot_forward`).

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.

    Returns
    -------
    dict
        ``{(material, lot): [(start_s, end_s), ...]}`` [s], maximal runs of consecutive ticks.
    """
    from cmsim import tracing  # noqa: PLC0415

    phi = tracing.lot_shares(result.gate_flow, result.channels)
    eps = float(result.trace_epsilon)
    dt = float(result.dt)
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for i, key in enumerate(result.channels):
        with np.errstate(invalid="ignore"):
            present = phi[i] > eps
        out[(str(key[0]), str(key[1]))] = [(a * dt, b * dt) for a, b in _mask_spans(present)]
    return out


def _charges(result: Any) -> list[tuple[float, str, str]]:
    """Feeder-side charge times ``(time_s, material, lot)`` from the refill events."""
    out = []
    for ev in getattr(result, "event_log", None) or []:
        if ev.get("type") != "refill_start":
            continue
        data = ev.get("data") or {}
        if "material" in data and "lot" in data:
            out.append((float(ev["time_s"]), str(data["material"]), str(data["lot"])))
    return out


def lot_gantt(result: Any, ax: Any = None) -> Any:
    """Gantt chart of the lots of every material at the gate, in tablet time.

    One row per ``(material, lot)``, grouped by material; a bar where the lot is present at the
    gate (see :func:`lot_intervals`; gid ``"lot:<material>/<lot>"``). Refill starts from the
    event log (the time the lot was charged into the feeder hopper, feeder time) are marked
    with a triangle on the lot's row (gid ``"charge"``).

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    scale, label = _time_scale(float(result.n_ticks * result.dt))
    spans = lot_intervals(result)
    rows = list(spans)
    materials = list(dict.fromkeys(m for m, _ in rows))
    colors = {m: f"C{i % 10}" for i, m in enumerate(materials)}
    y_of = {key: len(rows) - 1 - i for i, key in enumerate(rows)}
    for key in rows:
        y = y_of[key]
        bars = [(a / scale, (b - a) / scale) for a, b in spans[key]]
        ax.broken_barh(bars, (y - 0.35, 0.7), facecolors=colors[key[0]], alpha=0.85,
                       gid=f"lot:{key[0]}/{key[1]}")
    charges = [(t, m, lot) for t, m, lot in _charges(result) if (m, lot) in y_of]
    if charges:
        # on the lot's own row (its centre line), above the bars
        ax.plot([t / scale for t, _, _ in charges], [y_of[(m, lot)] for _, m, lot in charges],
                ls="none", marker="v", ms=7, color="black", markeredgecolor="white",
                zorder=3, gid="charge", label="charged into hopper (feeder time)")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_yticks([y_of[k] for k in rows], [f"{m} / {lot}" for m, lot in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlim(0.0, result.n_ticks * result.dt / scale)
    ax.set_xlabel(f"tablet {label}")
    ax.set_ylabel("material / lot")
    ax.set_title(f"Lots at the press gate (share > {result.trace_epsilon:g})")
    ax.grid(True, axis="x", alpha=0.3, lw=0.6)
    return ax


def disturbance_points(result: Any, feeders: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Rectangular feeder disturbances of a run as funnel-plot points.

    ``feeder_stop`` events give magnitude -1 (a -100 % pulse); ``feeder_step`` events with a
    duration give ``mass_flow / previous - 1``. Permanent steps (no duration) are not pulses
    and are left out.

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run (its ``event_log``).
    feeders : iterable of str, optional
        Feeder names to keep (``"api"`` for ``source == "feeder.api"``); all by default.

    Returns
    -------
    list of dict
        ``{"feeder", "type", "time_s", "duration_s", "magnitude"}`` ([s], [s], relative [-]).
    """
    keep = None if feeders is None else {str(f) for f in feeders}
    out = []
    for ev in getattr(result, "event_log", None) or []:
        typ = ev.get("type")
        data = ev.get("data") or {}
        dur = data.get("duration_s")
        if typ not in ("feeder_stop", "feeder_step") or dur is None:
            continue
        src = str(data.get("target") or ev.get("source") or "")
        name = src.split(".", 1)[1] if src.startswith("feeder.") else src
        if keep is not None and name not in keep:
            continue
        if typ == "feeder_stop":
            mag = -1.0
        else:
            prev = float(data.get("previous_kg_s") or 0.0)
            if not prev > 0.0:
                continue
            mag = float(data["mass_flow_kg_s"]) / prev - 1.0
        out.append({"feeder": name, "type": typ, "time_s": float(ev["time_s"]),
                    "duration_s": float(dur), "magnitude": mag})
    return out


def _delta_pair(delta: Any) -> tuple[float, float]:
    from cmsim import _validate  # noqa: PLC0415

    if isinstance(delta, (tuple, list)) and len(delta) == 2:
        return (_validate.probability("delta[0]", delta[0]),
                _validate.probability("delta[1]", delta[1]))
    d = _validate.probability("delta", delta)
    return d, d


#: Peak responses g(d) already computed, keyed by (model, durations bytes): a funnel of a series
#: of RTDs costs 30-430 ms, and a report draws the same funnel for every run.
_PEAK_CACHE: dict[tuple[Any, bytes], np.ndarray] = {}
_PEAK_CACHE_SIZE = 32


def _peak(model: Any, d: np.ndarray) -> np.ndarray:
    from cmsim.rtd import peak_response  # noqa: PLC0415

    key = (model, np.ascontiguousarray(d, dtype=np.float64).tobytes())
    g = _PEAK_CACHE.get(key)
    if g is None:
        g = np.asarray(peak_response(model, d), dtype=np.float64)
        if len(_PEAK_CACHE) >= _PEAK_CACHE_SIZE:
            _PEAK_CACHE.pop(next(iter(_PEAK_CACHE)))
        _PEAK_CACHE[key] = g
    return g.copy()


def _branches(model: Any, d: np.ndarray, d_lo: float, d_hi: float,
              api_fraction: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Over- and underfeed boundaries (positive magnitudes [-]) at durations ``d``.

    ``cmsim.rtd.funnel_boundary`` of both half-widths from one evaluation of ``g(d)``:
    ``delta / g`` (low-dose) or ``delta / [(1 - w0 (1 +- delta)) g]`` (docs/rtd.md, funnel
    plots).
    """
    from cmsim import _validate  # noqa: PLC0415
    from cmsim.errors import ParameterError  # noqa: PLC0415

    g = _peak(model, d)
    with np.errstate(divide="ignore"):
        inv = np.where(g > 0.0, 1.0 / np.where(g > 0.0, g, 1.0), np.inf)
    if api_fraction is None:
        return d_hi * inv, d_lo * inv
    w0 = _validate.probability("api_fraction", api_fraction)
    if not w0 * (1.0 + d_hi) < 1.0:
        raise ParameterError("api_fraction", api_fraction,
                             f"must be < 1/(1 + delta) = {1.0 / (1.0 + d_hi):.6g}")
    return d_hi * inv / (1.0 - w0 * (1.0 + d_hi)), d_lo * inv / (1.0 - w0 * (1.0 - d_lo))


def funnel(model: Any, delta: float | tuple[float, float], durations: Any = None, ax: Any = None,
           api_fraction: float | None = None,
           events: Sequence[Mapping[str, Any]] | Sequence[tuple[float, float]] | None = None
           ) -> Any:
    """Funnel plot: tolerable rectangular feeder disturbances vs their duration.

    The boundary is the smallest relative pulse magnitude that takes the outlet out of
    specification, ``A*(d) = delta / g(d)`` with ``g(d) = max_t [F(t) - F(t-d)]``
    (:func:`cmsim.rtd.funnel_boundary`), drawn for overfeeding (upper branch, gid
    ``"funnel-overfeed"``, ``+100 A*`` [%]) and underfeeding (lower branch, gid
    ``"funnel-underfeed"``, ``-100 A*`` [%], clipped at -100 %: a feeder cannot deliver less
    than nothing). The region between the branches is shaded (gid ``"funnel-acceptable"``).

    Parameters
    ----------
    model : cmsim.rtd.RTDModel
        RTD from the disturbed feeder to where quality is judged (the gate).
    delta : float or (float, float)
        Specification half-width as a fraction (0.05 for +-5 %), or ``(delta_low,
        delta_high)`` for asymmetric limits ``[1 - delta_low, 1 + delta_high]``.
    durations : array_like, optional
        Pulse durations [s], > 0; default 32 log-spaced points from ``mean / 1000`` to
        ``30 mean`` of the model.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.
    api_fraction : float, optional
        Nominal mass fraction of the disturbed component: exact concentration boundaries
        (:class:`cmsim.rtd.FunnelBranches`) instead of the low-dose limit.
    events : sequence, optional
        Observed disturbances to overlay: dicts with ``duration_s`` and ``magnitude``
        (relative, -1 = stop; see :func:`disturbance_points`) or ``(duration_s, magnitude)``
        pairs. Points outside the funnel are drawn red, inside green (gid ``"funnel-events"``).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    cmsim.errors.ParameterError
        Invalid ``model``, ``delta``, ``durations`` or ``api_fraction``.
    """
    from cmsim import _validate  # noqa: PLC0415
    from cmsim.errors import ParameterError  # noqa: PLC0415
    from cmsim.rtd import RTDModel  # noqa: PLC0415

    if not isinstance(model, RTDModel):
        raise ParameterError("model", model, "must be an RTDModel")
    d_lo, d_hi = _delta_pair(delta)
    if durations is None:
        mean = float(model.mean)
        d = np.geomspace(mean * 1e-3, mean * 30.0, 32)
    else:
        d = _validate.finite_array("durations", durations).ravel()
        if d.size == 0 or np.any(d <= 0.0):
            raise ParameterError("durations", durations, "must be a non-empty array of values > 0")
        d = np.sort(d)
    over, under = _branches(model, d, d_lo, d_hi, api_fraction)
    pts = []
    for i, e in enumerate(events or ()):
        de, me = ((e["duration_s"], e["magnitude"]) if isinstance(e, Mapping) else (e[0], e[1]))
        de, me = float(de), float(me)
        if not (math.isfinite(de) and de > 0.0 and math.isfinite(me) and me >= -1.0):
            raise ParameterError(f"events[{i}]", e, "needs a finite duration > 0 [s] and a "
                                 "finite magnitude >= -1")
        pts.append((de, me))
    ax = _axes(ax)
    top = max([150.0] + [120.0 * m for _, m in pts])
    ax.fill_between(d, -np.minimum(100.0 * under, 100.0), np.minimum(100.0 * over, 10 * top),
                    color=_C_OK, alpha=0.12, lw=0, gid="funnel-acceptable",
                    label="tolerable (stays in specification)")
    ax.plot(d, 100.0 * over, color=_C_LIMIT, lw=1.5, gid="funnel-overfeed",
            label=f"boundary, overfeed (+{100 * d_hi:g} % at the gate)")
    ax.plot(d, -np.minimum(100.0 * under, 100.0), color="tab:purple", lw=1.5,
            gid="funnel-underfeed", label=f"boundary, underfeed (-{100 * d_lo:g} % at the gate)")
    ax.axhline(-100.0, color="0.4", lw=0.7, ls=":")
    ax.axhline(0.0, color="0.5", lw=0.6)
    if pts:
        pd_, pm = np.array(pts).T
        b_over, b_under = _branches(model, pd_, d_lo, d_hi, api_fraction)
        outside = np.where(pm >= 0.0, pm > b_over, -pm > b_under)
        colors = np.where(outside, _C_LIMIT, _C_OK)
        ax.scatter(pd_, 100.0 * pm, c=list(colors), marker="D", s=45, edgecolors="black",
                   zorder=5, gid="funnel-events", label="observed feeder disturbances")
    ax.set_xscale("log")
    ax.set_xlim(float(d[0]), float(d[-1]))
    ax.set_ylim(-130.0, top)
    ax.set_xlabel("disturbance duration [s]")
    ax.set_ylabel("feeder flow deviation [% of nominal]")
    kind = "exact concentration" if api_fraction is not None else "low-dose limit"
    ax.set_title(f"Funnel plot: tolerable feeder pulses ({kind})")
    ax.legend(fontsize="small", loc="lower right" if not pts else "best")
    ax.grid(True, which="both", alpha=0.25, lw=0.5)
    return ax


def overview(result: Any, fig: Any = None) -> Any:
    """Three stacked panels: API content vs limits, mass flow, lot shares.

    Parameters
    ----------
    result : cmsim.results.SimulationResult
        The run.
    fig : matplotlib.figure.Figure, optional
        Figure to draw into (a new pyplot figure by default).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if fig is None:
        import matplotlib.pyplot as plt  # noqa: PLC0415

        fig = plt.figure(figsize=(9, 8), layout="constrained")
    elif not hasattr(fig, "subplots"):
        from cmsim.errors import ParameterError  # noqa: PLC0415

        raise ParameterError("fig", fig, "must be a matplotlib Figure (or None for a new one)")
    axes = fig.subplots(3, 1, sharex=True)
    api_content(result, ax=axes[0])
    mass_flow(result, ax=axes[1])
    lot_shares(result, ax=axes[2])
    for ax in axes[:-1]:
        ax.set_xlabel("")
    return fig
