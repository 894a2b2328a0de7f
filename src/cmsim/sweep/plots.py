"""Figures of a sweep table (matplotlib): a metric against a grid axis, histograms.

Each function draws on ``ax`` (a new figure when None) and returns the Axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cmsim.errors import ParameterError
from cmsim.sweep.stats import grid_columns, summarize

__all__ = ["plot_hist", "plot_metric"]

_INTERVALS = ("ci", "quantiles")


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt.subplots(figsize=(6.4, 4.0))[1]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def plot_metric(table: Any, metric: str, x: str | None = None, *, ax: Any = None,
                interval: str = "ci", confidence: float = 0.95,
                quantiles: tuple[float, float] = (0.05, 0.95), method: str = "wilson",
                threshold: float = 0.0) -> Any:
    """A metric per grid point against one grid axis, with its interval.

    ``metric="escape_probability"`` plots the fraction of replicates with escapes
    (``escapes > threshold``) and its binomial confidence interval
    (:func:`cmsim.sweep.stats.binomial_interval`). Any other metric column is plotted as its
    mean over the replicates with a Student-t confidence interval of the mean
    (``interval="ci"``), or as its median with the ``quantiles`` band
    (``interval="quantiles"``). The other grid axes, if any, give one line each.

    Parameters
    ----------
    table : pandas.DataFrame
        A sweep table.
    metric : str
        ``"escape_probability"`` or a metric column.
    x : str, optional
        Grid axis on the x axis (default: the first grid axis). Numeric values are placed by
        value, others in grid order.
    ax : matplotlib.axes.Axes, optional
    interval : {"ci", "quantiles"}
    confidence : float
        Confidence level of the intervals.
    quantiles : (float, float)
        Band of ``interval="quantiles"``.
    method : {"wilson", "clopper-pearson"}
        Interval of the escape probability.
    threshold : float
        Escapes per replicate above which a replicate counts as escaping [-].

    Returns
    -------
    matplotlib.axes.Axes
    """
    from scipy import stats as sps  # noqa: PLC0415

    axes_names = grid_columns(table)
    if x is None:
        if not axes_names:
            raise ParameterError("x", x, "the sweep has no grid axis to plot against")
        x = axes_names[0]
    if x not in axes_names:
        raise ParameterError("x", x, f"must be a grid axis of the sweep {axes_names}")
    if interval not in _INTERVALS:
        raise ParameterError("interval", interval, f"must be one of {_INTERVALS}")
    escape = metric == "escape_probability"
    if not escape and metric not in table.columns:
        raise ParameterError("metric", metric, "must be 'escape_probability' or a column of "
                             "the table")
    qlo, qhi = quantiles
    s = summarize(table, [] if escape else [metric], quantiles=(qlo, 0.5, qhi),
                  confidence=confidence, method=method, threshold=threshold)
    n_ok = s["replicates"] - s["failed"]
    if escape:
        y, lo, hi = s["escape_probability"], s["escape_ci_low"], s["escape_ci_high"]
        label_y = f"escape probability (P[escapes > {threshold:g}])"
        what = f"{method} {100 * confidence:g} % interval"
    elif interval == "ci":
        y = s[f"{metric}_mean"]
        dof = np.maximum(n_ok.to_numpy() - 1, 1)
        half = sps.t.ppf(0.5 + confidence / 2.0, dof) * s[f"{metric}_std"] / np.sqrt(
            np.maximum(n_ok, 1))
        lo, hi = y - half, y + half
        label_y, what = f"{metric} (mean)", f"{100 * confidence:g} % CI of the mean"
    else:
        y = s[f"{metric}_q50"]
        lo, hi = s[f"{metric}_q{100 * qlo:g}"], s[f"{metric}_q{100 * qhi:g}"]
        label_y, what = f"{metric} (median)", f"{100 * qlo:g}-{100 * qhi:g} % quantiles"
    ax = _axes(ax)
    values = list(dict.fromkeys(s[x]))
    numeric = all(_is_number(v) for v in values)
    pos = {v: (float(v) if numeric else i) for i, v in enumerate(values)}
    others = [a for a in axes_names if a != x]
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for i in s.index:  # one line per combination of the other axes, in grid order
        groups.setdefault(tuple(s.loc[i, a] for a in others), []).append(i)
    for keys, idx in groups.items():
        order = sorted(idx, key=lambda i: pos[s.loc[i, x]])
        xs = np.array([pos[s.loc[i, x]] for i in order])
        yv = y.loc[order].to_numpy(dtype=float)
        err = np.vstack([yv - lo.loc[order].to_numpy(dtype=float),
                         hi.loc[order].to_numpy(dtype=float) - yv])
        err = np.where(err < 0.0, 0.0, err)  # rounding: a bound equal to the estimate
        label = ", ".join(f"{a}={k}" for a, k in zip(others, keys, strict=True)) or None
        ax.errorbar(xs, yv, yerr=err, marker="o", capsize=3, label=label)
    if not numeric:
        ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_xlabel(x)
    ax.set_ylabel(label_y)
    ax.set_title(f"{label_y} vs {x}; bars: {what}", fontsize=9)
    if others:
        ax.legend(fontsize=8)
    return ax


def plot_hist(table: Any, metric: str, *, ax: Any = None, cases: Sequence[int] | None = None,
              bins: Any = "auto", density: bool = False) -> Any:
    """Histogram of a metric over the replicates, one outline per grid point.

    Parameters
    ----------
    table : pandas.DataFrame
        A sweep table.
    metric : str
        A metric column.
    ax : matplotlib.axes.Axes, optional
    cases : sequence of int, optional
        Grid points to show (default: all).
    bins : int, sequence or str
        As for :func:`numpy.histogram_bin_edges`, over all the shown values (common edges).
    density : bool
        Normalize each histogram to unit area.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if metric not in table.columns:
        raise ParameterError("metric", metric, "must be a column of the table")
    ok = table if "error_type" not in table.columns else table[table["error_type"].isna()]
    if cases is not None:
        unknown = sorted(set(cases) - set(table["case"].tolist()))
        if unknown:
            raise ParameterError("cases", list(cases),
                                 f"{unknown} are not cases of the table (cases: "
                                 f"{sorted(set(table['case'].tolist()))})")
        ok = ok[ok["case"].isin(list(cases))]
    values = ok[metric].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    ax = _axes(ax)
    if values.size == 0:
        ax.set_title(f"{metric}: no finite values", fontsize=9)
        return ax
    edges = np.histogram_bin_edges(values, bins=bins)
    axes_names = grid_columns(table)
    for case, rows in ok.groupby("case", sort=True):
        v = rows[metric].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        label = ", ".join(f"{a}={rows[a].iloc[0]}" for a in axes_names) or f"case {case}"
        ax.hist(v, bins=edges, histtype="step", density=density, label=label)
    ax.set_xlabel(metric)
    ax.set_ylabel("density" if density else "replicates")
    if ok["case"].nunique() > 1:
        ax.legend(fontsize=8)
    return ax
