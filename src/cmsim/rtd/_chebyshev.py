"""Piecewise Chebyshev interpolation of an expensive smooth function (private).

:class:`PiecewiseChebyshev` samples a function on ``[lo, hi]`` at the Chebyshev points of each
panel, keeps a panel when the interpolant agrees with the function at test points between the
samples to ``atol``, and halves it otherwise. Evaluating the interpolant costs a search and a
Clenshaw recurrence per point: a fraction of a microsecond, against tens of microseconds for the
Fourier inversion of the closed-closed dispersion model that uses it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.polynomial import chebyshev

__all__ = ["PiecewiseChebyshev"]

#: Degree of the interpolant on each panel.
DEGREE = 24
#: Most panels before the construction gives up (the function is not smooth enough).
MAX_PANELS = 256


class PiecewiseChebyshev:
    """Interpolant of ``fn`` on ``[lo, hi]``.

    At each test point with value ``y`` the interpolant may be off by
    ``min(atol, max(floor, rtol |y|))``: ``atol`` where the function is large, relative where
    it is small (so that a steep rise from nearly 0 stays increasing), never below ``floor``
    (the noise of ``fn``).

    Parameters
    ----------
    fn : callable
        Vectorised function of one array.
    lo, hi : float
        Interval, ``lo < hi``.
    atol : float
        Largest error accepted.
    rtol, floor : float
        Relative error accepted where ``rtol |y| < atol``, and its lower bound (default 0:
        ``atol`` everywhere).

    Raises
    ------
    ArithmeticError
        ``fn`` needs more than :data:`MAX_PANELS` panels.
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], lo: float, hi: float,
                 atol: float, rtol: float = 0.0, floor: float = 0.0) -> None:
        nodes = np.cos(np.pi * (np.arange(DEGREE + 1) + 0.5) / (DEGREE + 1))  # first kind
        probes = np.cos(np.pi * np.arange(1, DEGREE + 1) / (DEGREE + 1))  # between the nodes
        todo = [(float(lo), float(hi))]
        panels: list[tuple[float, float, np.ndarray]] = []
        while todo:
            if len(panels) + len(todo) > MAX_PANELS:
                raise ArithmeticError("function too rough for a piecewise Chebyshev table")
            ab = np.array(todo)
            todo = []
            mid, half = 0.5 * (ab[:, 0] + ab[:, 1]), 0.5 * (ab[:, 1] - ab[:, 0])
            x = mid[:, None] + half[:, None] * np.concatenate((nodes, probes))[None, :]
            y = fn(x.ravel()).reshape(x.shape)
            for (a, b), row in zip(ab, y, strict=True):
                coef = _BASIS @ row[: DEGREE + 1]
                at_probes = row[DEGREE + 1:]
                tol = (np.minimum(atol, np.maximum(floor, rtol * np.abs(at_probes))) if rtol
                       else atol)
                ok = np.all(np.abs(chebyshev.chebval(probes, coef) - at_probes) <= tol)
                if ok or b - a <= 64.0 * np.finfo(float).eps * max(abs(a), abs(b)):
                    panels.append((a, b, coef))
                else:
                    m = 0.5 * (a + b)
                    todo += [(a, m), (m, b)]
        panels.sort(key=lambda p: p[0])
        self.edges = np.array([p[0] for p in panels] + [panels[-1][1]])
        self.coef = np.array([p[2] for p in panels])          # (panels, DEGREE + 1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        i = np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, self.coef.shape[0] - 1)
        a, b = self.edges[i], self.edges[i + 1]
        u = np.clip((2.0 * x - a - b) / (b - a), -1.0, 1.0)
        c = self.coef[i]
        # Clenshaw recurrence, all points at once
        b1 = np.zeros_like(u)
        b2 = np.zeros_like(u)
        for k in range(DEGREE, 0, -1):
            b1, b2 = 2.0 * u * b1 - b2 + c[:, k], b1
        return u * b1 - b2 + c[:, 0]


def _basis(n: int) -> np.ndarray:
    """Matrix taking the values at the first-kind points ``cos(pi (j + 1/2) / n)``,
    ``j = 0..n-1``, to the Chebyshev coefficients of their interpolant."""
    j = np.arange(n)
    basis = (2.0 / n) * np.cos(np.pi * j[:, None] * (j[None, :] + 0.5) / n)
    basis[0] *= 0.5
    return basis


_BASIS = _basis(DEGREE + 1)
