"""Diversion windows at the diverter (docs/monitor.md#diversion-windows).

Three ways to compute the output-time window that must be diverted, and their union:

* **Method A** (:func:`predicted_window`): where a predicted concentration series at the
  diverter (feeder data through the RTD model, one series per credible parameter set) is
  outside the limits, widened by margins.
* **Method B** (:func:`quantile_window`): disturbance interval ``[t0, t1]`` at the feeder plus
  RTD quantiles, ``[t0 + min t_alpha - m_s, t1 + max t_(1-alpha) + m_e]`` over an envelope of
  credible RTD models; at most ``alpha`` of the disturbed mass leaves before and ``alpha``
  after the window.
* **PAT-triggered** (:func:`pat_window`): from the first out-of-limit reading and the reading
  that clears the alarm, back-projected through latency and the probe-to-diverter RTD.

:func:`merge_windows` takes the union, merges overlaps and keeps every contributing trigger.
All times are in seconds of simulation time [s] at the diverter unless stated otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cmsim._validate import finite_array, non_negative, positive
from cmsim.errors import ParameterError
from cmsim.rtd.models import RTDModel, Series

__all__ = [
    "cached_quantile",
    "cached_series",
    "rtd_envelope",
    "scale_residence_times",
    "DiversionWindow",
    "default_margin",
    "merge_windows",
    "oos_intervals",
    "pat_window",
    "predicted_window",
    "quantile_window",
]


@dataclass(frozen=True)
class DiversionWindow:
    """An interval of output time at the diverter to divert, with its provenance.

    Attributes
    ----------
    start_s, end_s : float
        Window at the diverter [s], ``start_s <= end_s``.
    trigger : str
        What opened it (``"feeder_fault:api"``, ``"pat_oos"``, ...); for a merged window the
        contributing triggers joined with ``"+"``.
    method : str
        ``"A"`` (predicted concentration), ``"B"`` (RTD quantiles), ``"PAT"``, or several
        joined with ``"+"`` for a merged window.
    margins : tuple of float
        ``(margin_start, margin_end)`` applied [s].
    alpha : float or None
        Quantile level of method B / PAT windows.
    rtd_params : tuple of dict
        ``params`` of each RTD model used (the envelope Theta), for the audit record.
    sources : tuple of DiversionWindow
        For a merged window, the original windows; empty otherwise.
    details : dict
        Extra audit information (trigger times, limits, ...); plain JSON values.
    """

    start_s: float
    end_s: float
    trigger: str
    method: str
    margins: tuple[float, float] = (0.0, 0.0)
    alpha: float | None = None
    rtd_params: tuple[Mapping[str, Any], ...] = ()
    sources: tuple[DiversionWindow, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("start_s", "end_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not math.isfinite(float(v)):
                raise ParameterError(name, v, "must be a finite number")
        if float(self.end_s) < float(self.start_s):
            raise ParameterError("end_s", self.end_s, f"must be >= start_s = {self.start_s}")

    @property
    def duration_s(self) -> float:
        """Length of the window [s]."""
        return float(self.end_s) - float(self.start_s)

    @property
    def triggers(self) -> tuple[str, ...]:
        """Every contributing trigger (the sources' triggers for a merged window)."""
        if self.sources:
            return tuple(t for s in self.sources for t in s.triggers)
        return (self.trigger,)

    def contains(self, t: Any) -> np.ndarray:
        """Boolean mask of times ``t`` [s] inside ``[start_s, end_s]``."""
        tt = np.asarray(t, dtype=np.float64)
        return (tt >= self.start_s) & (tt <= self.end_s)

    def to_record(self) -> dict[str, Any]:
        """Plain-JSON dict for the audit trail (event log ``data``)."""
        rec: dict[str, Any] = {
            "start_s": float(self.start_s), "end_s": float(self.end_s),
            "trigger": self.trigger, "method": self.method,
            "margins_s": [float(self.margins[0]), float(self.margins[1])],
            "alpha": None if self.alpha is None else float(self.alpha),
            "rtd_params": [dict(p) for p in self.rtd_params],
            "details": dict(self.details),
        }
        if self.sources:
            rec["sources"] = [s.to_record() for s in self.sources]
        return rec


def _finite_scalar(name: str, value: Any) -> float:
    """``value`` as a finite float; a plain finite float or int passes without the array
    machinery (called per window request), anything else goes through ``finite_array``
    (same result and the same errors)."""
    if type(value) in (float, int) and math.isfinite(value):
        return float(value)
    return finite_array(name, value, ndim=0).item()


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _models(model: RTDModel | Iterable[RTDModel], name: str = "model") -> list[RTDModel]:
    models = [model] if isinstance(model, RTDModel) else list(model)
    if not models:
        raise ParameterError(name, model, "needs at least one RTD model")
    for m in models:
        if not isinstance(m, RTDModel):
            raise ParameterError(name, m, "must be a cmsim.rtd model (RTDModel)")
    return models


_QUANTILES: dict[tuple, float] = {}
_QUANTILES_BY_ID: dict[tuple, tuple[RTDModel, float]] = {}


_SERIES: dict[tuple, RTDModel] = {}


def cached_series(*models: RTDModel) -> RTDModel:
    """``Series(*models)``, cached per parameter set (the same object for equal parameters,
    so its quantiles are cached too)."""
    key = tuple((type(m).__name__, repr(m.params)) for m in models)
    hit = _SERIES.get(key)
    if hit is None:
        hit = Series(*models)
        if len(_SERIES) < 256:
            _SERIES[key] = hit
    return hit


def cached_quantile(model: RTDModel, p: float) -> float:
    """``model.quantile(p)`` [s], cached per model type and parameter set.

    Parameters
    ----------
    model : RTDModel
        The RTD.
    p : float
        Probability in (0, 1).

    Returns
    -------
    float
        The quantile [s] (computed once per ``(type, params, p)``).
    """
    # models are immutable: the same object gives the same quantile (the object is held, so
    # its id cannot be reused while cached); other objects are matched by their parameters
    seen = _QUANTILES_BY_ID.get((id(model), p))
    if seen is not None and seen[0] is model:
        return seen[1]
    key = (type(model).__name__, repr(model.params), float(p))
    hit = _QUANTILES.get(key)
    if hit is None:
        hit = float(model.quantile(p))
        if len(_QUANTILES) < 4096:
            _QUANTILES[key] = hit
    if len(_QUANTILES_BY_ID) < 4096:
        _QUANTILES_BY_ID[(id(model), p)] = (model, hit)
    return hit


def _alpha(alpha: Any) -> float:
    a = positive("alpha", alpha)
    if not a < 0.5:
        raise ParameterError("alpha", alpha, "must be in (0, 0.5)")
    return a


def scale_residence_times(model: RTDModel, factor: float) -> RTDModel:
    """The same RTD with every residence time multiplied by ``factor`` (``E_s(t) = E(t/s)/s``).

    Parameters
    ----------
    model : RTDModel
        CSTR, PFR, TanksInSeries, AxialDispersion, Empirical or a Series of them.
    factor : float
        Time scale ``s`` [-], > 0.

    Returns
    -------
    RTDModel
        Scaled model: every quantile is ``s`` times the original one, the shape is unchanged.

    Examples
    --------
    >>> from cmsim import rtd
    >>> scale_residence_times(rtd.Series(rtd.PFR(10.0), rtd.CSTR(30.0)), 1.1).mean
    44.0
    """
    from cmsim import rtd  # noqa: PLC0415

    s = positive("factor", factor)
    if isinstance(model, rtd.Series):
        return rtd.Series(*(scale_residence_times(m, s) for m in model.stages))
    p = dict(model.params)
    if isinstance(model, rtd.PFR):
        return rtd.PFR(p["delay"] * s)
    if isinstance(model, rtd.CSTR):
        return rtd.CSTR(p["mean_residence_time"] * s)
    if isinstance(model, rtd.TanksInSeries):
        return rtd.TanksInSeries(p["mean_residence_time"] * s, p["n_tanks"])
    if isinstance(model, rtd.AxialDispersion):
        return rtd.AxialDispersion(p["mean_residence_time"] * s, p["peclet"],
                                   **({"boundary": p["boundary"]} if "boundary" in p else {}))
    if isinstance(model, rtd.Empirical):
        return rtd.Empirical(np.asarray(p["t"]) * s, np.asarray(p["e"]) / s)
    raise ParameterError("model", model, "cannot scale the residence times of this RTD model")


def rtd_envelope(model: RTDModel, uncertainty: float) -> tuple[RTDModel, ...]:
    """Credible models for a relative residence-time uncertainty
    docs/monitor.md#diversion-windows margins).

    Parameters
    ----------
    model : RTDModel
        Nominal RTD.
    uncertainty : float
        Relative +- uncertainty ``u`` on all residence times [-], in [0, 1).

    Returns
    -------
    tuple of RTDModel
        ``(model,)`` for ``u = 0``, else the models with residence times scaled by
        ``1 - u``, ``1`` and ``1 + u`` (quantiles are linear in the scale, so the envelope's
        extreme quantiles are those of the two extreme models).
    """
    u = non_negative("rtd_uncertainty", uncertainty)
    if not u < 1.0:
        raise ParameterError("rtd_uncertainty", uncertainty, "must be in [0, 1)")
    if u == 0.0:
        return (model,)
    return (scale_residence_times(model, 1.0 - u), model, scale_residence_times(model, 1.0 + u))


def default_margin(dt: float, line_mean_residence_time: float, gate_delay: float = 0.0) -> float:
    """Default diversion margin ``max(2 dt, 0.05 MRT) + gate delay`` [s]
    (docs/monitor.md#diversion-windows).

    Parameters
    ----------
    dt : float
        Simulation tick [s].
    line_mean_residence_time : float
        Mean residence time of the feeder-to-diverter RTD [s].
    gate_delay : float
        Actuation delay of the diversion gate [s].

    Returns
    -------
    float
        The margin [s].

    Examples
    --------
    >>> default_margin(0.5, 100.0)
    5.0
    """
    return max(2.0 * positive("dt", dt), 0.05 * positive("line_mean_residence_time",
                                                          line_mean_residence_time)) \
        + non_negative("gate_delay", gate_delay)


# ---------------------------------------------------------------------------------------------
# method B
# ---------------------------------------------------------------------------------------------


def quantile_window(t0: float, t1: float, model: RTDModel | Sequence[RTDModel],
                    alpha: float = 0.005, margin_start: float = 0.0, margin_end: float = 0.0,
                    *, trigger: str = "disturbance") -> DiversionWindow:
    """Method B: window from RTD quantiles over an envelope of credible models.

    Parameters
    ----------
    t0, t1 : float
        Start and end of the disturbance at the feeder [s], ``t0 <= t1``.
    model : RTDModel or sequence of RTDModel
        Feeder-to-diverter RTD, or several credible models (the envelope Theta).
    alpha : float
        Tail fraction in (0, 0.5) allowed to escape at each end.
    margin_start, margin_end : float
        Margins ``m_s``, ``m_e`` [s], >= 0.
    trigger : str
        Trigger name recorded in the window.

    Returns
    -------
    DiversionWindow
        ``start = t0 + min t_alpha - m_s``, ``end = t1 + max t_(1-alpha) + m_e``.

    Examples
    --------
    >>> from cmsim import rtd
    >>> line = rtd.Series(rtd.PFR(10.0), rtd.TanksInSeries(60.0, 5), rtd.CSTR(30.0))
    >>> w = quantile_window(300.0, 320.0, line, alpha=0.005)
    >>> round(w.start_s, 2), round(w.end_s, 2)
    (331.73, 565.44)
    """
    models = _models(model)
    a = _alpha(alpha)
    t0f = _finite_scalar("t0", t0)
    t1f = _finite_scalar("t1", t1)
    if t1f < t0f:
        raise ParameterError("t1", t1, f"must be >= t0 = {t0}")
    ms = non_negative("margin_start", margin_start)
    me = non_negative("margin_end", margin_end)
    lo = min(cached_quantile(m, a) for m in models)
    hi = max(cached_quantile(m, 1.0 - a) for m in models)
    return DiversionWindow(
        start_s=t0f + lo - ms, end_s=t1f + hi + me, trigger=str(trigger), method="B",
        margins=(ms, me), alpha=a, rtd_params=tuple(dict(m.params) for m in models),
        details={"disturbance_start_s": t0f, "disturbance_end_s": t1f,
                 "t_alpha_min_s": lo, "t_1_minus_alpha_max_s": hi})


# ---------------------------------------------------------------------------------------------
# method A
# ---------------------------------------------------------------------------------------------


def oos_intervals(t_grid: Any, values: Any, limits: tuple[float, float]) -> list[tuple[float,
                                                                                       float]]:
    """Intervals where a sampled series is outside ``[lower, upper]``.

    Parameters
    ----------
    t_grid : array_like, shape (n,)
        Strictly increasing sample times [s].
    values : array_like, shape (n,)
        The series (e.g. predicted content as a fraction of target) [-].
    limits : (float, float)
        ``(lower, upper)``; values strictly outside are out of specification.

    Returns
    -------
    list of (float, float)
        ``(start, end)`` per excursion. Edges are the crossing times by linear interpolation
        between the last in-limit and the first out-of-limit sample; an excursion that
        touches either end of the grid is clipped to the grid.

    Examples
    --------
    >>> oos_intervals([0, 1, 2, 3, 4], [1.0, 1.0, 0.0, 1.0, 1.0], (0.5, 1.5))
    [(1.5, 2.5)]
    """
    t = finite_array("t_grid", t_grid, ndim=1)
    c = finite_array("values", values, ndim=1)
    if c.shape != t.shape:
        raise ParameterError("values", f"array of shape {c.shape}",
                             f"must have the shape of t_grid {t.shape}")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise ParameterError("t_grid", "not strictly increasing", "must be strictly increasing")
    lo, hi = (float(v) for v in limits)
    if not lo < hi:
        raise ParameterError("limits", limits, "must be (lower, upper) with lower < upper")
    out = (c < lo) | (c > hi)
    if not out.any():
        return []
    edges = np.diff(np.concatenate([[0], out.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1

    def crossing(i_in: int, i_out: int) -> float:
        lim = lo if c[i_out] < lo else hi
        frac = (c[i_in] - lim) / (c[i_in] - c[i_out])
        return float(t[i_in] + frac * (t[i_out] - t[i_in]))

    result = []
    for i, j in zip(starts, ends, strict=True):
        a = float(t[0]) if i == 0 else crossing(i - 1, i)
        b = float(t[-1]) if j == t.size - 1 else crossing(j + 1, j)
        result.append((a, b))
    return result


def predicted_window(t_grid: Any, predicted_content: Any, limits: tuple[float, float],
                     margins: tuple[float, float] = (0.0, 0.0), *,
                     trigger: str = "model_predicted_oos",
                     rtd_params: Sequence[Mapping[str, Any]] = ()) -> list[DiversionWindow]:
    """Method A: windows where the predicted content at the diverter is out of limits.

    Parameters
    ----------
    t_grid : array_like, shape (n,)
        Output times at the diverter [s], strictly increasing.
    predicted_content : array_like, shape (n,) or (n_models, n)
        Predicted content (e.g. fraction of target API content) [-]; one row per credible
        parameter set of the envelope Theta; the union of their excursions is taken.
    limits : (float, float)
        Lower and upper limit, same units as the content.
    margins : (float, float)
        ``(m_s, m_e)`` [s] subtracted from each start and added to each end.
    trigger : str
        Trigger name recorded in the windows.
    rtd_params : sequence of dict
        Parameters of the RTD models behind the rows (audit record only).

    Returns
    -------
    list of DiversionWindow
        Disjoint windows in time order (overlaps after the margins are merged).

    Examples
    --------
    >>> t = np.arange(0.0, 10.0)
    >>> c = np.where((t > 3) & (t < 6), 0.0, 1.0)
    >>> [(w.start_s, w.end_s) for w in predicted_window(t, c, (0.5, 1.5), (1.0, 1.0))]
    [(2.5, 6.5)]
    """
    content = finite_array("predicted_content", predicted_content, ndim=(1, 2))
    rows = np.atleast_2d(content)
    ms = non_negative("margins[0]", margins[0])
    me = non_negative("margins[1]", margins[1])
    intervals: list[tuple[float, float]] = []
    for row in rows:
        intervals.extend(oos_intervals(t_grid, row, limits))
    windows = []
    for a, b in sorted(intervals):
        windows.append(DiversionWindow(
            start_s=a - ms, end_s=b + me, trigger=str(trigger), method="A", margins=(ms, me),
            rtd_params=tuple(dict(p) for p in rtd_params),
            details={"limits": [float(limits[0]), float(limits[1])], "oos_start_s": a,
                     "oos_end_s": b}))
    merged = []
    for w in windows:
        if merged and w.start_s <= merged[-1].end_s:
            prev = merged[-1]
            merged[-1] = DiversionWindow(
                start_s=prev.start_s, end_s=max(prev.end_s, w.end_s), trigger=prev.trigger,
                method="A", margins=(ms, me), rtd_params=prev.rtd_params,
                details={**prev.details, "oos_end_s": max(prev.details["oos_end_s"],
                                                         w.details["oos_end_s"])})
        else:
            merged.append(w)
    return merged


# ---------------------------------------------------------------------------------------------
# PAT-triggered
# ---------------------------------------------------------------------------------------------


def pat_window(t_first_oos: float, t_clear: float, sample_period: float,
               probe_to_diverter: RTDModel | Sequence[RTDModel], alpha: float = 0.005, *,
               latency: float = 0.0, margin_start: float = 0.0, margin_end: float = 0.0,
               trigger: str = "pat_oos", decision_s: float | None = None) -> DiversionWindow:
    """PAT-triggered window at the diverter.

    Parameters
    ----------
    t_first_oos : float
        Time of the first out-of-limit reading [s].
    t_clear : float
        Time of the reading that clears the alarm (the k-th consecutive in-limit reading) [s].
    sample_period : float
        PAT sampling interval [s].
    probe_to_diverter : RTDModel or sequence of RTDModel
        RTD from the probe to the diverter (envelope allowed).
    alpha : float
        Tail fraction in (0, 0.5).
    latency : float
        Detection latency of a reading [s] (the reading at ``t`` describes material that
        passed the probe up to ``t - latency``).
    margin_start, margin_end : float
        Margins [s].
    trigger : str
        Trigger name.
    decision_s : float, optional
        Time the alarm is known [s] (the ``k``-th out-of-limit reading with persistence;
        default ``t_first_oos``): the escaped part of the window is measured up to it.

    Returns
    -------
    DiversionWindow
        ``start = t_first_oos - sample_period - latency + min t_alpha - m_s`` (the first
        affected material may have passed the probe right after the previous, in-limit
        reading's window) and ``end = t_clear + max t_(1-alpha) + m_e`` (conservative).

    Notes
    -----
    The gate can only act on material that has not yet passed it when the alarm is known
    (at ``decision_s``): any part of the window before that time has escaped. The
    window reports that shortfall in ``details["escaped_s"]`` so the lead time can be checked
    docs/monitor.md#diversion-windows: lead time must exceed latency + sampling interval).
    """
    models = _models(probe_to_diverter, "probe_to_diverter")
    a = _alpha(alpha)
    tf = _finite_scalar("t_first_oos", t_first_oos)
    tc = _finite_scalar("t_clear", t_clear)
    if tc < tf:
        raise ParameterError("t_clear", t_clear, f"must be >= t_first_oos = {t_first_oos}")
    per = positive("sample_period", sample_period)
    lat = non_negative("latency", latency)
    ms = non_negative("margin_start", margin_start)
    me = non_negative("margin_end", margin_end)
    td = tf if decision_s is None else _finite_scalar("decision_s", decision_s)
    lo = min(cached_quantile(m, a) for m in models)
    hi = max(cached_quantile(m, 1.0 - a) for m in models)
    start = tf - per - lat + lo - ms
    end = tc + hi + me
    return DiversionWindow(
        start_s=start, end_s=end, trigger=str(trigger), method="PAT", margins=(ms, me),
        alpha=a, rtd_params=tuple(dict(m.params) for m in models),
        details={"t_first_oos_s": tf, "t_clear_s": tc, "sample_period_s": per,
                 "latency_s": lat, "escaped_s": max(0.0, td - start)})


# ---------------------------------------------------------------------------------------------
# union
# ---------------------------------------------------------------------------------------------


def _join(values: Iterable[str]) -> str:
    seen: list[str] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return "+".join(seen)


def merge_windows(windows: Iterable[DiversionWindow], *, gap: float = 0.0) -> list[DiversionWindow]:
    """Union of windows: merge overlapping (or closer than ``gap``) windows.

    Parameters
    ----------
    windows : iterable of DiversionWindow
        Windows in any order (merged windows are flattened into their sources).
    gap : float
        Windows separated by at most ``gap`` [s] are merged too (>= 0).

    Returns
    -------
    list of DiversionWindow
        Disjoint windows in time order. A window built from one source is returned
        unchanged; a merged one spans all its sources, lists them in ``sources`` (start
        order), joins their triggers and methods with ``"+"`` and keeps the margins of the
        sources that define its start and end. The union never shortens a window.

    Examples
    --------
    >>> a = DiversionWindow(10.0, 20.0, "pat_oos", "PAT")
    >>> b = DiversionWindow(15.0, 30.0, "feeder_fault:api", "B")
    >>> m, = merge_windows([b, a])
    >>> (m.start_s, m.end_s, m.trigger, m.triggers)
    (10.0, 30.0, 'pat_oos+feeder_fault:api', ('pat_oos', 'feeder_fault:api'))
    """
    g = non_negative("gap", gap)
    flat: list[DiversionWindow] = []
    for w in windows:
        if not isinstance(w, DiversionWindow):
            raise ParameterError("windows", w, "items must be DiversionWindow")
        flat.extend(w.sources if w.sources else (w,))
    flat.sort(key=lambda w: (w.start_s, w.end_s))
    groups: list[list[DiversionWindow]] = []
    end = -math.inf
    for w in flat:
        if groups and w.start_s <= end + g:
            groups[-1].append(w)
            end = max(end, w.end_s)
        else:
            groups.append([w])
            end = w.end_s
    out = []
    for grp in groups:
        if len(grp) == 1:
            out.append(grp[0])
            continue
        first = grp[0]
        last = max(grp, key=lambda w: w.end_s)
        alphas = {w.alpha for w in grp}
        params: list[Mapping[str, Any]] = []
        for w in grp:
            for p in w.rtd_params:
                if p not in params:
                    params.append(p)
        out.append(DiversionWindow(
            start_s=first.start_s, end_s=last.end_s, trigger=_join(w.trigger for w in grp),
            method=_join(w.method for w in grp), margins=(first.margins[0], last.margins[1]),
            alpha=alphas.pop() if len(alphas) == 1 else None, rtd_params=tuple(params),
            sources=tuple(grp)))
    return out
