"""Metrics of the fault benchmark: per run (from a result) and per fault and policy.

Definitions (all tablet counts are floats: tick mass / nominal tablet mass, as in
``summary()["tablets"]``):

* **nonconforming** - tablets whose true API content is outside the specification
  (``nonconforming_produced``); a replicate *makes* nonconforming material when this is at
  least :data:`MIN_TABLETS` (half a tablet).
* **escapes** - nonconforming tablets accepted (``nonconforming_accepted``). A replicate *has an
  escape* when escapes >= :data:`MIN_TABLETS`.
* **escape rate** - escapes / nonconforming, pooled over the replicates of a case.
* **waste** - conforming tablets diverted (``conforming_diverted``); **waste ratio** - waste /
  nonconforming per replicate (replicates that make nonconforming material), median over them.
* **false diversion** (no-fault case) - waste as % of the tablets produced (mean over
  replicates) and diversion events scaled to 8 h of production.
* **detection time** - the earliest monitor decision at or after the fault start that diverts
  (or asks to divert) material: the smallest ``time_s`` of an event-log record of type
  ``alarm`` or ``diversion_request`` and, for a ``diversion`` record, the smallest
  ``decision_s`` of its windows (the decisions behind a gate movement), else its own
  ``decision_s``, else its ``time_s``; among those at or after the fault start. A decision
  time before 0 (the gate's initial position, e.g. a start-up diversion) counts as 0.
  **Detection delay** = detection time - fault start; NaN when nothing was decided after the
  start.
* **expected escapes** - the monitor's own estimate (sum of its risk over accepted tablets,
  ``summary()["diversion"]["expected_escapes"]``), NaN when the monitor does not report it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "DECISION_TYPES",
    "EIGHT_HOURS_S",
    "MIN_TABLETS",
    "TARGETS",
    "detection_time",
    "read_run",
    "summarize_case",
    "wilson_interval",
]

#: A tablet count below this (half a tablet) counts as none [-].
MIN_TABLETS = 0.5
#: Event-log record types that are diversion decisions.
DECISION_TYPES = ("alarm", "diversion_request", "diversion")
#: Length of the reference production period of the false-diversion target [s].
EIGHT_HOURS_S = 8 * 3600.0
#: The issue's targets: no replicate with an escape; median waste ratio <= 1.5; false
#: diversion <= 0.1 % of the tablets of an 8 h no-fault run.
TARGETS = {"escape_replicates": 0, "waste_ratio_median": 1.5, "false_diversion_pct": 0.1}


def detection_time(events: Iterable[Mapping[str, Any]], start_s: float | None) -> float:
    """Earliest diversion decision at or after ``start_s`` (see the module docstring).

    Parameters
    ----------
    events : iterable of dict
        Event-log records ``{time_s, type, source, data}``.
    start_s : float or None
        Fault start [s]; None (no fault) gives NaN.

    Returns
    -------
    float
        Decision time [s], NaN if none.
    """
    if start_s is None:
        return math.nan
    best = math.inf
    for e in events:
        kind = e.get("type")
        if kind not in DECISION_TYPES:
            continue
        times = [float(e["time_s"])]
        if kind == "diversion":
            data = e.get("data") or {}
            decided = [float(w["decision_s"]) for w in data.get("windows") or []
                       if isinstance(w, Mapping) and w.get("decision_s") is not None]
            if not decided and data.get("decision_s") is not None:
                decided = [float(data["decision_s"])]
            times = decided or times
        for t in times:
            t = max(t, 0.0)  # a decision "before" the run is the gate's initial position
            if start_s <= t < best:
                best = t
    return best if math.isfinite(best) else math.nan


def read_run(result: Any, start_s: float | None) -> dict[str, Any]:
    """The one place that reads a run's outcome (key renames are fixed here).

    Parameters
    ----------
    result : cmsim.SimulationResult
        A finished run.
    start_s : float or None
        Ground-truth fault start [s] (None for the no-fault case).

    Returns
    -------
    dict
        ``produced``, ``nonconforming``, ``escapes``, ``waste``, ``diverted`` [tablets],
        ``diversion_events`` [-], ``expected_escapes`` [tablets, NaN if not reported],
        ``policy`` (str, "" if not reported), ``duration_s`` [s], ``detection_s`` [s]
        (NaN if none) and ``detection_delay_s`` [s].
    """
    s = result.summary()
    tab = s["tablets"]
    div = s.get("diversion") if isinstance(s.get("diversion"), Mapping) else {}
    expected = div.get("expected_escapes")
    detected = detection_time(result.event_log, start_s)
    return {
        "produced": float(tab["produced"]),
        "nonconforming": float(tab["nonconforming_produced"]),
        "escapes": float(tab["nonconforming_accepted"]),
        "waste": float(tab["conforming_diverted"]),
        "diverted": float(tab["diverted"]),
        "diversion_events": float(len(s.get("diversion_events") or [])),
        "expected_escapes": math.nan if expected is None else float(expected),
        "policy": str(div.get("policy") or ""),
        "duration_s": float(s["duration_s"]),
        "detection_s": detected,
        "detection_delay_s": detected - start_s if start_s is not None else math.nan,
    }


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n``.

    Parameters
    ----------
    k : int
        Successes, 0 <= k <= n.
    n : int
        Trials, > 0.
    confidence : float
        Two-sided confidence level, in (0, 1).

    Returns
    -------
    (float, float)
        Lower and upper bound [-]; for ``k = 0`` the lower bound is 0 and the upper is
        ``z^2 / (n + z^2)``.

    Examples
    --------
    >>> lo, hi = wilson_interval(0, 200)
    >>> lo, round(hi, 5)
    (0.0, 0.01885)
    """
    from scipy.stats import norm  # noqa: PLC0415

    if not (isinstance(n, int | np.integer) and n > 0 and 0 <= k <= n):
        raise ValueError(f"need 0 <= k <= n and n > 0 (k={k}, n={n})")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence}: must be in (0, 1)")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if k == 0 else lo, 1.0 if k == n else hi)


