"""Risk of a gate tick: the probability that its content lies outside the limits.

With the content estimate ``c`` and its standard deviation ``s`` (fractions of target),

.. math:: r = \\Phi\\left(\\frac{L - c}{s}\\right) + 1 - \\Phi\\left(\\frac{U - c}{s}\\right),

the Gaussian probability of a content below ``L`` or above ``U``. A tick is diverted when
``r > max_risk``; the expected number of escapes of a run is ``sum(r * tablets)`` over the
accepted ticks.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["content_risk"]

_SQRT2 = math.sqrt(2.0)


@njit(cache=True)
def _risk(c, s, lo, hi, out):  # pragma: no cover - compiled
    for k in range(c.size):
        ck = c[k]
        sk = s[k]
        if math.isnan(ck):
            out[k] = 0.0
        elif sk <= 0.0:
            out[k] = 1.0 if (ck < lo or ck > hi) else 0.0
        else:
            zl = (lo - ck) / sk
            zh = (ck - hi) / sk
            if zl < -9.0 and zh < -9.0:
                out[k] = 0.0
            else:
                out[k] = 0.5 * math.erfc(-zl / _SQRT2) + 0.5 * math.erfc(-zh / _SQRT2)


def content_risk(content: np.ndarray, sd: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Probability that each tick's content is outside ``[lo, hi]`` [-].

    Parameters
    ----------
    content : ndarray
        Content estimates, fractions of target [-] (NaN: no flow; risk 0).
    sd : ndarray
        Their standard deviations [-] (0: the estimate is exact).
    lo, hi : float
        Limits, fractions of target [-].

    Returns
    -------
    ndarray
        Risk per tick in [0, 1].

    Examples
    --------
    >>> content_risk(np.array([1.0, 0.95]), np.array([0.01, 0.01]), 0.95, 1.05).round(4)
    array([0. , 0.5])
    """
    c = np.ascontiguousarray(content, dtype=np.float64)
    s = np.ascontiguousarray(sd, dtype=np.float64)
    out = np.empty(c.size)
    _risk(c, s, float(lo), float(hi), out)
    return out
