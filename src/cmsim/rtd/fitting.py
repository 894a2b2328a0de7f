"""Fit residence-time-distribution models to tracer data.

:func:`fit` estimates the parameters of a :mod:`cmsim.rtd.models` model from a measured tracer
response (pulse response proportional to :math:`E(t)`, or step response proportional to
:math:`F(t)`) by bounded nonlinear least squares, and returns an :class:`RTDFit` whose ``model``
attribute *is* the fitted :mod:`cmsim.rtd` model object.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cmsim._validate import finite_array, probability
from cmsim.errors import ParameterError

__all__ = ["fit", "RTDFit"]

_MODELS = ("cstr", "pfr_cstr", "tanks_in_series", "axial_dispersion", "axial_dispersion_open")
_KINDS = ("pulse", "step")


# --------------------------------------------------------------------------------------------
# Result object
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RTDFit:
    """Result of :func:`fit`: the fitted RTD model, its parameters and their uncertainty.

    Attributes
    ----------
    model : RTDModel
        The fitted :mod:`cmsim.rtd.models` object (``CSTR``, ``Series(PFR, CSTR)``,
        ``TanksInSeries`` or ``AxialDispersion``), usable everywhere a model is expected.
    params : dict of str to float
        Fitted model parameters in SI: ``mean_residence_time`` [s], ``delay`` [s],
        ``n_tanks`` [-], ``peclet`` [-] (whichever the model has).
    stderr : dict of str to float
        Standard errors of ``params`` and ``nuisance`` (same units), from the Jacobian at the
        solution: :math:`\\mathrm{cov} = s^2 (J^T J)^{-1}`, :math:`s^2 = RSS/(m - p)`. ``nan``
        when the Jacobian is rank deficient.
    covariance : ndarray, shape (p, p)
        Covariance matrix of all fitted quantities, rows/columns in the order of
        ``covariance_names`` (model parameters first, then nuisance parameters) [SI units].
    covariance_names : tuple of str
        Names labelling the rows/columns of ``covariance``.
    nuisance : dict of str to float
        Fitted nuisance parameters: ``scale`` (unless given to :func:`fit`) and, with
        ``baseline="fit"``, ``baseline`` [response units].
    scale : float
        Response scale, fitted or given: area under the response curve for a pulse
        [response * s], plateau for a step [response units].
    residual_rms : float
        Root mean square of the (weighted) residuals over the used points [response units].
    r_squared : float
        Coefficient of determination :math:`1 - RSS/TSS` of the (weighted) fit [-].
    n_points : int
        Number of data points used (points with positive weight).
    dof : int
        Residual degrees of freedom, ``n_points`` minus the number of fitted quantities.
    kind : str
        ``"pulse"`` or ``"step"``.
    model_name : str
        The ``model`` argument of :func:`fit`.
    baseline : float
        Baseline subtracted from the response (fitted or given) [response units].
    success : bool
        Whether the optimiser reported convergence.
    message : str
        The optimiser's message.
    nfev : int
        Number of residual evaluations spent by the optimiser.
    """

    model: Any
    params: dict[str, float]
    stderr: dict[str, float]
    covariance: np.ndarray
    covariance_names: tuple[str, ...]
    nuisance: dict[str, float]
    residual_rms: float
    r_squared: float
    n_points: int
    dof: int
    kind: str
    model_name: str
    scale: float
    baseline: float
    success: bool
    message: str
    nfev: int = field(default=0)

    def predict(self, t: Any) -> np.ndarray:
        """Fitted response curve at times ``t``.

        Parameters
        ----------
        t : array_like
            Times [s].

        Returns
        -------
        ndarray
            ``scale * E(t) + baseline`` (pulse) or ``scale * F(t) + baseline`` (step)
            [response units].
        """
        tt = np.asarray(t, dtype=np.float64)
        shape = self.model.pdf(tt) if self.kind == "pulse" else self.model.cdf(tt)
        return self.scale * np.asarray(shape, dtype=np.float64) + self.baseline

    def confidence_interval(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Two-sided confidence intervals of the fitted quantities (Student t, ``dof``).

        Parameters
        ----------
        level : float, optional
            Confidence level in (0, 1) [-].

        Returns
        -------
        dict of str to (float, float)
            ``name -> (low, high)`` for every model parameter and nuisance parameter [SI].
            Linearised (Wald) intervals: ``value -/+ t_{(1+level)/2, dof} * stderr``.
        """
        from scipy.stats import t as student_t

        level = probability("level", level)
        q = float(student_t.ppf(0.5 + 0.5 * level, self.dof))
        values = {**self.params, **self.nuisance}
        return {
            name: (values[name] - q * self.stderr[name], values[name] + q * self.stderr[name])
            for name in self.covariance_names
        }

    def _repr_html_(self) -> str:
        """Jupyter display: parameters with standard errors and 95 % intervals, R^2, RMS."""
        from cmsim._html import rtd_fit_html  # plain string formatting

        return rtd_fit_html(self)

    def summary(self) -> str:
        """Readable multi-line report of the fit.

        Returns
        -------
        str
            Model, data kind, convergence, each parameter with its standard error and 95 %
            interval, nuisance parameters, residual RMS and R^2.
        """
        ci = self.confidence_interval(0.95)
        lines = [
            f"RTD fit: model={self.model_name!r}, kind={self.kind!r}, "
            f"n_points={self.n_points}, dof={self.dof}",
            f"  converged: {self.success} ({self.message})",
            f"  {'parameter':<22}{'value':>14}{'stderr':>14}{'rel %':>9}   95 % interval",
        ]
        values = {**self.params, **self.nuisance}
        for name in self.covariance_names:
            v, s = values[name], self.stderr[name]
            rel = 100.0 * s / abs(v) if v != 0 and math.isfinite(s) else float("nan")
            lo, hi = ci[name]
            lines.append(f"  {name:<22}{v:>14.6g}{s:>14.3g}{rel:>9.2f}   [{lo:.6g}, {hi:.6g}]")
        for name in ("scale", "baseline"):
            if name not in self.nuisance:
                lines.append(f"  {name + ' (given)':<22}{getattr(self, name):>14.6g}")
        lines.append(f"  residual RMS = {self.residual_rms:.6g}, R^2 = {self.r_squared:.6f}")
        lines.append(f"  mean residence time of the fitted model = {self.model.mean:.6g} s, "
                     f"variance = {self.model.variance:.6g} s^2")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Model specifications
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """Parameter names, transforms and constructors of one fittable model."""

    names: tuple[str, ...]
    transforms: tuple[str, ...]  # "log" (positive) or "lin" (non-negative, scaled by span)
    build: Callable[[np.ndarray], Any]  # natural parameters -> cmsim.rtd model


