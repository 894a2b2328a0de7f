"""Study statistics of a sweep table: per grid point quantiles and escape probability.

The escape probability of a grid point is the fraction of its (successful) replicates with
more than ``threshold`` escaped tablets; its confidence interval is the Wilson score interval
(default) or the Clopper-Pearson ("exact") interval of a binomial proportion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cmsim.errors import ParameterError
from cmsim.sweep.metrics import RESERVED_COLUMNS

__all__ = ["binomial_interval", "grid_columns", "metric_columns", "summarize"]

_METHODS = ("wilson", "clopper-pearson")


def binomial_interval(k: Any, n: Any, confidence: float = 0.95,
                      method: str = "wilson") -> tuple[np.ndarray, np.ndarray]:
    """Two-sided confidence interval of a binomial proportion ``k / n``.

    Parameters
    ----------
    k : int or array of int
        Successes (here: replicates with an escape) [-].
    n : int or array of int
        Trials (replicates) [-], >= 1; where ``n == 0`` the interval is NaN.
    confidence : float
        Confidence level in (0, 1).
    method : {"wilson", "clopper-pearson"}
        Wilson score interval, or the Clopper-Pearson ("exact") interval from the beta
        distribution (conservative).

    Returns
    -------
    (ndarray, ndarray)
        Lower and upper bounds [-], within [0, 1].

    Examples
    --------
    >>> lo, hi = binomial_interval(3, 10)
    >>> round(float(lo), 4), round(float(hi), 4)
    (0.1078, 0.6032)
    """
    from scipy import stats  # noqa: PLC0415

    if not 0.0 < confidence < 1.0:
        raise ParameterError("confidence", confidence, "must be in (0, 1)")
    if method not in _METHODS:
        raise ParameterError("method", method, f"must be one of {_METHODS}")
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise ParameterError("k", k, "must satisfy 0 <= k <= n")
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "wilson":
            z = stats.norm.ppf(1.0 - alpha / 2.0)
            p = k / n
            denom = 1.0 + z * z / n
            center = (p + z * z / (2.0 * n)) / denom
            half = z / denom * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
            lo, hi = center - half, center + half
        else:
            lo = np.where(k > 0, stats.beta.ppf(alpha / 2.0, k, n - k + 1.0), 0.0)
            hi = np.where(k < n, stats.beta.ppf(1.0 - alpha / 2.0, k + 1.0, n - k), 1.0)
    empty = n <= 0
    lo = np.where(empty, np.nan, np.clip(lo, 0.0, 1.0))
    hi = np.where(empty, np.nan, np.clip(hi, 0.0, 1.0))
    return lo, hi


def grid_columns(table: Any) -> list[str]:
    """Grid axes of a sweep table: its recorded axes, else the columns between ``replicate``
    and ``seed``."""
    axes = getattr(table, "grid_axes", None)
    if axes is not None:
        return list(axes)
    cols = list(table.columns)
    if "replicate" in cols and "seed" in cols:
        return cols[cols.index("replicate") + 1:cols.index("seed")]
    return []


def metric_columns(table: Any) -> list[str]:
    """Numeric metric columns of a sweep table (all but the grid axes and reserved columns)."""
    skip = set(grid_columns(table)) | set(RESERVED_COLUMNS)
    return [c for c in table.columns
            if c not in skip and np.issubdtype(table[c].dtype, np.number)]


def summarize(table: Any, metrics: Sequence[str] | None = None, *,
              quantiles: Sequence[float] = (0.05, 0.5, 0.95), confidence: float = 0.95,
              method: str = "wilson", escape_metric: str = "escapes",
              threshold: float = 0.0) -> Any:
    """Per grid point statistics of a sweep table.

    Parameters
    ----------
    table : pandas.DataFrame
        A table of :func:`cmsim.sweep.sweep` (one row per case x replicate).
    metrics : sequence of str, optional
        Metric columns to summarize (default: every numeric metric column).
    quantiles : sequence of float
        Quantiles in [0, 1] of each metric over the replicates (linear interpolation).
    confidence : float
        Confidence level of the escape-probability interval.
    method : {"wilson", "clopper-pearson"}
        Interval of the escape probability (:func:`binomial_interval`).
    escape_metric : str
        Column that counts escapes per replicate (default ``escapes``) [-].
    threshold : float
        A replicate "escapes" when ``escape_metric > threshold`` [-].

    Returns
    -------
    pandas.DataFrame
        One row per case: ``case``, the grid axes, ``replicates`` (rows), ``failed`` (rows with
        an error, left out of every statistic), then per metric ``<m>_mean``, ``<m>_std``
        (sample, ddof = 1), ``<m>_q<100 p>`` (e.g. ``escapes_q95``), and
        ``escape_replicates``, ``escape_probability``, ``escape_ci_low``, ``escape_ci_high``.
    """
    import pandas as pd  # noqa: PLC0415

    qs = [float(q) for q in quantiles]
    if any(not 0.0 <= q <= 1.0 for q in qs):
        raise ParameterError("quantiles", quantiles, "must be in [0, 1]")
    names = metric_columns(table) if metrics is None else list(metrics)
    missing = [m for m in names if m not in table.columns]
    if missing:
        raise ParameterError("metrics", missing, f"not columns of the table {list(table.columns)}")
    axes = grid_columns(table)
    failed = (table["error_type"].notna() if "error_type" in table.columns
              else pd.Series(False, index=table.index))
    ok = table[~failed]
    cases = table.drop_duplicates("case").set_index("case")[axes].sort_index()
    out = cases.reset_index()
    out["replicates"] = table.groupby("case").size().reindex(cases.index).to_numpy()
    out["failed"] = failed.groupby(table["case"]).sum().reindex(cases.index).to_numpy()
    groups = ok.groupby("case")
    stats_cols: dict[str, np.ndarray] = {}
    for m in names:
        g = groups[m]
        stats_cols[f"{m}_mean"] = g.mean().reindex(cases.index).to_numpy()
        stats_cols[f"{m}_std"] = g.std(ddof=1).reindex(cases.index).to_numpy()
        for q in qs:
            stats_cols[f"{m}_q{100 * q:g}"] = g.quantile(q).reindex(cases.index).to_numpy()
    if escape_metric in ok.columns:
        n = groups.size().reindex(cases.index, fill_value=0).to_numpy()
        hit = (ok[escape_metric] > threshold).groupby(ok["case"]).sum()
        k = hit.reindex(cases.index, fill_value=0).to_numpy()
        lo, hi = binomial_interval(k, n, confidence, method)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(n > 0, k / np.maximum(n, 1), np.nan)
        stats_cols.update(escape_replicates=k, escape_probability=p, escape_ci_low=lo,
                          escape_ci_high=hi)
    return pd.concat([out, pd.DataFrame(stats_cols, index=out.index)], axis=1)
