"""Tests of cmsim.rtd.fitting: parameter recovery, honest standard errors, validation.

Synthetic tracer data come from closed forms written here, independently of
cmsim.rtd.models (docs/rtd.md, model library; closed-closed axial dispersion from its exact series).
"""

from __future__ import annotations

import dataclasses
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special, stats

from cmsim import rtd
from cmsim.errors import ParameterError
from cmsim.rtd import RTDFit, fit

# ------------------------------------------------------------------------------------------
# Independent closed forms: shape(t, *params, kind) -> E (kind="pulse") or F (kind="step")
# ------------------------------------------------------------------------------------------


def _cstr(t, tau, kind):
    t = np.asarray(t, float)
    x = np.where(t >= 0, t, 0.0) / tau
    v = np.exp(-x) / tau if kind == "pulse" else -np.expm1(-x)
    return np.where(t >= 0, v, 0.0)


def _pfr_cstr(t, delay, tau, kind):
    return _cstr(np.asarray(t, float) - delay, tau, kind)


def _tis(t, tau, n, kind):
    d = stats.gamma(a=n, scale=tau / n)
    t = np.asarray(t, float)
    return np.where(t > 0, d.pdf(t) if kind == "pulse" else d.cdf(t), 0.0)


def _ad_open(t, tau, pe, kind):
    t = np.asarray(t, float)
    th = np.where(t > 0, t / tau, 1.0)
    g = np.exp(-pe * (1 - th) ** 2 / (4 * th))
    if kind == "pulse":
        v = np.sqrt(pe / (4 * np.pi * th)) * g / tau
    else:
        a = np.sqrt(pe / (4 * th))
        v = 0.5 * special.erfc(a * (1 - th)) - 0.5 * special.erfcx(a * (1 + th)) * g
    return np.where(t > 0, v, 0.0)


def _ad_closed(t, tau, pe, kind, k_terms=300):
    def f(a):
        return (4 * a * a - pe * pe) * math.sin(a) - 4 * pe * a * math.cos(a)

    al = np.array([optimize.brentq(f, (k - 1) * math.pi + 1e-12, k * math.pi, xtol=1e-14)
                   for k in range(1, k_terms + 1)])
    beta = (pe * pe + 4 * al * al) / (4 * pe)
    c = (-1.0) ** np.arange(k_terms) * 8 * al * al / (4 * al * al + pe * pe + 4 * pe)
    th = np.asarray(t, float) / tau
    ok = th > 0.05  # below, E and F are < 1e-30 for the Peclet numbers used here
    terms = np.exp(pe / 2 - beta[None, :] * np.where(ok, th, 1.0)[:, None])
    if kind == "pulse":
        return np.where(ok, (c[None, :] * terms).sum(axis=1) / tau, 0.0)
    return np.where(ok, 1.0 - ((c / beta)[None, :] * terms).sum(axis=1), 0.0)


SHAPES = {
    "cstr": _cstr,
    "pfr_cstr": _pfr_cstr,
    "tanks_in_series": _tis,
    "axial_dispersion": _ad_closed,
    "axial_dispersion_open": _ad_open,
}
# true parameters [SI] in the order of the fitted model's parameter names
TRUTH = {
    "cstr": {"mean_residence_time": 40.0},
    "pfr_cstr": {"delay": 13.7, "mean_residence_time": 40.0},  # delay between samples
    "tanks_in_series": {"mean_residence_time": 60.0, "n_tanks": 5.0},
    "axial_dispersion": {"mean_residence_time": 60.0, "peclet": 12.0},
    "axial_dispersion_open": {"mean_residence_time": 60.0, "peclet": 12.0},
}
SCALE = 2.5  # pulse area [response*s] / step plateau [response]


def _grid(model):
    # closed-closed axial dispersion evaluates a slow series: fewer points
    n = 61 if model == "axial_dispersion" else 121
    return np.linspace(0.0, 300.0, n)


def _data(model, kind, noise=0.0, seed=0, t=None):
    t = _grid(model) if t is None else t
    y = SCALE * SHAPES[model](t, *TRUTH[model].values(), kind)
    if noise:
        y = y + noise * y.max() * np.random.default_rng(seed).standard_normal(t.size)
    return t, y


def _needs_known_scale(model, kind):
    # PFR+CSTR pulse: E jumps at the delay, so with an unknown area the delay trades off
    # exactly against the amplitude within one sampling interval (see test below).
    return model == "pfr_cstr" and kind == "pulse"


CASES = [(m, k) for m in SHAPES for k in ("pulse", "step")]