def _median(values: Sequence[float]) -> float:
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    return float(np.median(arr)) if arr.size else math.nan


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "fail")


def summarize_case(runs: Sequence[Mapping[str, Any]], *, reference: bool,
                   nonconforming_expected: bool) -> dict[str, Any]:
    """Aggregate the :func:`read_run` rows of one fault and policy.

    Parameters
    ----------
    runs : sequence of dict
        One :func:`read_run` dict per replicate (at least one).
    reference : bool
        True for the no-fault case (false-diversion metrics instead of detection).
    nonconforming_expected : bool
        The manifest's label; the waste-ratio target applies when it is true.

    Returns
    -------
    dict
        ``replicates``, ``replicates_nonconforming``, ``nonconforming_mean``,
        ``replicates_with_escape``, ``escape_ci95_high`` (Wilson upper bound of the
        per-replicate escape probability), ``escape_rate``, ``waste_ratio_median``,
        ``waste_median``, ``false_diversion_pct``, ``false_diversion_pct_max``,
        ``false_events_per_8h``, ``detected``, ``detection_delay_median_s``,
        ``expected_escapes``, ``true_escapes`` and the verdicts ``target_escape``,
        ``target_waste``, ``target_false_diversion`` ("pass", "fail" or "n/a").
    """
    if not runs:
        raise ValueError("summarize_case needs at least one run")
    n = len(runs)
    nc = np.array([r["nonconforming"] for r in runs], dtype=np.float64)
    esc = np.array([r["escapes"] for r in runs], dtype=np.float64)
    waste = np.array([r["waste"] for r in runs], dtype=np.float64)
    produced = np.array([r["produced"] for r in runs], dtype=np.float64)
    makes_nc = nc >= MIN_TABLETS
    k_escape = int(np.count_nonzero(esc >= MIN_TABLETS))
    ratios = [w / c for w, c, m in zip(waste, nc, makes_nc, strict=True) if m]
    expected = np.array([r["expected_escapes"] for r in runs], dtype=np.float64)
    delays = [r["detection_delay_s"] for r in runs]
    out: dict[str, Any] = {
        "replicates": n,
        "replicates_nonconforming": int(np.count_nonzero(makes_nc)),
        "nonconforming_mean": float(nc.mean()),
        "replicates_with_escape": k_escape,
        "escape_ci95_high": wilson_interval(k_escape, n)[1],
        "escape_rate": float(esc.sum() / nc.sum()) if nc.sum() >= MIN_TABLETS else math.nan,
        "waste_ratio_median": _median(ratios),
        "waste_median": float(np.median(waste)),
        "false_diversion_pct": math.nan,
        "false_diversion_pct_max": math.nan,
        "false_events_per_8h": math.nan,
        "detected": int(sum(not math.isnan(d) for d in delays)),
        "detection_delay_median_s": _median(delays),
        "expected_escapes": float(expected.sum()) if np.isfinite(expected).all() else math.nan,
        "true_escapes": float(esc.sum()),
    }
    if reference:
        pct = np.where(produced > 0, 100.0 * waste / np.where(produced > 0, produced, 1.0), 0.0)
        events = np.array([r["diversion_events"] for r in runs], dtype=np.float64)
        duration = np.array([r["duration_s"] for r in runs], dtype=np.float64)
        out["false_diversion_pct"] = float(pct.mean())
        out["false_diversion_pct_max"] = float(pct.max())
        out["false_events_per_8h"] = float(np.mean(events * EIGHT_HOURS_S / duration))
        out["detected"] = 0
    out["target_escape"] = _verdict(k_escape <= TARGETS["escape_replicates"])
    waste_ok = None
    if nonconforming_expected and not reference:
        r = out["waste_ratio_median"]
        waste_ok = bool(not math.isnan(r) and r <= TARGETS["waste_ratio_median"])
    out["target_waste"] = _verdict(waste_ok)
    out["target_false_diversion"] = _verdict(
        bool(out["false_diversion_pct"] <= TARGETS["false_diversion_pct"]) if reference
        else None)
    return out
