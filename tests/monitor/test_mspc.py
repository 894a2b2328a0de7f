"""PCA monitoring: hand-computed T^2 and Q, limits, false-alarm rates, contributions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cmsim.errors import ParameterError
from cmsim.monitor.mspc import PCAMonitor, jackson_mudholkar_limit


def test_two_variable_example_by_hand():
    # two autoscaled variables: correlation matrix [[1, r], [r, 1]] has eigenvectors
    # (1, 1)/sqrt2 and (1, -1)/sqrt2 with eigenvalues 1 + r and 1 - r
    X = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 4.0], [5.0, 3.0], [6.0, 7.0]])
    n = X.shape[0]
    mean = X.sum(axis=0) / n
    sd = np.sqrt(((X - mean) ** 2).sum(axis=0) / (n - 1))
    Z = (X - mean) / sd
    r = (Z[:, 0] * Z[:, 1]).sum() / (n - 1)
    m = PCAMonitor(n_components=1).fit(X)
    np.testing.assert_allclose(m.eigenvalues_, [1 + r, 1 - r], rtol=1e-12)
    np.testing.assert_allclose(np.abs(m.loadings_[:, 0]), [2**-0.5, 2**-0.5], rtol=1e-12)

    x_new = np.array([[4.5, 1.0], [2.0, 2.5]])
    z = (x_new - mean) / sd
    t2_hand = ((z[:, 0] + z[:, 1]) / np.sqrt(2)) ** 2 / (1 + r)
    q_hand = ((z[:, 0] - z[:, 1]) / np.sqrt(2)) ** 2
    np.testing.assert_allclose(m.t2(x_new), t2_hand, rtol=1e-12)
    np.testing.assert_allclose(m.q(x_new), q_hand, rtol=1e-12)
    np.testing.assert_allclose(m.t2_contributions(x_new).sum(axis=1), t2_hand, rtol=1e-12)
    np.testing.assert_allclose(m.q_contributions(x_new).sum(axis=1), q_hand, rtol=1e-12)

    # limits: A = 1 -> (N+1)/N * F(1, N-1); one residual eigenvalue -> h0 = 1/3 and
    # Q_alpha = lambda (7/9 + z sqrt(2)/3)^3 (the Wilson-Hilferty form)
    alpha = 0.05
    assert m.t2_limit(alpha) == pytest.approx((n + 1) / n * stats.f.isf(alpha, 1, n - 1))
    assert m.t2_limit(alpha) == pytest.approx((n + 1) / n * stats.t.isf(alpha / 2, n - 1) ** 2)
    zq = stats.norm.isf(alpha)
    assert m.q_limit(alpha) == pytest.approx((1 - r) * (7 / 9 + zq * np.sqrt(2) / 3) ** 3)
    assert m.t2_limit(alpha, new_observations=False) == pytest.approx(
        (n - 1) ** 2 / n * stats.beta.isf(alpha, 0.5, (n - 2) / 2))


def test_jackson_mudholkar_close_to_exact_weighted_chi2():
    # equal eigenvalues: Q = lam * chi2_k exactly; J-M is the Wilson-Hilferty approximation
    for k in (3, 10):
        for alpha in (0.05, 0.01):
            exact = 0.7 * stats.chi2.isf(alpha, k)
            assert jackson_mudholkar_limit(np.full(k, 0.7), alpha) == pytest.approx(exact,
                                                                                   rel=0.01)


def test_t2_false_alarm_rate_is_alpha_exact_f():
    # with A = p the new-observation T^2 is exactly a scaled F: average the false-alarm rate
    # over many independent training sets
    rng = np.random.default_rng(11)
    n_sets, n_train, n_test, p, alpha = 400, 25, 50, 3, 0.05
    cov = np.array([[2.0, 0.8, 0.3], [0.8, 1.0, -0.2], [0.3, -0.2, 0.5]])
    chol = np.linalg.cholesky(cov)
    rates = np.empty(n_sets)
    for i in range(n_sets):
        m = PCAMonitor(n_components=p).fit(rng.standard_normal((n_train, p)) @ chol.T + 5.0)
        x = rng.standard_normal((n_test, p)) @ chol.T + 5.0
        rates[i] = np.mean(m.t2(x) > m.t2_limit(alpha))
    se = rates.std(ddof=1) / np.sqrt(n_sets)
    assert abs(rates.mean() - alpha) < 4 * se
    assert se < 0.1 * alpha


def _latent_data(rng, n, p=8, noise=0.5):
    w = np.random.default_rng(99).normal(size=(3, p))
    return rng.normal(size=(n, 3)) * [3.0, 2.0, 1.5] @ w + noise * rng.normal(size=(n, p))


@pytest.mark.parametrize("method", ["jackson-mudholkar", "box"])
def test_q_and_t2_false_alarm_rates_on_in_control_data(method):
    rng = np.random.default_rng(12)
    m = PCAMonitor(n_components=3, scale=False, q_method=method).fit(_latent_data(rng, 4000))
    x = _latent_data(rng, 40000)
    for alpha in (0.05, 0.01):
        res = m.evaluate(x, alpha)
        for rate in (res.q_alarm.mean(), res.t2_alarm.mean()):
            se = np.sqrt(alpha * (1 - alpha) / x.shape[0])
            # MC error plus ~3 % estimation error of the limits from 4000 training rows
            assert abs(rate - alpha) < 4 * se + 0.1 * alpha, (alpha, rate)


def test_shift_in_one_variable_is_attributed_to_it():
    rng = np.random.default_rng(13)
    m = PCAMonitor(n_components=3).fit(_latent_data(rng, 1000))
    x = _latent_data(rng, 300)
    sd = m.scale_
    for j in (2, 5):
        shifted = x.copy()
        shifted[:, j] += 4.0 * sd[j]
        res = m.evaluate(shifted, alpha=0.01)
        assert res.q_alarm.mean() > 0.9
        qc = res.q_contributions
        assert np.argmax(qc.mean(axis=0)) == j
        assert np.mean(np.argmax(qc, axis=1) == j) > 0.9
        # the T^2 contribution of the shifted variable also stands out on average
        assert np.argmax(res.t2_contributions.mean(axis=0) - m.t2_contributions(x).mean(0)) == j


def test_component_selection_and_errors():
    rng = np.random.default_rng(14)
    X = _latent_data(rng, 500)
    m = PCAMonitor(n_components=0.95).fit(X)
    frac = np.cumsum(m.explained_variance_ratio_)
    a = m.n_components_
    assert frac[a - 1] >= 0.95 and (a == 1 or frac[a - 2] < 0.95)
    with pytest.raises(ParameterError, match="n_components"):
        PCAMonitor(n_components=0)
    with pytest.raises(ParameterError, match="n_components"):
        PCAMonitor(n_components=20).fit(X)
    with pytest.raises(ParameterError, match="q_method"):
        PCAMonitor(q_method="exact")
    bad = X.copy()
    bad[:, 4] = 1.0
    with pytest.raises(ParameterError, match="column 4"):
        PCAMonitor(2).fit(bad)
    with pytest.raises(ParameterError, match="columns"):
        PCAMonitor(2).fit(X).t2(np.zeros((2, 3)))
    with pytest.raises(RuntimeError, match="fit"):
        PCAMonitor(2).t2(X)
    with pytest.raises(ParameterError, match="X"):
        PCAMonitor(2).fit(np.full((5, 3), np.nan))


def test_full_model_has_zero_q_and_limit():
    rng = np.random.default_rng(15)
    m = PCAMonitor(n_components=4).fit(rng.normal(size=(50, 4)))
    assert m.q_limit(0.01) == 0.0
    np.testing.assert_allclose(m.q(rng.normal(size=(5, 4))), 0.0, atol=1e-20)