# ------------------------------------------------------------------------------------------
# Recovery
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "kind"), CASES)
def test_noise_free_data_recovers_parameters_to_1e6(model, kind):
    t, y = _data(model, kind)
    scale = SCALE if _needs_known_scale(model, kind) else None
    res = fit(t, y, model, kind=kind, scale=scale)
    assert res.success
    for name, true in TRUTH[model].items():
        assert res.params[name] == pytest.approx(true, rel=1e-6), name
    assert res.scale == pytest.approx(SCALE, rel=1e-6)
    assert res.r_squared == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize(("model", "kind"), CASES)
def test_noisy_data_recovers_parameters_within_3_stderr_and_4_percent(model, kind):
    # additive Gaussian noise, sd = 1 % of the peak signal, fixed seed
    t, y = _data(model, kind, noise=0.01, seed=12345)
    scale = SCALE if _needs_known_scale(model, kind) else None
    res = fit(t, y, model, kind=kind, scale=scale)
    assert res.success
    for name, true in TRUTH[model].items():
        est, se = res.params[name], res.stderr[name]
        assert 0.0 < se < 0.05 * true, (name, se)
        assert abs(est - true) < 3.0 * se, (name, est, se)
        assert abs(est - true) < 0.04 * true, (name, est)
    # residual RMS estimates the noise sd
    sd = 0.01 * SCALE * SHAPES[model](t, *TRUTH[model].values(), kind).max()
    assert res.residual_rms == pytest.approx(sd, rel=0.3)


def test_fitted_object_is_a_cmsim_model_with_the_fitted_parameters():
    t, y = _data("tanks_in_series", "pulse")
    res = fit(t, y, "tanks_in_series")
    assert isinstance(res.model, rtd.TanksInSeries)
    assert res.model.mean == pytest.approx(60.0, rel=1e-6)
    assert res.model.variance == pytest.approx(60.0**2 / 5.0, rel=1e-5)
    np.testing.assert_allclose(res.predict(t), y, atol=1e-9 * y.max())

    t, y = _data("pfr_cstr", "step")
    res = fit(t, y, "pfr_cstr", kind="step")
    assert isinstance(res.model, rtd.Series)
    assert res.model.mean == pytest.approx(13.7 + 40.0, rel=1e-6)
    assert res.model.variance == pytest.approx(40.0**2, rel=1e-6)


def test_open_axial_dispersion_mean_is_tau_times_1_plus_2_over_pe():
    t, y = _data("axial_dispersion_open", "pulse")
    res = fit(t, y, "axial_dispersion_open")
    assert isinstance(res.model, rtd.AxialDispersion)
    assert res.model.mean == pytest.approx(60.0 * (1 + 2 / 12.0), rel=1e-6)


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_pfr_cstr_pulse_with_unknown_area_localises_delay_to_one_sampling_interval(noise):
    # Between samples the pulse model is A/tau exp(-(t-d)/tau): A and d trade off exactly,
    # so only tau and the sampling interval holding d are identified; the fit reports the
    # interval midpoint with the uniform-distribution stderr width/sqrt(12).
    t, y = _data("pfr_cstr", "pulse", noise=noise, seed=99)
    res = fit(t, y, "pfr_cstr", kind="pulse")
    dt = t[1] - t[0]
    k = int(np.searchsorted(t, 13.7))  # first sample after the true delay
    assert res.params["delay"] == pytest.approx(t[k] - dt / 2, rel=1e-12)
    assert res.stderr["delay"] == pytest.approx(dt / math.sqrt(12.0), rel=1e-12)
    assert "sampling interval" in res.message
    tau, se = res.params["mean_residence_time"], res.stderr["mean_residence_time"]
    if noise == 0.0:
        assert tau == pytest.approx(40.0, rel=1e-6)
        # A exp(d/tau) is what the data fix: check it against the truth
        k_fit = res.scale * math.exp(res.params["delay"] / tau)
        assert k_fit == pytest.approx(SCALE * math.exp(13.7 / 40.0), rel=1e-6)
    else:
        assert abs(tau - 40.0) < 3 * se and abs(tau - 40.0) < 0.04 * 40.0
        assert abs(res.scale - SCALE) < 3 * res.stderr["scale"]


def test_truncated_records_still_fit_because_the_scale_is_a_nuisance_parameter():
    # The step has not reached its plateau (F(end) ~ 0.76) and the pulse tail is cut at
    # 1.5 tau: normalising by the last values / the trapezoid area would bias tau.
    t = np.linspace(0.0, 90.0, 91)
    for kind in ("pulse", "step"):
        _, y = _data("tanks_in_series", kind, t=t)
        res = fit(t, y, "tanks_in_series", kind=kind)
        assert res.params["mean_residence_time"] == pytest.approx(60.0, rel=1e-6)
        assert res.params["n_tanks"] == pytest.approx(5.0, rel=1e-6)
        assert res.scale == pytest.approx(SCALE, rel=1e-6)