def _eval(model: Any, t: np.ndarray, kind: str) -> np.ndarray:
    return np.asarray(model.pdf(t) if kind == "pulse" else model.cdf(t), dtype=np.float64)


def _spec(name: str) -> _Spec:
    from cmsim.rtd import models as m

    if name == "cstr":
        return _Spec(("mean_residence_time",), ("log",), lambda p: m.CSTR(p[0]))
    if name == "pfr_cstr":
        return _Spec(("delay", "mean_residence_time"), ("lin", "log"),
                     lambda p: m.Series(m.PFR(p[0]), m.CSTR(p[1])))
    if name == "tanks_in_series":
        return _Spec(("mean_residence_time", "n_tanks"), ("log", "log"),
                     lambda p: m.TanksInSeries(p[0], p[1]))
    boundary = "closed" if name == "axial_dispersion" else "open"
    return _Spec(("mean_residence_time", "peclet"), ("log", "log"),
                 lambda p: m.AxialDispersion(p[0], p[1], boundary=boundary))


# --------------------------------------------------------------------------------------------
# Method-of-moments initial guesses
# --------------------------------------------------------------------------------------------


def _trapz(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


def _moments(t: np.ndarray, y: np.ndarray, kind: str) -> tuple[float, float, float, float]:
    """Return (scale, mean, variance, first_rise) of the baseline-corrected curve.

    Pulse: area, mean and variance of y/area by the trapezoid rule. Step: plateau = mean of the
    last 10 % of the points, then mean = int (1 - F) dt and E[t^2] = 2 int t (1 - F) dt from
    t = 0 (1 - F = 1 before the first sample).
    """
    span = float(t[-1] - min(t[0], 0.0))
    if kind == "pulse":
        yp = np.clip(y, 0.0, None)
        area = _trapz(yp, t)
        if not area > 0.0:
            return float("nan"), float("nan"), float("nan"), float("nan")
        e = yp / area
        mean = _trapz(t * e, t)
        var = _trapz((t - mean) ** 2 * e, t)
        scale = _trapz(y, t)
        peak = float(np.max(yp))
        rise = float(t[np.argmax(yp >= 0.1 * peak)])
    else:
        k = max(2, len(y) // 10)
        scale = float(np.mean(y[-k:]))
        if not scale > 0.0:
            return float("nan"), float("nan"), float("nan"), float("nan")
        f = np.clip(y / scale, 0.0, 1.0)
        tt = np.concatenate(([0.0], t[t > 0.0]))
        ff = np.concatenate(([0.0], f[t > 0.0]))
        mean = _trapz(1.0 - ff, tt)
        m2 = 2.0 * _trapz(tt * (1.0 - ff), tt)
        var = m2 - mean * mean
        rise = float(t[np.argmax(f >= 0.05)])
    if not (math.isfinite(mean) and mean > 0.0):
        mean = 0.5 * span
    if not (math.isfinite(var) and var > 0.0):
        var = 0.25 * mean * mean
    return scale, mean, var, rise


def _closed_sigma2(pe: float) -> float:
    return 2.0 / pe - 2.0 / pe**2 * (-math.expm1(-pe))


def _open_sigma2(pe: float) -> float:
    return (2.0 / pe + 8.0 / pe**2) / (1.0 + 2.0 / pe) ** 2


def _peclet_from_sigma2(s2: float, fn: Callable[[float], float]) -> float:
    """Invert a decreasing sigma_theta^2(Pe) on [1e-2, 1e4] by bisection in log Pe."""
    lo, hi = math.log(1e-2), math.log(1e4)
    if s2 >= fn(math.exp(lo)):
        return math.exp(lo)
    if s2 <= fn(math.exp(hi)):
        return math.exp(hi)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if fn(math.exp(mid)) > s2:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def _initial_guess(name: str, mean: float, var: float, rise: float, span: float) -> np.ndarray:
    s2 = var / mean**2
    if name == "cstr":
        return np.array([mean])
    if name == "pfr_cstr":
        delay = min(max(rise, 0.0), max(mean - math.sqrt(var), 0.0))
        tau = max(mean - delay, 1e-3 * span)
        return np.array([delay, tau])
    if name == "tanks_in_series":
        return np.array([mean, min(max(1.0 / s2, 0.2), 500.0)])
    if name == "axial_dispersion":
        return np.array([mean, _peclet_from_sigma2(s2, _closed_sigma2)])
    pe = _peclet_from_sigma2(s2, _open_sigma2)
    return np.array([mean / (1.0 + 2.0 / pe), pe])


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _default_bounds(name: str, span: float, t_last: float) -> tuple[float, float]:
    return {
        "mean_residence_time": (1e-6 * span, 1e4 * span),
        "delay": (0.0, max(t_last, 0.0)),
        "n_tanks": (0.05, 1e4),
        "peclet": (1e-3, 1e5),
        "scale": (0.0, math.inf),
        "baseline": (-math.inf, math.inf),
    }[name]


def _check_named(arg: str, value: Any, names: Sequence[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ParameterError(f"{arg}[{unknown[0]!r}]", value[unknown[0]],
                                 f"unknown name; allowed: {', '.join(names)}")
        return dict(value)
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
        raise ParameterError(arg, value, f"must be a dict keyed by {', '.join(names)} or a "
                             f"sequence of {len(names)} values in that order")
    if len(value) != len(names):
        raise ParameterError(arg, value, f"must have {len(names)} entries "
                             f"({', '.join(names)})")
    return dict(zip(names, value, strict=True))


# --------------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------------


def fit(
    t: Any,
    response: Any,
    model: str = "tanks_in_series",
    *,
    kind: str = "pulse",
    p0: Mapping[str, float] | Sequence[float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    baseline: float | str | None = None,
    scale: float | None = None,
    weights: Any = None,
) -> RTDFit:
    """Fit an RTD model to tracer data by bounded nonlinear least squares.

    Parameters
    ----------
    t : array_like, shape (m,)
        Sample times [s], finite and strictly increasing, measured from the tracer injection
        (pulse) or the inlet step (step). Times before 0 are allowed (the model is 0 there).
    response : array_like, shape (m,)
        Measured tracer signal [any unit, e.g. mass fraction or absorbance]: proportional to
        :math:`E(t)` for ``kind="pulse"``, to :math:`F(t)` for ``kind="step"``.
    model : {"cstr", "pfr_cstr", "tanks_in_series", "axial_dispersion", \
"axial_dispersion_open"}, optional
        Model to fit. ``"pfr_cstr"`` is ``Series(PFR(delay), CSTR(mean_residence_time))``;
        ``"axial_dispersion"`` has closed-closed (Danckwerts) boundaries and
        ``"axial_dispersion_open"`` open-open ones (there ``mean_residence_time`` is
        :math:`\\tau = L/u`, *not* the MRT, which is :math:`\\tau (1 + 2/Pe)`).
    kind : {"pulse", "step"}, optional
        Pulse response (:math:`\\propto E`) or step response (:math:`\\propto F`).
    p0 : dict or sequence, optional
        Initial values of (some of) the model parameters [SI], by name or, as a sequence, in
        the order of the model's parameter names. Missing values come from the method of
        moments (see Notes).
    bounds : dict of str to (float, float), optional
        ``name -> (low, high)`` for model or nuisance parameters [SI]. Defaults:
        ``mean_residence_time`` in [1e-6, 1e4] x data span, ``delay`` in [0, t[-1]],
        ``n_tanks`` in [0.05, 1e4], ``peclet`` in [1e-3, 1e5], ``scale`` > 0.
    baseline : float or "fit" or None, optional
        Constant signal offset [response units]: ``None`` means 0, a number is subtracted as
        known, ``"fit"`` estimates it as an extra nuisance parameter.
    scale : float, optional
        Known response scale: area under the pulse response [response * s] (e.g. injected
        tracer mass / mass flow for a mass-fraction signal) or step plateau [response units].
        ``None`` (default) fits it as a nuisance parameter.
    weights : array_like, shape (m,), optional
        Non-negative multipliers of the residuals (typically :math:`1/\\sigma_i` of each point)
        [1/response units]; zero drops a point. Only relative weights matter, because the
        error variance is estimated from the residuals.

    Returns
    -------
    RTDFit
        Fitted model, parameters, standard errors, covariance, goodness of fit.

    Raises
    ------
    ParameterError
        Unknown ``model``/``kind``, malformed arrays (not 1-D, non-finite, ``t`` not strictly
        increasing, length mismatch), fewer than ``p + 2`` usable points (``p`` = number of
        fitted quantities including nuisance ones), an all-zero response, a response without
        positive area (pulse) or plateau (step), bad ``p0``/``bounds``/``weights``.

    Notes
    -----
    *Unknown scale.* The model fitted is :math:`y_i = A\\,E(t_i;\\theta) + b` (pulse) or
    :math:`y_i = A\\,F(t_i;\\theta) + b` (step), with the amplitude :math:`A` (pulse: area under
    the curve; step: plateau) fitted jointly as a nuisance parameter rather than fixed by
    normalising the data first. Normalising by the trapezoid area is biased when the tail is cut
    off or the sampling is coarse, and it hides the area's own noise from the reported
    uncertainty; fitting :math:`A` has neither problem and the standard errors of
    :math:`\\theta` account for the correlation with :math:`A`. The trapezoid area (pulse) or the
    mean of the last 10 % of the points (step) only serves as initial value.

    *Initial guesses* (method of moments of the normalised curve): mean :math:`\\bar t` and
    variance :math:`\\sigma^2`; CSTR :math:`\\tau=\\bar t`; tanks in series
    :math:`n=\\bar t^2/\\sigma^2`; axial dispersion :math:`Pe` from
    :math:`\\sigma_\\theta^2 = \\sigma^2/\\bar t^2` through the model's variance formula (and, for
    open-open, :math:`\\tau = \\bar t/(1+2/Pe)`); PFR+CSTR delay from the first rise (10 % of
    the peak, or F = 5 %), capped at :math:`\\bar t - \\sigma`.

    *Optimiser.* ``scipy.optimize.least_squares`` (trust-region reflective, bounded, linear
    loss, 3-point finite-difference Jacobian) on internal coordinates: the logarithm of every
    positive parameter and ``delay``/``baseline`` scaled by the data span/amplitude, which makes
    the problem well scaled and keeps parameters positive. If the first start does not
    converge or fits poorly (R^2 < 0.9), two further starts (shape parameter / 3 and x 3) are
    tried and the lowest cost is kept. Standard errors come from a central-difference
    Jacobian at the solution, mapped to SI parameters:
    :math:`\\mathrm{cov}=s^2 (J^T J)^{-1}`, :math:`s^2 = RSS/(m-p)`; they are local
    (linearised) and assume independent errors of constant (weighted) variance.

    *PFR+CSTR pulse with unknown scale.* The pulse response jumps at the delay, and between
    two samples the model :math:`A\\,e^{-(t-d)/\\tau}/\\tau` depends on :math:`A` and :math:`d`
    only through :math:`A e^{d/\\tau}`: point samples locate :math:`d` only to the sampling
    interval that holds the jump. The fit therefore profiles over the intervals near the first
    estimate (with :math:`d` fixed at each midpoint), reports :math:`d` at the midpoint of the
    best interval with standard error width/:math:`\\sqrt{12}` (uniform), propagates that into
    the scale's variance, and says so in ``message``. Give ``scale`` (known tracer area) or
    fit step data to identify the delay fully.

    The closed-closed axial-dispersion model is evaluated with its own ``pdf``/``cdf``
    (a slowly converging series at small :math:`\\theta`); fitting it costs more per point than
    the other models, so keep such data sets modest (a few hundred points).

    Examples
    --------
    >>> import numpy as np
    >>> from cmsim import rtd
    >>> t = np.linspace(0.0, 400.0, 201)
    >>> y = 3.0 * rtd.TanksInSeries(60.0, 5.0).pdf(t)
    >>> res = rtd.fit(t, y, "tanks_in_series")
    >>> round(res.params["mean_residence_time"], 6), round(res.params["n_tanks"], 6)
    (60.0, 5.0)
    """
    from scipy.optimize import least_squares

    # ---- arguments --------------------------------------------------------------------------
    if not isinstance(model, str) or model not in _MODELS:
        raise ParameterError("model", model, f"must be one of {', '.join(_MODELS)}")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ParameterError("kind", kind, "must be 'pulse' or 'step'")
    tt = finite_array("t", t, ndim=1)
    yy = finite_array("response", response, ndim=1)
    if yy.shape != tt.shape:
        raise ParameterError("response", f"array of length {yy.size}",
                             f"must have the same length as t ({tt.size})")
    if tt.size >= 2 and not np.all(np.diff(tt) > 0.0):
        bad = int(np.flatnonzero(np.diff(tt) <= 0.0)[0]) + 1
        raise ParameterError("t", f"t[{bad}] = {float(tt[bad])!r} after "
                             f"t[{bad - 1}] = {float(tt[bad - 1])!r}",
                             "must be strictly increasing")
    if weights is None:
        ww = np.ones_like(tt)
    else:
        ww = finite_array("weights", weights, ndim=1)
        if ww.shape != tt.shape:
            raise ParameterError("weights", f"array of length {ww.size}",
                                 f"must have the same length as t ({tt.size})")
        if np.any(ww < 0.0):
            bad = int(np.flatnonzero(ww < 0.0)[0])
            raise ParameterError("weights", f"element {bad} = {ww[bad]}", "must be >= 0")
    fit_scale = scale is None
    if not fit_scale:
        scale = float(finite_array("scale", scale, ndim=0))
        if not scale > 0.0:
            raise ParameterError("scale", scale, "must be > 0")
    fit_baseline = False
    if baseline is None:
        b0 = 0.0
    elif isinstance(baseline, str):
        if baseline != "fit":
            raise ParameterError("baseline", baseline, "must be None, a number or 'fit'")
        fit_baseline = True
        b0 = 0.0
    else:
        b0 = float(finite_array("baseline", baseline, ndim=0))

    spec = _spec(model)
    nuis_names = (("scale",) if fit_scale else ()) + (("baseline",) if fit_baseline else ())
    all_names = spec.names + nuis_names
    n_par = len(all_names)
    use = ww > 0.0
    m_used = int(np.count_nonzero(use))
    if m_used < n_par + 2:
        raise ParameterError("t", f"{m_used} usable points",
                             f"need at least {n_par + 2} points (fitted quantities + 2) "
                             f"with positive weight for model {model!r}")
    if not np.any(yy != 0.0):
        raise ParameterError("response", "all zeros", "must not be all zero")

    t_u, y_u = tt[use], yy[use]
    span = float(tt[-1] - min(tt[0], 0.0))
    if fit_baseline:
        # initial baseline: the smaller of the first / last few points' median
        k = max(2, m_used // 20)
        b0 = float(min(np.median(y_u[:k]), np.median(y_u[-k:]))) if kind == "pulse" \
            else float(np.median(y_u[:k]))
    scale0, mean0, var0, rise0 = _moments(t_u, y_u - b0, kind)
    if not (math.isfinite(scale0) and scale0 > 0.0):
        what = "a positive area" if kind == "pulse" else "a positive plateau (last 10 % of points)"
        raise ParameterError("response", f"array of length {yy.size}",
                             f"must have {what} above the baseline {b0!r}")
    amp = float(np.max(np.abs(y_u - b0)))

    # ---- parameter vector, transforms, bounds -------------------------------------------------
    transforms = spec.transforms + (("log",) if fit_scale else ()) \
        + (("blin",) if fit_baseline else ())
    p_given = _check_named("p0", p0, spec.names)
    b_given = _check_named("bounds", bounds, all_names)
    guess = _initial_guess(model, mean0, var0, rise0, span)
    x_nat0 = np.concatenate((guess, [scale0] if fit_scale else [],
                             [b0] if fit_baseline else []))
    lo = np.empty(n_par)
    hi = np.empty(n_par)
    for i, name in enumerate(all_names):
        lo[i], hi[i] = _default_bounds(name, span, float(tt[-1]))
        if name in b_given:
            pair = b_given[name]
            if isinstance(pair, str) or not isinstance(pair, Sequence | np.ndarray) \
                    or len(pair) != 2:
                raise ParameterError(f"bounds[{name!r}]", pair, "must be a (low, high) pair")
            lo_i, hi_i = (float(v) for v in pair)
            if math.isnan(lo_i) or math.isnan(hi_i) or not lo_i < hi_i:
                raise ParameterError(f"bounds[{name!r}]", pair, "must satisfy low < high")
            if transforms[i] != "blin" and lo_i < 0.0:
                raise ParameterError(f"bounds[{name!r}]", pair, "low must be >= 0")
            lo[i], hi[i] = lo_i, hi_i
        if name in p_given:
            v = p_given[name]
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ParameterError(f"p0[{name!r}]", v, "must be a real number") from None
            if not (math.isfinite(v) and lo[i] <= v <= hi[i]) or (transforms[i] == "log"
                                                                    and not v > 0.0):
                raise ParameterError(f"p0[{name!r}]", v,
                                     f"must be finite, > 0 and within bounds [{lo[i]}, {hi[i]}]"
                                     if transforms[i] == "log" else
                                     f"must be finite and within bounds [{lo[i]}, {hi[i]}]")
            x_nat0[i] = v

    scales = np.array([span if tr == "lin" else (amp if tr == "blin" else 1.0)
                       for tr in transforms])
    is_log = np.array([tr == "log" for tr in transforms])

    def to_int(xn: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.where(is_log, np.log(np.where(is_log, xn, 1.0)), xn / scales)

    def to_nat(xi: np.ndarray) -> np.ndarray:
        return np.where(is_log, np.exp(np.where(is_log, xi, 0.0)), xi * scales)

    lo_i, hi_i = to_int(lo), to_int(hi)
    w_u = ww[use]
    n_model = len(spec.names)
    # residuals are divided by `norm` so the optimiser's absolute tolerances are scale-free
    norm = float(np.max(np.abs(w_u * (y_u - b0))))
    big = 1e6

    def residual(xi: np.ndarray) -> np.ndarray:
        xn = to_nat(xi)
        with np.errstate(all="ignore"):
            try:
                shape = _eval(spec.build(xn[:n_model]), t_u, kind)
            except (ParameterError, ValueError, ArithmeticError):
                return np.full(m_used, big)
            a = xn[n_model] if fit_scale else scale
            pred = a * shape + (xn[-1] if fit_baseline else b0)
            r = w_u * (pred - y_u) / norm
        return np.where(np.isfinite(r), r, big)

    def clip_inside(xi: np.ndarray) -> np.ndarray:
        width = np.where(np.isfinite(hi_i - lo_i), hi_i - lo_i, 1.0)
        pad = 1e-9 * np.maximum(width, 1.0)
        return np.clip(xi, lo_i + pad, hi_i - pad)

    def run(x_start: np.ndarray, free: np.ndarray | None = None) -> Any:
        """least_squares over the `free` internal coordinates, the others held at x_start."""
        x_start = clip_inside(x_start)
        if free is None:
            free = np.ones(n_par, dtype=bool)

        def fun(xf: np.ndarray) -> np.ndarray:
            x = x_start.copy()
            x[free] = xf
            return residual(x)

        res = least_squares(fun, x_start[free], jac="3-point", bounds=(lo_i[free], hi_i[free]),
                            method="trf", x_scale=1.0, ftol=1e-12, xtol=1e-12, gtol=1e-12,
                            max_nfev=200 * n_par)
        x_full = x_start.copy()
        x_full[free] = res.x
        res.x = x_full
        return res

    x_int0 = to_int(x_nat0)
    best = run(x_int0)
    nfev = int(best.nfev)
    tss = float(np.sum((w_u * (y_u - np.average(y_u, weights=w_u**2 + 1e-300))) ** 2))

    def r2_of(res: Any) -> float:
        return 1.0 - 2.0 * float(res.cost) * norm**2 / tss if tss > 0 else float("nan")

    if not best.success or r2_of(best) < 0.9:
        # shape index (n_tanks / peclet / mean_residence_time of a CSTR) perturbed
        j = n_model - 1
        for factor in (1.0 / 3.0, 3.0):
            x_alt = x_int0.copy()
            x_alt[j] = x_alt[j] + math.log(factor) if is_log[j] else x_alt[j] * factor
            alt = run(x_alt)
            nfev += int(alt.nfev)
            if alt.cost < best.cost:
                best = alt

    # PFR+CSTR pulse with unknown scale: between two samples the model is
    # A/tau exp(-(t - d)/tau), so A and d trade off exactly; only the sampling interval that
    # holds d is identified. Profile over the intervals near the first fit, with d fixed at
    # each interval's midpoint, and keep the best.
    free = np.ones(n_par, dtype=bool)
    delay_interval: tuple[float, float] | None = None
    if model == "pfr_cstr" and kind == "pulse" and fit_scale:
        free[0] = False
        d_hat = float(to_nat(best.x)[0])
        j_hat = int(np.searchsorted(t_u, d_hat))
        best_prof = None
        for j in range(max(0, j_hat - 3), min(m_used, j_hat + 4)):
            lower = max(float(t_u[j - 1]) if j > 0 else lo[0], lo[0])
            upper = min(float(t_u[j]), hi[0])
            if not upper > lower:
                continue
            x_try = best.x.copy()
            x_try[0] = 0.5 * (lower + upper) / scales[0]
            res_j = run(x_try, free)
            nfev += int(res_j.nfev)
            if best_prof is None or res_j.cost < best_prof[0].cost:
                best_prof = (res_j, (lower, upper))
        if best_prof is not None:
            best, delay_interval = best_prof

    # ---- uncertainty --------------------------------------------------------------------------
    xi = best.x
    x_nat = to_nat(xi)
    jac = _central_jacobian(residual, xi, lo_i, hi_i)[:, free]
    dnat_dint = np.where(is_log, x_nat, scales)[free]
    rss_scaled = float(np.sum(residual(xi) ** 2))  # of the residuals / norm, like jac
    rss = rss_scaled * norm**2
    dof = m_used - n_par
    s2 = rss_scaled / dof
    cov_int = _inverse_normal(jac)
    message = str(best.message)
    if np.isnan(cov_int).any():
        message += (" | Jacobian rank deficient: the parameters are not all identifiable from "
                    "these data (standard errors are nan)")
    cov = np.zeros((n_par, n_par))
    cov[np.ix_(free, free)] = s2 * cov_int * np.outer(dnat_dint, dnat_dint)
    if delay_interval is not None:
        # d uniform on its interval; A = K exp(-d/tau) at fixed K = A exp(d/tau), tau
        lower, upper = delay_interval
        var_d = (upper - lower) ** 2 / 12.0
        da_dd = -x_nat[n_model] / x_nat[1]
        cov[0, 0] = var_d
        cov[0, n_model] = cov[n_model, 0] = da_dd * var_d
        cov[n_model, n_model] += da_dd**2 * var_d
        message += (f" | delay only located to the sampling interval ({lower:.6g}, "
                    f"{upper:.6g}] s (unknown scale and a jump in E): reported at its midpoint, "
                    "stderr = width/sqrt(12); give `scale` or step data to resolve it")
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))

    params = {name: float(x_nat[i]) for i, name in enumerate(spec.names)}
    nuisance = {name: float(x_nat[n_model + i]) for i, name in enumerate(nuis_names)}
    stderr = {name: float(se[i]) for i, name in enumerate(all_names)}
    fitted = spec.build(x_nat[:n_model])
    return RTDFit(
        model=fitted,
        params=params,
        stderr=stderr,
        covariance=cov,
        covariance_names=all_names,
        nuisance=nuisance,
        residual_rms=math.sqrt(rss / m_used),
        r_squared=1.0 - rss / tss if tss > 0 else float("nan"),
        n_points=m_used,
        dof=dof,
        kind=kind,
        model_name=model,
        scale=float(nuisance["scale"]) if fit_scale else float(scale),
        baseline=float(nuisance["baseline"]) if fit_baseline else b0,
        success=bool(best.success),
        message=message,
        nfev=nfev,
    )


def _central_jacobian(fun: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                      lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Central differences (one-sided at an active bound) in internal coordinates."""
    f0 = fun(x)
    jac = np.empty((f0.size, x.size))
    for j in range(x.size):
        h = 1e-6 * max(1.0, abs(x[j]))
        xp, xm = x.copy(), x.copy()
        up, down = x[j] + h <= hi[j], x[j] - h >= lo[j]
        if up and down:
            xp[j] += h
            xm[j] -= h
            jac[:, j] = (fun(xp) - fun(xm)) / (2.0 * h)
        elif up:
            xp[j] += h
            jac[:, j] = (fun(xp) - f0) / h
        else:
            xm[j] -= h
            jac[:, j] = (f0 - fun(xm)) / h
    return jac


def _inverse_normal(jac: np.ndarray) -> np.ndarray:
    """(J^T J)^{-1} by SVD; all-nan when J is rank deficient (condition number > 1e9)."""
    _, sv, vt = np.linalg.svd(jac, full_matrices=False)
    p = jac.shape[1]
    if sv.size < p or not sv[-1] > 1e-9 * sv[0]:
        return np.full((p, p), np.nan)
    return (vt.T / sv**2) @ vt
