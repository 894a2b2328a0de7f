"""Small argument checks shared by the numerics (stdlib + numpy only)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cmsim.errors import ParameterError


def positive(name: str, value: Any) -> float:
    """Return ``value`` as float, or raise ParameterError unless finite and > 0."""
    x = _real(name, value)
    if not x > 0.0:
        raise ParameterError(name, value, "must be > 0")
    return x


def non_negative(name: str, value: Any) -> float:
    """Return ``value`` as float, or raise ParameterError unless finite and >= 0."""
    x = _real(name, value)
    if not x >= 0.0:
        raise ParameterError(name, value, "must be >= 0")
    return x


def probability(name: str, value: Any, *, open_interval: bool = True) -> float:
    """Return ``value`` as float in (0, 1) (or [0, 1] with ``open_interval=False``)."""
    x = _real(name, value)
    ok = 0.0 < x < 1.0 if open_interval else 0.0 <= x <= 1.0
    if not ok:
        rule = "must be in (0, 1)" if open_interval else "must be in [0, 1]"
        raise ParameterError(name, value, rule)
    return x


def finite_array(name: str, value: Any, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``value`` as a float64 array; raise ParameterError on NaN/inf or wrong ndim."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(name, value, f"must be an array of real numbers ({exc})") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            raise ParameterError(name, f"array of shape {arr.shape}",
                                 f"must have ndim in {allowed}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr.ravel()))[0])
        raise ParameterError(name, f"element {bad} = {arr.ravel()[bad]}", "must be finite")
    return arr


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ParameterError(name, value, "must be a real number, not bool")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ParameterError(name, value, "must be a real number") from None
    if not math.isfinite(x):
        raise ParameterError(name, value, "must be finite")
    return x