@pytest.mark.parametrize("model", ["tanks_in_series", "axial_dispersion_open", "pfr_cstr"])
def test_heavy_noise_and_pre_injection_samples_still_converge(model):
    # 10 % noise (many negative samples) and a record starting 50 s before the injection
    t = np.linspace(-50.0, 300.0, 141)
    _, y = _data(model, "step", noise=0.10, seed=21, t=t)
    res = fit(t, y, model, kind="step")
    assert res.success and res.r_squared > 0.8
    for name, true in TRUTH[model].items():
        assert abs(res.params[name] - true) < 3.0 * res.stderr[name], name
        assert abs(res.params[name] - true) < 0.25 * true, name


def test_baseline_fit_and_known_baseline():
    t, y = _data("cstr", "pulse", noise=0.01, seed=3)
    res_fit = fit(t, y + 0.4, "cstr", baseline="fit")
    assert res_fit.baseline == pytest.approx(0.4, abs=3 * res_fit.stderr["baseline"])
    assert res_fit.params["mean_residence_time"] == pytest.approx(40.0, rel=0.04)
    res_known = fit(t, y + 0.4, "cstr", baseline=0.4)
    res_plain = fit(t, y, "cstr")
    assert res_known.params["mean_residence_time"] == pytest.approx(
        res_plain.params["mean_residence_time"], rel=1e-8)


def test_zero_weights_drop_points_exactly():
    t, y = _data("tanks_in_series", "pulse", noise=0.02, seed=7)
    w = np.ones_like(t)
    w[::3] = 0.0
    a = fit(t, y, weights=w)
    b = fit(t[w > 0], y[w > 0])
    assert a.n_points == b.n_points == int(np.count_nonzero(w))
    for name in ("mean_residence_time", "n_tanks"):
        assert a.params[name] == pytest.approx(b.params[name], rel=1e-7)
        assert a.stderr[name] == pytest.approx(b.stderr[name], rel=1e-5)


# ------------------------------------------------------------------------------------------
# Honest uncertainty
# ------------------------------------------------------------------------------------------


def test_covariance_matches_analytic_jacobian_for_cstr_pulse():
    # y = A exp(-t/tau)/tau: independent analytic Jacobian, cov = s^2 (J^T J)^-1
    t, y = _data("cstr", "pulse", noise=0.02, seed=11)
    res = fit(t, y, "cstr")
    tau, a = res.params["mean_residence_time"], res.scale
    e = np.exp(-t / tau)
    jac = np.column_stack([a * e * (t / tau**3 - 1 / tau**2), e / tau])
    r = a * e / tau - y
    s2 = r @ r / (t.size - 2)
    cov = s2 * np.linalg.inv(jac.T @ jac)
    assert res.covariance_names == ("mean_residence_time", "scale")
    np.testing.assert_allclose(res.covariance, cov, rtol=1e-4)
    assert res.dof == t.size - 2


def test_stderr_is_calibrated_over_seeded_replicates():
    # 40 replicates of a small tanks-in-series pulse; z = (estimate - truth) / stderr
    t = np.linspace(0.0, 250.0, 40)
    clean = SCALE * _tis(t, 60.0, 5.0, "pulse")
    rng = np.random.default_rng(2024)
    z = {"mean_residence_time": [], "n_tanks": []}
    for _ in range(40):
        y = clean + 0.03 * clean.max() * rng.standard_normal(t.size)
        res = fit(t, y, "tanks_in_series")
        for name, true in (("mean_residence_time", 60.0), ("n_tanks", 5.0)):
            z[name].append((res.params[name] - true) / res.stderr[name])
    for name, zs in z.items():
        zs = np.asarray(zs)
        assert 0.6 <= zs.std(ddof=1) <= 1.6, (name, zs.std(ddof=1))
        assert abs(zs.mean()) < 0.6, (name, zs.mean())


def test_confidence_interval_uses_student_t():
    t, y = _data("tanks_in_series", "step", noise=0.02, seed=5)
    res = fit(t, y, kind="step")
    for level in (0.9, 0.95, 0.99):
        q = stats.t.ppf(0.5 + level / 2, res.dof)
        ci = res.confidence_interval(level)
        assert set(ci) == {"mean_residence_time", "n_tanks", "scale"}
        for name, (lo, hi) in ci.items():
            v = {**res.params, **res.nuisance}[name]
            assert lo == pytest.approx(v - q * res.stderr[name])
            assert hi == pytest.approx(v + q * res.stderr[name])
    with pytest.raises(ParameterError, match="level"):
        res.confidence_interval(1.5)


# ------------------------------------------------------------------------------------------
# Invariances (hypothesis)
# ------------------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(c_time=st.floats(0.01, 100.0), c_resp=st.floats(1e-3, 1e3),
       n=st.floats(0.7, 30.0), kind=st.sampled_from(["pulse", "step"]))
