"""Per-case metrics of a sweep: the built-in KPIs and user-defined metrics.

Every number a sweep reads from a :class:`cmsim.SimulationResult` goes through
:func:`case_metrics` (built-in KPIs) and :func:`evaluate` (built-ins plus the user's metrics), so
a new KPI is added in one place.
"""

from __future__ import annotations

import numbers
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from cmsim.errors import ParameterError

__all__ = ["DEFAULT_METRICS", "RESERVED_COLUMNS", "MetricSpec", "case_metrics", "check_metrics",
           "check_picklable", "evaluate", "metric_names"]

#: Columns of :func:`case_metrics`, in table order.
DEFAULT_METRICS: tuple[str, ...] = (
    "escapes", "waste", "expected_escapes", "nonconforming_produced", "tablets_produced",
    "tablets_accepted", "tablets_diverted",
    "api_content_mean", "api_content_rsd", "api_content_min", "api_content_max",
    "mass_balance_error",
)

#: Columns a sweep table always has besides the grid axes and the metrics.
RESERVED_COLUMNS: tuple[str, ...] = ("case", "replicate", "seed", "spawn_key", "error_type",
                                     "error_message")

#: A user metric: ``{name: f(result) -> float}`` or ``f(result) -> {name: float}``.
MetricSpec = Mapping[str, Callable[[Any], float]] | Callable[[Any], Mapping[str, float]]


def _expected_escapes(result: Any) -> float:
    value = ((getattr(result, "metadata", None) or {}).get("monitor") or {}).get(
        "expected_escapes")
    return float("nan") if value is None else float(value)


def case_metrics(result: Any) -> dict[str, float]:
    """Scalar KPIs of one run.

    The tablet counts are those of ``result.summary()["tablets"]``, computed from the per-tick
    tablets directly: a sweep does not pay for the hash chain of the event log that
    :meth:`~cmsim.SimulationResult.summary` builds.

    Parameters
    ----------
    result : cmsim.SimulationResult

    Returns
    -------
    dict
        ``escapes`` (nonconforming tablets accepted), ``waste`` (conforming tablets
        diverted), ``expected_escapes`` (the monitor's own sum of the risk over the accepted
        tablets; NaN without the line-state monitor), ``nonconforming_produced``,
        ``tablets_produced``, ``tablets_accepted``, ``tablets_diverted`` [-],
        ``api_content_mean``, ``api_content_rsd``, ``api_content_min``, ``api_content_max``
        (true API content as a fraction of target, tablet-weighted over the ticks with flow,
        [-]) and ``mass_balance_error`` [-].
    """
    tablets = np.asarray(result.tablets, dtype=np.float64)
    diverted = np.asarray(result.diverted, dtype=bool)
    nonconf = np.asarray(result.nonconforming, dtype=bool)
    accepted = ~diverted
    content = np.asarray(result.api_content, dtype=np.float64)
    ok = np.isfinite(content) & (tablets > 0)
    if ok.any():
        c, w = content[ok], tablets[ok]
        mean = float(np.average(c, weights=w))
        sd = float(np.sqrt(np.average((c - mean) ** 2, weights=w)))
        cmin, cmax = float(c.min()), float(c.max())
        rsd = sd / mean if mean else float("nan")
    else:
        mean = rsd = cmin = cmax = float("nan")
    return {
        "escapes": float(tablets[nonconf & accepted].sum()),
        "waste": float(tablets[~nonconf & diverted].sum()),
        "expected_escapes": _expected_escapes(result),
        "nonconforming_produced": float(tablets[nonconf].sum()),
        "tablets_produced": float(tablets.sum()),
        "tablets_accepted": float(tablets[accepted].sum()),
        "tablets_diverted": float(tablets[diverted].sum()),
        "api_content_mean": mean,
        "api_content_rsd": rsd,
        "api_content_min": cmin,
        "api_content_max": cmax,
        "mass_balance_error": float(result.mass_balance_max_rel_error),
    }


def check_metrics(metrics: MetricSpec | None, *, picklable: bool) -> None:
    """Reject a bad ``metrics`` argument before any run.

    Parameters
    ----------
    metrics : mapping of str to callable, callable or None
        See :func:`cmsim.sweep.sweep`.
    picklable : bool
        The metrics go to worker processes: they must pickle (module-level functions, not
        lambdas or closures).

    Raises
    ------
    cmsim.errors.ParameterError
        Not callable, a reserved or built-in name, or not picklable.
    """
    if metrics is None:
        return
    if isinstance(metrics, Mapping):
        for name, fn in metrics.items():
            _check_name(name)
            if not callable(fn):
                raise ParameterError(f"metrics[{name!r}]", fn, "must be a callable f(result)")
            if picklable:
                check_picklable(f"metrics[{name!r}]", fn)
    elif callable(metrics):
        if picklable:
            check_picklable("metrics", metrics)
    else:
        raise ParameterError("metrics", metrics, "must be a mapping {name: f(result) -> float} "
                             "or a callable f(result) -> {name: float}")


def metric_names(metrics: MetricSpec | None) -> list[str]:
    """Names of the user metrics known before any run (those of a mapping), in order."""
    return list(metrics) if isinstance(metrics, Mapping) else []


def evaluate(result: Any, metrics: MetricSpec | None = None) -> dict[str, float]:
    """Built-in KPIs (:func:`case_metrics`) and the user's metrics of one run.

    Parameters
    ----------
    result : cmsim.SimulationResult
    metrics : mapping of str to callable, callable or None
        User metrics; each value must be a real number (bool and int become float).

    Returns
    -------
    dict
        ``{name: float}``, built-ins first.

    Raises
    ------
    cmsim.errors.ParameterError
        A user metric returned something else than a real number, or a reserved name.
    """
    row = case_metrics(result)
    if metrics is None:
        return row
    if isinstance(metrics, Mapping):
        extra = {name: fn(result) for name, fn in metrics.items()}
        where = "metrics[{!r}]"
    else:
        extra = metrics(result)
        if not isinstance(extra, Mapping):
            raise ParameterError("metrics", extra, "the callable must return a mapping "
                                 "{name: real number}")
        where = "metrics(result)[{!r}]"
    for name, value in extra.items():
        _check_name(name)
        row[name] = _real(where.format(name), value)
    return row


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ParameterError("metrics", name, "metric names must be non-empty strings")
    if name in RESERVED_COLUMNS or name in DEFAULT_METRICS:
        raise ParameterError("metrics", name, "is a built-in column of the sweep table; "
                             "choose another name")


def check_picklable(where: str, fn: Any) -> None:
    """Raise ParameterError naming ``where`` when ``fn`` does not pickle."""
    try:
        pickle.dumps(fn)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same to the user
        raise ParameterError(where, fn, "must be picklable to run on worker processes (a "
                             f"module-level function, not a lambda or closure): {exc}") from None


def _real(where: str, value: Any) -> float:
    if isinstance(value, (numbers.Real, np.bool_)):
        return float(value)
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "biuf":
        return float(value)
    raise ParameterError(where, value, "a metric must return one real number")
