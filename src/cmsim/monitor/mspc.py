"""Multivariate statistical process control: PCA with Hotelling T^2 and Q (SPE) statistics.

docs/monitor.md#multivariate-spc. A :class:`PCAMonitor` is fitted on in-control observations of
process variables (or spectra), then scores new observations:

* Hotelling :math:`T^2=\\sum_{a\\le A} t_a^2/\\lambda_a` flags unusual *amounts* of the known
  variation; limit for new observations
  :math:`T^2_\\alpha=\\frac{A(N-1)(N+1)}{N(N-A)}F_{1-\\alpha}(A,N-A)`.
* :math:`Q=\\lVert x-PP^Tx\\rVert^2` flags *new* kinds of variation; limit by Jackson and
  Mudholkar (1979) from the residual eigenvalues, or Box's :math:`g\\chi^2_h` approximation
  (Nomikos and MacGregor 1995) from the mean and variance of the training Q.
* Contributions per variable that sum to :math:`T^2` and :math:`Q` point at the variable
  responsible for an alarm.

numpy SVD and scipy.stats only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from cmsim._validate import finite_array, probability
from cmsim.errors import ParameterError

__all__ = ["MSPCResult", "PCAMonitor", "jackson_mudholkar_limit"]

_Q_METHODS = ("jackson-mudholkar", "box")


def jackson_mudholkar_limit(residual_eigenvalues: Any, alpha: float) -> float:
    """Jackson-Mudholkar upper limit of Q (SPE).

    Parameters
    ----------
    residual_eigenvalues : array_like
        Eigenvalues of the covariance of the (scaled) data not captured by the model
        (:math:`\\lambda_j`, :math:`j>A`) [squared scaled units].
    alpha : float
        False-alarm probability in (0, 1).

    Returns
    -------
    float
        :math:`Q_\\alpha=\\theta_1[z_\\alpha\\sqrt{2\\theta_2h_0^2}/\\theta_1+1+
        \\theta_2h_0(h_0-1)/\\theta_1^2]^{1/h_0}`, with :math:`\\theta_i=\\sum\\lambda_j^i`,
        :math:`h_0=1-2\\theta_1\\theta_3/(3\\theta_2^2)`; 0 when there is no residual
        variance.

    Notes
    -----
    For a Gaussian residual, Q is a weighted sum of chi-square(1) variables; the limit is
    accurate when the residual eigenvalues are similar and conservative (a few % to ~10 %
    high, fewer false alarms than ``alpha``) when one residual eigenvalue dominates.

    Examples
    --------
    >>> round(jackson_mudholkar_limit([1.0], 0.05), 3)   # ~ chi2_1 95 % point (3.841)
    3.747
    """
    lam = finite_array("residual_eigenvalues", residual_eigenvalues, ndim=1)
    a = probability("alpha", alpha)
    lam = lam[lam > 0.0]
    if lam.size == 0:
        return 0.0
    th1, th2, th3 = (float(np.sum(lam**i)) for i in (1, 2, 3))
    h0 = 1.0 - 2.0 * th1 * th3 / (3.0 * th2 * th2)
    z = float(stats.norm.isf(a))
    base = z * math.sqrt(2.0 * th2 * h0 * h0) / th1 + 1.0 + th2 * h0 * (h0 - 1.0) / (th1 * th1)
    if h0 <= 0.0 or base <= 0.0:  # outside the approximation's domain: moment-matched chi2
        g, h = th2 / th1, th1 * th1 / th2
        return float(g * stats.chi2.isf(a, h))
    return float(th1 * base ** (1.0 / h0))


@dataclass(frozen=True)
class MSPCResult:
    """Statistics of a batch of observations scored by :meth:`PCAMonitor.evaluate`.

    Attributes
    ----------
    t2, q : ndarray, shape (n,)
        Hotelling T^2 [-] and Q (SPE) [squared scaled units].
    t2_limit, q_limit : float
        Limits at the chosen ``alpha``.
    t2_alarm, q_alarm : ndarray of bool, shape (n,)
        Observations beyond each limit.
    t2_contributions, q_contributions : ndarray, shape (n, p)
        Per-variable contributions (rows sum to ``t2`` and ``q``).
    alpha : float
        False-alarm probability of each limit.
    """

    t2: np.ndarray
    q: np.ndarray
    t2_limit: float
    q_limit: float
    t2_alarm: np.ndarray
    q_alarm: np.ndarray
    t2_contributions: np.ndarray
    q_contributions: np.ndarray
    alpha: float

    @property
    def alarm(self) -> np.ndarray:
        """Either statistic beyond its limit (bool array, shape (n,))."""
        return self.t2_alarm | self.q_alarm


class PCAMonitor:
    """PCA model of in-control data with T^2 and Q monitoring statistics.

    Parameters
    ----------
    n_components : int or float, optional
        ``A``: an int in [1, min(N-1, p)], or a float in (0, 1): the smallest number of
        components that explains at least that fraction of the (scaled) variance. Default 0.9.
    scale : bool
        Divide each variable by its in-control standard deviation (autoscaling); otherwise
        only mean-centre.
    q_method : {"jackson-mudholkar", "box"}
        Default method of :meth:`q_limit`.

    Attributes (after :meth:`fit`)
    ------------------------------
    mean_, scale_ : ndarray, shape (p,)
        Centring and scaling [variable units].
    loadings_ : ndarray, shape (p, A)
        Orthonormal loadings ``P``.
    eigenvalues_ : ndarray
        All covariance eigenvalues of the scaled training data (``ddof=1``), descending;
        the first ``A`` are the score variances :math:`\\lambda_a`.
    n_components_, n_samples_, n_features_ : int
        ``A``, ``N`` and ``p``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> t = rng.normal(size=(200, 1))
    >>> X = np.hstack([t, 2 * t, -t]) + 0.1 * rng.normal(size=(200, 3))
    >>> m = PCAMonitor(n_components=1).fit(X)
    >>> res = m.evaluate(np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]), alpha=0.01)
    >>> res.q_alarm.tolist()
    [False, True]
    """

    def __init__(self, n_components: int | float | None = None, *, scale: bool = True,
                 q_method: str = "jackson-mudholkar") -> None:
        if n_components is None:
            n_components = 0.9
        if isinstance(n_components, bool):
            raise ParameterError("n_components", n_components, "must be an int or a float")
        if isinstance(n_components, int | np.integer):
            if n_components < 1:
                raise ParameterError("n_components", n_components, "must be >= 1")
        else:
            f = float(n_components)
            if not 0.0 < f <= 1.0:
                raise ParameterError("n_components", n_components,
                                     "a float must be a variance fraction in (0, 1]")
        if q_method not in _Q_METHODS:
            raise ParameterError("q_method", q_method, f"must be one of {_Q_METHODS}")
        self.n_components = n_components
        self.scale = bool(scale)
        self.q_method = q_method
        self._fitted = False

    # -------------------------------------------------------------------------- fit
    def fit(self, X: Any) -> PCAMonitor:
        """Fit on in-control observations.

        Parameters
        ----------
        X : array_like, shape (N, p)
            In-control observations [variable units], N >= 3, finite.

        Returns
        -------
        PCAMonitor
            ``self``.
        """
        x = finite_array("X", X, ndim=2)
        n, p = x.shape
        if n < 3:
            raise ParameterError("X", f"array of shape {x.shape}", "needs at least 3 rows")
        mean = x.mean(axis=0)
        if self.scale:
            sd = x.std(axis=0, ddof=1)
            bad = np.flatnonzero(~(sd > 0.0))
            if bad.size:
                raise ParameterError("X", f"column {int(bad[0])} is constant",
                                     "cannot autoscale a variable with zero variance")
        else:
            sd = np.ones(p)
        z = (x - mean) / sd
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        eig = s**2 / (n - 1)
        max_a = min(n - 1, p)
        if isinstance(self.n_components, int | np.integer):
            a = int(self.n_components)
            if a > max_a:
                raise ParameterError("n_components", self.n_components,
                                     f"must be <= min(N-1, p) = {max_a}")
        else:
            frac = np.cumsum(eig) / np.sum(eig)
            a = int(np.searchsorted(frac, float(self.n_components) - 1e-12) + 1)
            a = min(a, max_a)
        # deterministic sign: the largest-magnitude loading of each component is positive
        v = vt.T
        signs = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
        signs[signs == 0] = 1.0
        v = v * signs
        self.mean_ = mean
        self.scale_ = sd
        self.loadings_ = np.ascontiguousarray(v[:, :a])
        self.eigenvalues_ = eig
        self.n_components_ = a
        self.n_samples_ = n
        self.n_features_ = p
        self.explained_variance_ratio_ = eig / np.sum(eig)
        self._fitted = True
        q_train = self.q(x)
        self._q_train_mean = float(np.mean(q_train))
        self._q_train_var = float(np.var(q_train, ddof=1))
        return self

    # -------------------------------------------------------------------------- scoring
    def _check(self, X: Any) -> np.ndarray:
        if not self._fitted:
            raise RuntimeError("PCAMonitor is not fitted: call fit(X) first")
        x = finite_array("X", X, ndim=(1, 2))
        x2 = np.atleast_2d(x)
        if x2.shape[1] != self.n_features_:
            raise ParameterError("X", f"array of shape {x.shape}",
                                 f"must have {self.n_features_} columns like the training data")
        return (x2 - self.mean_) / self.scale_

    def transform(self, X: Any) -> np.ndarray:
        """Scores ``t = P^T z`` of observations (z: centred and scaled), shape (n, A)."""
        return self._check(X) @ self.loadings_

    def t2(self, X: Any) -> np.ndarray:
        """Hotelling T^2 of each observation [-], shape (n,)."""
        t = self.transform(X)
        return np.sum(t * t / self.eigenvalues_[: self.n_components_], axis=1)

    def q(self, X: Any) -> np.ndarray:
        """Q (squared prediction error) of each observation [squared scaled units]."""
        z = self._check(X)
        r = z - (z @ self.loadings_) @ self.loadings_.T
        return np.sum(r * r, axis=1)

    def t2_contributions(self, X: Any) -> np.ndarray:
        """Per-variable contributions to T^2, shape (n, p); rows sum to :meth:`t2`.

        Notes
        -----
        :math:`c_j = z_j\\sum_a p_{ja}t_a/\\lambda_a` (Westerhuis et al. 2000); individual
        terms can be negative.
        """
        z = self._check(X)
        t = z @ self.loadings_
        return z * ((t / self.eigenvalues_[: self.n_components_]) @ self.loadings_.T)

    def q_contributions(self, X: Any) -> np.ndarray:
        """Per-variable contributions to Q, shape (n, p): squared residuals ``r_j^2``."""
        z = self._check(X)
        r = z - (z @ self.loadings_) @ self.loadings_.T
        return r * r

    # -------------------------------------------------------------------------- limits
    def t2_limit(self, alpha: float = 0.01, *, new_observations: bool = True) -> float:
        """Upper limit of T^2.

        Parameters
        ----------
        alpha : float
            False-alarm probability in (0, 1).
        new_observations : bool
            ``True``: F-distribution limit for observations not used in the fit;
            ``False``: beta-distribution limit for the training observations.

        Returns
        -------
        float
            The limit [-].
        """
        if not self._fitted:
            raise RuntimeError("PCAMonitor is not fitted: call fit(X) first")
        a_ = probability("alpha", alpha)
        n, a = self.n_samples_, self.n_components_
        if new_observations:
            if n - a < 1:
                raise ParameterError("n_components", a, "F limit needs N - A >= 1")
            return float(a * (n - 1) * (n + 1) / (n * (n - a)) * stats.f.isf(a_, a, n - a))
        return float((n - 1) ** 2 / n * stats.beta.isf(a_, a / 2.0, (n - a - 1) / 2.0))

    def q_limit(self, alpha: float = 0.01, method: str | None = None) -> float:
        """Upper limit of Q.

        Parameters
        ----------
        alpha : float
            False-alarm probability in (0, 1).
        method : {"jackson-mudholkar", "box"}, optional
            Default: the ``q_method`` given at construction. ``"box"`` uses
            :math:`g\\chi^2_{h,1-\\alpha}` with :math:`g=v/(2m)`, :math:`h=2m^2/v` from the
            mean ``m`` and variance ``v`` of the training Q.

        Returns
        -------
        float
            The limit [squared scaled units].
        """
        if not self._fitted:
            raise RuntimeError("PCAMonitor is not fitted: call fit(X) first")
        a_ = probability("alpha", alpha)
        method = self.q_method if method is None else method
        if method not in _Q_METHODS:
            raise ParameterError("method", method, f"must be one of {_Q_METHODS}")
        if method == "jackson-mudholkar":
            return jackson_mudholkar_limit(self.eigenvalues_[self.n_components_:], a_)
        m, v = self._q_train_mean, self._q_train_var
        if not (m > 0.0 and v > 0.0):
            return 0.0
        return float(v / (2.0 * m) * stats.chi2.isf(a_, 2.0 * m * m / v))

    def evaluate(self, X: Any, alpha: float = 0.01, q_method: str | None = None) -> MSPCResult:
        """Score observations: statistics, limits, alarms and contributions.

        Parameters
        ----------
        X : array_like, shape (n, p) or (p,)
            Observations [variable units].
        alpha : float
            False-alarm probability of each limit.
        q_method : str, optional
            Q-limit method (see :meth:`q_limit`).

        Returns
        -------
        MSPCResult
        """
        t2 = self.t2(X)
        q = self.q(X)
        t2_lim = self.t2_limit(alpha)
        q_lim = self.q_limit(alpha, q_method)
        return MSPCResult(t2=t2, q=q, t2_limit=t2_lim, q_limit=q_lim, t2_alarm=t2 > t2_lim,
                          q_alarm=q > q_lim, t2_contributions=self.t2_contributions(X),
                          q_contributions=self.q_contributions(X), alpha=float(alpha))