def test_fit_is_equivariant_under_time_and_response_units(c_time, c_resp, n, kind):
    # t -> c t scales tau by c; pulse E -> E/c keeps area; response * k scales only `scale`
    t = np.linspace(1.0, 300.0, 81)  # E(0) is infinite for n < 1
    shape = _tis(t, 60.0, n, kind)
    res = fit(c_time * t, c_resp * shape / (c_time if kind == "pulse" else 1.0), kind=kind)
    assert res.params["mean_residence_time"] == pytest.approx(60.0 * c_time, rel=1e-6)
    assert res.params["n_tanks"] == pytest.approx(n, rel=1e-6)
    assert res.scale == pytest.approx(c_resp, rel=1e-6)


# ------------------------------------------------------------------------------------------
# Result object
# ------------------------------------------------------------------------------------------


def test_result_is_frozen_picklable_and_summarised():
    t, y = _data("tanks_in_series", "pulse", noise=0.02, seed=1)
    res = fit(t, y)
    assert isinstance(res, RTDFit)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.params = {}
    back = pickle.loads(pickle.dumps(res))
    assert back.params == res.params
    np.testing.assert_array_equal(back.covariance, res.covariance)
    np.testing.assert_allclose(back.predict(t), res.predict(t))
    text = res.summary()
    assert "tanks_in_series" in text and "n_tanks" in text and "R^2" in text
    assert f"{res.params['n_tanks']:.6g}" in text
    assert len(text.splitlines()) >= 6
    assert res.n_points == t.size and res.kind == "pulse" and res.model_name == "tanks_in_series"


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------

T = np.linspace(0.0, 100.0, 20)
Y = _tis(T, 40.0, 3.0, "pulse")


@pytest.mark.parametrize(
    ("kwargs", "name", "rule"),
    [
        ({"model": "gamma"}, "model", "must be one of"),
        ({"kind": "impulse"}, "kind", "'pulse' or 'step'"),
        ({"t": T[::-1].copy()}, "t", "strictly increasing"),
        ({"t": np.r_[T[:5], T[4], T[6:]]}, "t", "strictly increasing"),
        ({"t": np.r_[np.nan, T[1:]]}, "t", "finite"),
        ({"t": T.reshape(4, 5), "response": Y.reshape(4, 5)}, "t", "ndim"),
        ({"response": Y[:-1]}, "response", "same length"),
        ({"response": np.r_[Y[:-1], np.inf]}, "response", "finite"),
        ({"response": np.zeros_like(Y)}, "response", "all zero"),
        ({"response": -Y}, "response", "positive area"),
        ({"t": T[:4], "response": Y[:4]}, "t", "at least 5 points"),
        ({"weights": np.r_[-1.0, np.ones(19)]}, "weights", ">= 0"),
        ({"weights": np.ones(3)}, "weights", "same length"),
        ({"baseline": "auto"}, "baseline", "'fit'"),
        ({"scale": -1.0}, "scale", "> 0"),
        ({"p0": {"tau": 3.0}}, "p0['tau']", "unknown name"),
        ({"p0": [40.0]}, "p0", "2 entries"),
        ({"p0": {"n_tanks": -2.0}}, "p0['n_tanks']", "> 0"),
        ({"bounds": {"n_tanks": (5.0, 1.0)}}, "bounds['n_tanks']", "low < high"),
        ({"bounds": {"n_tanks": 5.0}}, "bounds['n_tanks']", "(low, high) pair"),
    ],
)
def test_bad_inputs_raise_parameter_error_naming_parameter_and_rule(kwargs, name, rule):
    args = {"t": T, "response": Y, **kwargs}
    with pytest.raises(ParameterError) as info:
        fit(**args)
    assert info.value.name == name
    assert rule in str(info.value)
    assert isinstance(info.value, ValueError)


def test_step_without_plateau_signal_raises():
    with pytest.raises(ParameterError, match="positive plateau"):
        fit(T, -_tis(T, 40.0, 3.0, "step"), kind="step")


def test_p0_and_bounds_are_honoured():
    t, y = _data("tanks_in_series", "pulse")
    res = fit(t, y, p0={"n_tanks": 2.0, "mean_residence_time": 30.0})
    assert res.params["n_tanks"] == pytest.approx(5.0, rel=1e-6)
    res = fit(t, y, p0=[55.0, 4.0])
    assert res.params["mean_residence_time"] == pytest.approx(60.0, rel=1e-6)
    capped = fit(t, y, bounds={"n_tanks": (0.5, 3.0)})
    assert capped.params["n_tanks"] <= 3.0 + 1e-9
    assert capped.params["n_tanks"] == pytest.approx(3.0, rel=1e-6)
