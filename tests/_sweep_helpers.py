"""Module-level (picklable) metrics and predicates for the sweep tests."""

from __future__ import annotations

LONG_S = 400.0


def ticks_or_fail(result) -> dict[str, float]:
    """Custom metric: the tick count; raises for runs longer than ``LONG_S`` [s]."""
    duration = result.n_ticks * result.dt
    if duration > LONG_S:
        raise ValueError(f"run of {duration:g} s is too long for this metric")
    return {"ticks": float(result.n_ticks)}


def first_replicate(row) -> bool:
    """keep predicate: the results of replicate 0."""
    return row["replicate"] == 0
