"""Axial dispersion model (open-open closed form; closed-closed exact series + Fourier inversion).

Private module: :class:`AxialDispersion` is re-exported by :mod:`cmsim.rtd.models`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
from scipy import special

from cmsim import _validate
from cmsim.errors import ParameterError
from cmsim.rtd._base import RTDModel
from cmsim.rtd._chebyshev import PiecewiseChebyshev

__all__ = ["AxialDispersion"]

_EPS = np.finfo(float).eps
#: Eigenvalues computed for the closed-closed series.
_N_ROOTS = 4000
#: Series terms below exp(_LOG_CUT) (relative to 1) are dropped.
_LOG_CUT = math.log(1e-18)
#: The series is used where rounding of its alternating terms stays below this (absolute).
_SERIES_TOL = 2e-15
#: Leading edge: where Pe (1 - theta)^2 / (4 theta) exceeds this, E, F are below 1e-300.
_UNDERFLOW = 800.0
#: On the Fourier part of the leading edge, E and F are 0 where Pe (1 - theta)^2 / (4 theta)
#: exceeds this (below about 1e-17: the inversion returns only its rounding noise there).
_EDGE_CUT = 39.0
#: Interpolation error allowed on the leading edge: F, and E relative to its peak (about
#: sqrt(Pe / (4 pi)) / tau, at least 1 / tau); relative 1e-3 where the values are small, down
#: to the inversion's noise (2e-16 in F, 5e-15 of the peak in E).
_TABLE_ATOL = {"cdf": 5e-14, "pdf": 1e-13}
_TABLE_FLOOR = {"cdf": 2e-16, "pdf": 5e-15}
#: Leading-edge tables by (Pe, "cdf" or "pdf"): they depend on Pe alone (theta = t / tau).
_TABLES: dict[tuple[float, str], PiecewiseChebyshev | None] = {}
_TABLES_SIZE = 64
#: Largest Pe with a table: beyond it the inversion's rounding noise grows above the table's
#: tolerances (at Pe = 1000, 2e-14 in F), and the edge is steep enough to need many panels.
_TABLE_MAX_PE = 500.0


class AxialDispersion(RTDModel):
    """Axial dispersion model with open-open or closed-closed (Danckwerts) boundaries.

    Parameters
    ----------
    mean_residence_time : float
        Space time tau = L/u [s], > 0. For ``boundary="closed"`` it is the mean residence time;
        for ``"open"`` the mean is ``tau (1 + 2/Pe)`` (docs/rtd.md, "convention trap").
    peclet : float
        Pe = u L / D_ax [-], > 0.
    boundary : {"closed", "open"}
        Boundary conditions.

    Notes
    -----
    With theta = t / tau:

    * ``"open"``: E = sqrt(Pe / (4 pi theta)) exp(-Pe (1-theta)^2 / (4 theta)) / tau,
      F = erfc(A(1-theta))/2 - exp(Pe) erfc(A(1+theta))/2 with A = sqrt(Pe/(4 theta)), written
      with ``erfcx`` so that nothing overflows, and 1 - F as a sum of two positive terms (tail
      keeps relative accuracy). Closed form: rounding-level accuracy. Mean tau (1 + 2/Pe),
      variance tau^2 (2/Pe + 8/Pe^2), G(s) = exp(Pe (1 - q)/2) / q, q = sqrt(1 + 4 s tau/Pe).
    * ``"closed"``: mean tau, variance tau^2 (2/Pe - 2 (1 - exp(-Pe))/Pe^2),
      G(s) = 4 q exp(Pe/2) / ((1+q)^2 exp(Pe q/2) - (1-q)^2 exp(-Pe q/2)). Evaluated by

      1. the residue (eigenvalue) series of docs/rtd.md (model library), with eigenvalues
         alpha_k bracketed one per ((k-1) pi, k pi) and solved by bisection to rounding, using
         as many terms as needed to drop below 1e-18, wherever the rounding error of its
         alternating terms (eps * sum |term|) is below 2e-15 -- that is everywhere except the
         leading edge at large Pe;
      2. on the leading edge, exact Fourier-series inversion of G on the imaginary axis for the
         periodised density (period T beyond the point where 1 - F < 1e-17, so aliasing is
         below 1e-17; series cut where |G(i omega)| < 1e-18).

      Accuracy: |error| < 1e-13 in F and 1 - F (relative ~1e-13 in the tail, where the series
      is used) and < 1e-12 tau^-1 in E; this is checked in the tests against
      docs/reference-values.md rows 1-4 and by comparing both evaluation routes where they
      overlap. Below 1e-300
      (Pe (1-theta)^2 / (4 theta) > 800 on the leading edge) E and F are returned as 0, and
      on the part of the edge the Fourier route covers already below about 1e-17 (> 39), where
      the inversion returns only its rounding noise. Up to Pe = 500 the Fourier route is
      read from a piecewise Chebyshev table of it (built once per Pe), within 5e-14 of it.
    """

    def __init__(self, mean_residence_time: float, peclet: float,
                 boundary: str = "closed") -> None:
        tau = _validate.positive("mean_residence_time", mean_residence_time)
        pe = _validate.positive("peclet", peclet)
        if boundary not in ("closed", "open"):
            raise ParameterError("boundary", boundary, "must be 'closed' or 'open'")
        self._set(tau=tau, pe=pe, boundary=boundary, _cache={})

    # pickling: drop the lazy cache
    def __getstate__(self) -> dict[str, Any]:
        return {"tau": self.tau, "pe": self.pe, "boundary": self.boundary, "_cache": {}}

    @property
    def params(self) -> dict[str, Any]:
        return {"mean_residence_time": self.tau, "peclet": self.pe, "boundary": self.boundary}

    @property
    def mean(self) -> float:
        if self.boundary == "open":
            return self.tau * (1.0 + 2.0 / self.pe)
        return self.tau

    @property
    def variance(self) -> float:
        pe = self.pe
        if self.boundary == "open":
            return self.tau**2 * (2.0 / pe + 8.0 / pe**2)
        if pe < 1e-3:   # Pe + expm1(-Pe) by its series (cancellation)
            core = pe**2 / 2 - pe**3 / 6 + pe**4 / 24 - pe**5 / 120 + pe**6 / 720
        else:
            core = pe + math.expm1(-pe)
        return self.tau**2 * 2.0 * core / pe**2

    # ----------------------------------------------------------------------- transfer function
    def _laplace(self, s: np.ndarray) -> np.ndarray:
        pe = self.pe
        q = np.sqrt(1.0 + 4.0 * np.asarray(s, dtype=np.complex128) * self.tau / pe)
        if self.boundary == "open":
            return np.exp(0.5 * pe * (1.0 - q)) / q
        return (4.0 * q * np.exp(0.5 * pe * (1.0 - q))
                / ((1.0 + q) ** 2 - (1.0 - q) ** 2 * np.exp(-pe * q)))

    # ---------------------------------------------------------------------------- open-open
    def _open(self, theta: np.ndarray, what: str) -> np.ndarray:
        pe = self.pe
        fin = np.isfinite(theta)
        if not fin.all():
            v = self._open(np.where(fin, theta, 1.0), what)
            far = {"pdf": 0.0, "cdf": 1.0, "sf": 0.0}[what]
            return np.where(fin, v, np.where(theta > 0, far, v))
        th = np.where(theta > 0.0, theta, 1.0)
        a = np.sqrt(pe / (4.0 * th))
        x = a * (1.0 - th)
        y = a * (1.0 + th)
        g = np.exp(-x * x)
        if what == "pdf":
            v = np.sqrt(pe / (4.0 * math.pi * th)) * g / self.tau
            return np.where(theta > 0.0, v, 0.0)
        if what == "cdf":
            v = np.where(x > 0.0, 0.5 * g * (special.erfcx(np.maximum(x, 0.0)) - special.erfcx(y)),
                         0.5 * special.erfc(x) - 0.5 * special.erfcx(y) * g)
            return np.where(theta > 0.0, np.clip(v, 0.0, 1.0), 0.0)
        v = 0.5 * special.erfc(-x) + 0.5 * special.erfcx(y) * g
        return np.where(theta > 0.0, np.clip(v, 0.0, 1.0), 1.0)

    # -------------------------------------------------------------------------- closed-closed
    def _roots(self) -> dict[str, Any]:
        c = self._cache
        if "alpha" in c:
            return c
        pe = self.pe
        k = np.arange(1, _N_ROOTS + 1, dtype=np.float64)

        def f(a: np.ndarray) -> np.ndarray:
            return (4.0 * a * a - pe * pe) * np.sin(a) - 4.0 * pe * a * np.cos(a)

        lo = (k - 1.0) * math.pi
        lo[0] = 1e-300
        hi = k * math.pi
        flo = np.sign(f(np.where(k == 1, 1e-8, lo)))
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            fm = np.sign(f(mid))
            same = fm == flo
            lo = np.where(same, mid, lo)
            hi = np.where(same, hi, mid)
            if np.all(hi - lo <= 2.0 * _EPS * hi):
                break
        alpha = 0.5 * (lo + hi)
        beta = (pe * pe + 4.0 * alpha * alpha) / (4.0 * pe)
        sign = np.where(np.arange(_N_ROOTS) % 2 == 0, 1.0, -1.0)
        coef = 8.0 * alpha * alpha / (4.0 * alpha * alpha + pe * pe + 4.0 * pe)   # > 0
        c.update(alpha=alpha, beta=beta, sign=sign, logc=np.log(coef),
                 logcb=np.log(coef / beta))
        # smallest theta where the series is accurate (rounding of alternating terms)
        def err(theta: float) -> float:
            ex = 0.5 * pe - beta * theta
            lt = np.logaddexp.reduce(np.concatenate((c["logc"] + ex, c["logcb"] + ex)))
            k_need = np.searchsorted(beta, (0.5 * pe - _LOG_CUT + 2.0) / theta)
            if k_need >= _N_ROOTS:
                return math.inf
            return _EPS * math.exp(min(lt, 700.0))

        lo_t, hi_t = 1e-12, 1.0
        while err(hi_t) > _SERIES_TOL:
            hi_t *= 2.0
        if err(lo_t) <= _SERIES_TOL:
            theta_s = lo_t
        else:
            for _ in range(60):
                mid = math.sqrt(lo_t * hi_t)
                if err(mid) > _SERIES_TOL:
                    lo_t = mid
                else:
                    hi_t = mid
            theta_s = hi_t
        c["theta_s"] = theta_s
        # Fourier inversion set-up for theta < theta_s
        # period: beyond where sf < 1e-17 (series is valid there)
        th17 = (0.5 * pe + c["logcb"][0] - math.log(1e-17)) / beta[0]
        period = max(th17, 0.0) + theta_s + 1.0
        rq = 1.0 + 2.0 * (41.5 + math.log(8.0)) / pe      # Re q where |G| < ~1e-18
        z = 2.0 * rq * rq - 1.0
        omax = 0.25 * pe * math.sqrt(max(z * z - 1.0, 0.0)) + 50.0
        nterm = int(math.ceil(omax * period / (2.0 * math.pi))) + 8
        omega = 2.0 * math.pi * np.arange(1, nterm + 1) / period
        c.update(period=period, omega=omega, g=self._laplace(1j * omega / self.tau))
        return c

    def _series(self, theta: np.ndarray, what: str) -> np.ndarray:
        c = self._roots()
        pe = self.pe
        beta, sign = c["beta"], c["sign"]
        logc = c["logc"] if what == "pdf" else c["logcb"]
        out = np.zeros_like(theta)
        if theta.size == 0:
            return out
        k_need = np.minimum(np.searchsorted(beta, (0.5 * pe - _LOG_CUT + 2.0) / theta) + 1,
                            _N_ROOTS)
        # bucket points by the number of terms (powers of two) to keep the work small
        bucket = np.minimum(2 ** np.ceil(np.log2(np.maximum(k_need, 1))).astype(int), _N_ROOTS)
        for kb in np.unique(bucket):
            sel = bucket == kb
            th = theta[sel]
            for i0 in range(0, th.size, max(1, 4_000_000 // kb)):
                tt = th[i0: i0 + max(1, 4_000_000 // kb), None]
                ex = logc[None, :kb] + 0.5 * pe - beta[None, :kb] * tt
                vals = (sign[None, :kb] * np.exp(ex)).sum(axis=1)
                idx = np.flatnonzero(sel)[i0: i0 + tt.shape[0]]
                out[idx] = vals
        if what == "pdf":
            out = out / self.tau
        return out

    def _fourier(self, theta: np.ndarray, what: str) -> np.ndarray:
        c = self._roots()
        period, omega, g = c["period"], c["omega"], c["g"]
        out = np.empty_like(theta)
        step = max(1, 4_000_000 // omega.size)
        for i0 in range(0, theta.size, step):
            th = theta[i0: i0 + step, None]
            ph = np.exp(1j * omega[None, :] * th)
            if what == "pdf":
                v = (1.0 + 2.0 * (g[None, :] * ph).real.sum(axis=1)) / period / self.tau
            else:
                v = (th[:, 0] / period
                     + 2.0 / period * (g[None, :] * (ph - 1.0) / (1j * omega[None, :]))
                     .real.sum(axis=1))
            out[i0: i0 + step] = v
        return out

    def _edge_theta(self, level: float) -> float:
        """theta < 1 where Pe (1 - theta)^2 / (4 theta) = level (the smaller root)."""
        pe = self.pe
        bq = 2.0 * pe + 4.0 * level
        return (bq - math.sqrt(bq * bq - 4.0 * pe * pe)) / (2.0 * pe)

    def _leading_edge(self, theta: np.ndarray, what: str) -> np.ndarray:
        """F or E on the leading edge (``theta < theta_s``): the Fourier inversion (0 below
        :data:`_EDGE_CUT`), through a piecewise Chebyshev table of it (built at the first call
        with 64 points or more, once per Peclet number up to 500) -- a fraction of a
        microsecond per point instead of 5-120 us."""
        out = np.zeros_like(theta)
        cut = self._edge_theta(_EDGE_CUT)
        live = theta > cut
        if not live.any():
            return out
        key = (self.pe, what)
        if key not in _TABLES and theta.size >= 64 and self.pe <= _TABLE_MAX_PE:
            hi = self._roots()["theta_s"]
            scale = self.tau if what == "pdf" else 1.0
            peak = max(1.0, math.sqrt(self.pe / (4.0 * math.pi))) if what == "pdf" else 1.0
            table = None
            if cut < hi:
                with contextlib.suppress(ArithmeticError):  # too rough: no table
                    table = PiecewiseChebyshev(
                        lambda x: self._fourier(x, what) * scale, cut, hi,
                        _TABLE_ATOL[what] * peak, rtol=1e-3, floor=_TABLE_FLOOR[what] * peak)
            if len(_TABLES) >= _TABLES_SIZE:
                _TABLES.pop(next(iter(_TABLES)))
            _TABLES[key] = table
        table = _TABLES.get(key)
        if table is None:
            out[live] = self._fourier(theta[live], what)
        else:
            out[live] = table(theta[live]) / (self.tau if what == "pdf" else 1.0)
        return out

    def _closed(self, theta: np.ndarray, what: str) -> np.ndarray:
        shape = theta.shape
        th = theta.ravel()
        c = self._roots()
        out = np.empty_like(th)
        nonpos = th <= 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            under = (~nonpos) & (th < 1.0) & (self.pe * (1.0 - th) ** 2 / (4.0 * th) > _UNDERFLOW)
        big = np.isinf(th)
        ser = (th >= c["theta_s"]) & ~big
        fou = ~(nonpos | under | ser | big)
        zero_val = 1.0 if what == "sf" else 0.0
        out[nonpos | under] = zero_val
        out[big] = 1.0 if what == "cdf" else 0.0
        if ser.any():
            v = self._series(th[ser], "pdf" if what == "pdf" else "sf")
            out[ser] = 1.0 - v if what == "cdf" else v
        if fou.any():
            v = self._leading_edge(th[fou], "pdf" if what == "pdf" else "cdf")
            out[fou] = 1.0 - v if what == "sf" else v
        if what == "pdf":
            np.maximum(out, 0.0, out=out)
        else:
            np.clip(out, 0.0, 1.0, out=out)
        return out.reshape(shape)

    # ---------------------------------------------------------------------- public functions
    def _pdf(self, t: np.ndarray) -> np.ndarray:
        theta = np.asarray(t, dtype=np.float64) / self.tau
        if self.boundary == "open":
            return self._open(theta, "pdf")
        return self._closed(theta, "pdf")

    def _cdf(self, t: np.ndarray) -> np.ndarray:
        theta = np.asarray(t, dtype=np.float64) / self.tau
        if self.boundary == "open":
            return self._open(theta, "cdf")
        return self._closed(theta, "cdf")

    def _sf(self, t: np.ndarray) -> np.ndarray:
        theta = np.asarray(t, dtype=np.float64) / self.tau
        if self.boundary == "open":
            return self._open(theta, "sf")
        return self._closed(theta, "sf")
