"""Convolution engines behind :class:`cmsim.rtd.models.Series` (private).

* :class:`GammaSum`: a chain of CSTR / tanks-in-series stages with *different* stage times is a
  sum of independent gamma variables. Moschopoulos (1985, Ann. Inst. Statist. Math. 37A:541-544)
  writes its law exactly as a mixture of gamma laws with the smallest stage scale:
  ``F(t) = sum_k p_k P(rho + k, t / b_min)`` with non-negative weights ``p_k`` (sum 1) from a
  positive recursion. All terms are non-negative, so F, 1 - F and E keep full relative accuracy
  (no cancellation). The mixture is cut where the remaining weight is below 1e-17.
* :class:`QuadConvolution`: F = E_a * F_b by adaptive Gauss-Kronrod quadrature (epsabs 1e-14,
  epsrel 1e-11) for any other pair, all time points of a call together
  (:mod:`cmsim.rtd._quadrature`); results are cached per time point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

from cmsim.rtd._quadrature import batch_quad

#: Weight below which the Moschopoulos mixture is truncated.
MIXTURE_CUT = 1e-17
#: Most mixture terms before GammaSum refuses (stage scales too far apart).
MAX_TERMS = 20_000
#: Error goals of the convolution integrals (absolute, relative; as ``scipy.integrate.quad``).
EPSABS, EPSREL = 1e-14, 1e-11
#: Time points whose values a QuadConvolution keeps per function (cleared when full).
CACHE_POINTS = 65_536
#: Time points integrated together (the node arrays of a round stay below about 60 MB).
CHUNK_POINTS = 2048


class GammaSum:
    """Exact law of a sum of independent gamma variables (shape ``a_i``, scale ``b_i``)."""

    def __init__(self, shapes: Sequence[float], scales: Sequence[float]) -> None:
        a = np.asarray(shapes, dtype=np.float64)
        b = np.asarray(scales, dtype=np.float64)
        b1 = float(b.min())
        ratio = 1.0 - b1 / b                       # in [0, 1)
        self.rho = float(a.sum())
        self.scale = b1
        r = float(ratio.max())
        if r == 0.0:
            weights = np.array([1.0])
        else:
            # terms needed: p_k ~ C r^k k^(a-1) in the tail; the index k of the mixture is a sum
            # of negative binomials, whose mean and SD place the weights' bulk (far from 0 when
            # C is tiny); cap and refuse when too many
            logc = float(np.sum(a * np.log(b1 / b)))
            if not r < 1.0:  # a scale below 1e-16 of another: the series cannot weigh them
                raise OverflowError("stage scales too far apart for the gamma mixture")
            odds = ratio / (1.0 - ratio)
            mean_k = float(np.sum(a * odds))
            sd_k = math.sqrt(float(np.sum(a * odds / (1.0 - ratio))))
            k_est = max((math.log(MIXTURE_CUT) - logc) / math.log(r), mean_k + 40.0 * sd_k)
            if not k_est + 50 <= MAX_TERMS:
                raise OverflowError("stage scales too far apart for the gamma mixture")
            kmax = max(int(math.ceil(k_est)) + 50, 60)
            k = np.arange(1, kmax + 1, dtype=np.float64)
            # gamma_k = sum_i a_i ratio_i^k / k, computed in log space where ratio_i > 0
            gam = np.zeros(kmax + 1)
            for ai, ri in zip(a, ratio, strict=True):
                if ri > 0.0:
                    gam[1:] += ai * np.exp(k * math.log(ri)) / k
            igam = np.arange(kmax + 1) * gam        # i * gamma_i
            delta = np.zeros(kmax + 1)
            delta[0] = 1.0
            c = math.exp(logc)
            tail_factor = r / (1.0 - r)
            last = kmax
            for kk in range(kmax):
                # delta_{kk+1} = 1/(kk+1) sum_{i=1}^{kk+1} i gamma_i delta_{kk+1-i}
                delta[kk + 1] = np.dot(igam[1: kk + 2], delta[kk::-1]) / (kk + 1)
                if kk > max(10.0, mean_k) and \
                        c * delta[kk + 1] * (kk + 1) * tail_factor < MIXTURE_CUT:
                    last = kk + 1
                    break
            weights = c * delta[: last + 1]
            if not abs(weights.sum() - 1.0) < 1e-12:  # the cut missed weight: do not renormalise
                raise OverflowError("gamma mixture did not converge within its terms")
            weights /= weights.sum()                 # remainder < 1e-17 by construction
        self.weights = weights
        self.shapes = self.rho + np.arange(weights.size)

    def _apply(self, u: np.ndarray, fn: str) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        flat = u.ravel()
        out = np.empty_like(flat)
        x = np.maximum(flat, 0.0) / self.scale
        chunk = max(1, 2_000_000 // self.weights.size)
        for i0 in range(0, flat.size, chunk):
            xx = x[i0: i0 + chunk, None]
            if fn == "cdf":
                v = special.gammainc(self.shapes[None, :], xx)
            elif fn == "sf":
                v = special.gammaincc(self.shapes[None, :], xx)
            else:
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    v = np.exp(special.xlogy(self.shapes[None, :] - 1.0, xx) - xx
                               - special.gammaln(self.shapes[None, :])) / self.scale
            out[i0: i0 + chunk] = v @ self.weights
        if fn == "pdf":
            out[flat < 0.0] = 0.0
        elif fn == "cdf":
            out[flat <= 0.0] = 0.0
        else:
            out[flat <= 0.0] = 1.0
        return out.reshape(u.shape)

    def cdf(self, u: np.ndarray) -> np.ndarray:
        out = self._apply(u, "cdf")
        upper = out > 0.5            # 1 - sf there: exact 1 in the far tail
        if np.any(upper):
            out[upper] = 1.0 - self._apply(np.asarray(u, dtype=np.float64)[upper], "sf")
        return out

    def sf(self, u: np.ndarray) -> np.ndarray:
        return self._apply(u, "sf")

    def pdf(self, u: np.ndarray) -> np.ndarray:
        return self._apply(u, "pdf")


class QuadConvolution:
    """Law of A + B (independent) by adaptive quadrature over the density of ``a``.

    ``a`` and ``b`` need ``_pdf``, ``_cdf``, ``_sf`` (array in, array out), ``lower_bound``,
    ``upper_bound`` and a ``breakpoints`` tuple (may be empty) of kinks of E_a. All time points
    of one call are integrated together (:func:`cmsim.rtd._quadrature.batch_quad`: the
    densities are evaluated on the nodes of every point in one array), with
    ``scipy.integrate.quad`` as the fallback for a point whose subdivision does not converge.
    Values are cached per time point.
    """

    def __init__(self, a, b, median: float) -> None:
        self.a = a
        self.b = b
        self.median = median
        self._cache: dict[str, dict[float, float]] = {"cdf": {}, "sf": {}, "pdf": {}}

    def __getstate__(self) -> dict:
        """Pickled without the cached values (up to a few MB; recomputed on demand)."""
        return {**self.__dict__, "_cache": {"cdf": {}, "sf": {}, "pdf": {}}}

    def _limits(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = np.full(u.shape, float(self.a.lower_bound))
        hi = np.minimum(u - self.b.lower_bound, self.a.upper_bound)
        return lo, hi

    def _convolve(self, u: np.ndarray, fb) -> np.ndarray:
        """``int E_a(s) fb(u - s) ds`` over the support for every ``u``."""
        fa = self.a._pdf
        lo, hi = self._limits(u)
        pts = np.asarray(getattr(self.a, "breakpoints", ()), dtype=np.float64)

        def integrand(s: np.ndarray, k: np.ndarray) -> np.ndarray:
            return fa(s) * fb(u[k][:, None] - s)

        def fallback(j: int) -> float:
            from scipy import integrate  # noqa: PLC0415 - lazy: imports scipy.optimize

            x = float(u[j])
            inner = [float(p) for p in pts if lo[j] < p < hi[j]]
            val, _ = integrate.quad(lambda s: float(fa(np.array(s)) * fb(np.array(x - s))),
                                    float(lo[j]), float(hi[j]), points=inner or None,
                                    epsabs=EPSABS, epsrel=EPSREL, limit=400)
            return val

        out = np.empty(u.size)
        for i0 in range(0, u.size, CHUNK_POINTS):  # bounds the node arrays (~60 MB)
            sl = slice(i0, i0 + CHUNK_POINTS)
            out[sl] = batch_quad(lambda s, k, o=i0: integrand(s, k + o), lo[sl], hi[sl], pts,
                                 epsabs=EPSABS, epsrel=EPSREL,
                                 fallback=lambda j, o=i0: fallback(j + o))
        return out

    def _compute(self, kind: str, u: np.ndarray) -> np.ndarray:
        """F, 1 - F or E at the points ``u`` (finite, above the lower bound): F below the
        median and 1 - F above it are integrated, the other from them."""
        if kind == "pdf":
            return self._convolve(u, self.b._pdf)
        out = np.empty_like(u)
        low = u < self.median
        if low.any():
            f = self._convolve(u[low], self.b._cdf)
            out[low] = f if kind == "cdf" else 1.0 - f
        if (~low).any():
            x = u[~low]
            # sf(u) = sf_a(u - lb_b) + int_{lb_a}^{u - lb_b} E_a(s) sf_b(u - s) ds
            sf = self.a._sf(x - self.b.lower_bound) + self._convolve(x, self.b._sf)
            out[~low] = sf if kind == "sf" else 1.0 - sf
        return out

    def _map(self, kind: str, u: np.ndarray, below: float, above: float) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        flat = u.ravel()
        out = np.empty_like(flat)
        lb = self.a.lower_bound + self.b.lower_bound
        out[flat <= lb] = below
        out[np.isinf(flat) & (flat > lb)] = above
        inner = (flat > lb) & np.isfinite(flat)
        cache = self._cache[kind]
        keys = flat[inner].tolist()
        missing = sorted({x for x in keys if x not in cache})
        if len(cache) + len(missing) > CACHE_POINTS:
            cache.clear()
            missing = sorted(set(keys))
        if missing:
            values = self._compute(kind, np.array(missing, dtype=np.float64))
            cache.update(zip(missing, values.tolist(), strict=True))
        out[inner] = [cache[x] for x in keys]
        return out.reshape(u.shape)

    def cdf(self, u: np.ndarray) -> np.ndarray:
        return np.clip(self._map("cdf", u, 0.0, 1.0), 0.0, 1.0)

    def sf(self, u: np.ndarray) -> np.ndarray:
        return np.clip(self._map("sf", u, 1.0, 0.0), 0.0, 1.0)

    def pdf(self, u: np.ndarray) -> np.ndarray:
        return np.maximum(self._map("pdf", u, 0.0, 0.0), 0.0)
