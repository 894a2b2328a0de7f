"""Tests of cmsim.rtd.convolution: one-shot dispatcher and streaming Convolver."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import gammainc

from cmsim.errors import ParameterError
from cmsim.rtd.convolution import (
    DIRECT_MAX_TAPS,
    OA_MIN_RATIO,
    Convolver,
    convolution_method,
    convolve,
)

METHODS = ("auto", "direct", "oa", "fft")


def gamma_bin_kernel(tau: float, n: float, dt: float, length: int) -> np.ndarray:
    """Independent bin-integrated tanks-in-series kernel w[j] = F((j+1)dt) - F(j dt)."""
    j = np.arange(length + 1)
    f = gammainc(n, n * j * dt / tau)
    return np.diff(f)


def reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    if x.ndim == 1:
        return np.convolve(x, w)[: x.size]
    return np.array([np.convolve(row, w)[: x.shape[1]] for row in x])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("n", "k"), [(1, 1), (7, 3), (100, 50), (1000, 8), (1000, 300), (3000, 700), (200, 900),
                 (20_000, 257), (5, 40)],
)
def test_all_methods_match_numpy_convolve(method: str, n: int, k: int) -> None:
    rng = np.random.default_rng(n * 1000 + k)
    x = rng.standard_normal(n)
    w = rng.standard_normal(k)
    y = convolve(x, w, method=method)
    ref = reference(x, w)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("b", "n", "k"), [(3, 500, 20), (4, 2000, 600), (2, 50, 400)])
def test_batch_matches_rowwise_reference(method: str, b: int, n: int, k: int) -> None:
    rng = np.random.default_rng(b + n + k)
    x = rng.random((b, n))
    w = rng.random(k)
    y = convolve(x, w, method=method)
    ref = reference(x, w)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_parallel_direct_batch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import cmsim.rtd.convolution as conv

    monkeypatch.setattr(conv, "_PARALLEL_MIN_WORK", 1)
    rng = np.random.default_rng(5)
    x = rng.random((5, 300))
    w = rng.random(30)
    np.testing.assert_allclose(conv.convolve(x, w, method="direct"), reference(x, w),
                               rtol=1e-13, atol=0)


def test_out_is_filled_and_returned() -> None:
    rng = np.random.default_rng(0)
    x = rng.random(400)
    w = rng.random(30)
    for method in METHODS:
        out = np.full(400, np.nan)
        y = convolve(x, w, out=out, method=method)
        assert y is out
        np.testing.assert_allclose(out, reference(x, w), rtol=1e-12, atol=0)


def test_dispatcher_regimes() -> None:
    assert convolution_method(10**6, 50) == "direct"
    assert convolution_method(10**6, DIRECT_MAX_TAPS) == "direct"
    assert convolution_method(10**6, 5000) == "oa"
    assert convolution_method(OA_MIN_RATIO * 1000, 1000) == "oa"
    assert convolution_method(OA_MIN_RATIO * 1000 - 1, 1000) == "fft"
    assert convolution_method(10**4, 5000) == "fft"
    # a short output makes a long kernel cheap for the direct loop
    assert convolution_method(20, 10**5) == "direct"
    # taps beyond N never contribute
    assert convolution_method(100, 10**6) == "direct"


@pytest.mark.parametrize("method", METHODS)
def test_pulse_through_rtd_kernel_has_no_negatives(method: str) -> None:
    w = gamma_bin_kernel(60.0, 5, 1.0, 2000)
    x = np.zeros(6000)
    x[100] = 1.0
    y = convolve(x, w, method=method)
    assert y.min() >= 0.0
    if method in ("direct",):
        # the direct loop reproduces exact zeros before the pulse
        assert np.all(y[:100] == 0.0)
    np.testing.assert_allclose(y[100:2100], w, rtol=0, atol=1e-15)


def test_fft_clip_only_when_non_negative() -> None:
    # with a signed kernel the FFT output must keep its genuinely negative values
    w = np.array([1.0, -2.0, 1.0] + [0.0] * 600)
    x = np.zeros(2000)
    x[10] = 1.0
    y = convolve(x, w, method="fft")
    assert y[11] == pytest.approx(-2.0, abs=1e-12)


def test_mass_conserved_after_tail_drains() -> None:
    tau, n, dt = 60.0, 5, 1.0
    w = gamma_bin_kernel(tau, n, dt, 1200)
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.random(3000), np.zeros(1200)])
    for method in METHODS:
        y = convolve(x, w, method=method)
        assert abs(y.sum() - w.sum() * x.sum()) <= 1e-12 * x.sum()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"x": np.array([1.0, np.nan]), "w": [1.0]}, "x"),
        ({"x": np.array([1.0, np.inf]), "w": [1.0]}, "x"),
        ({"x": np.zeros((2, 2, 2)), "w": [1.0]}, "x"),
        ({"x": np.zeros(3), "w": []}, "w"),
        ({"x": np.zeros(3), "w": np.ones((2, 2))}, "w"),
        ({"x": np.zeros(3), "w": [1.0, np.nan]}, "w"),
        ({"x": np.zeros(3), "w": [1.0], "method": "magic"}, "method"),
        ({"x": np.zeros(3), "w": [1.0], "out": np.zeros(4)}, "out"),
        ({"x": np.zeros(3), "w": [1.0], "out": np.zeros(3, dtype=np.float32)}, "out"),
    ],
)
def test_bad_input_raises_parameter_error(kwargs: dict, name: str) -> None:
    with pytest.raises(ParameterError) as info:
        convolve(**kwargs)
    assert info.value.name == name
    assert name in str(info.value)


def test_empty_signal() -> None:
    assert convolve(np.zeros(0), [1.0, 2.0]).shape == (0,)
    assert convolve(np.zeros((3, 0)), [1.0, 2.0]).shape == (3, 0)


# ---------------------------------------------------------------------------- Convolver
@pytest.mark.parametrize("k", [1, 2, 9, 150, 700])
def test_convolver_chunked_equals_one_shot(k: int) -> None:
    rng = np.random.default_rng(k)
    x = rng.random(3000)
    w = rng.random(k)
    c = Convolver(w)
    sizes = [0, 1, 1, 5, k, k + 3, 2 * k, 0, 1000, 1]
    pieces, start = [], 0
    for s in sizes:
        pieces.append(c.step(x[start : start + s]))
        start += s
    pieces.append(c.step(x[start:]))
    y = np.concatenate(pieces)
    ref = convolve(x, w)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12 * ref.max())


def test_convolver_holdup_and_mass_balance() -> None:
    w = gamma_bin_kernel(30.0, 3, 0.5, 600)
    s = w.sum()
    dt = 0.5
    c = Convolver(w, dt=dt)
    rng = np.random.default_rng(11)
    fed = emitted = 0.0
    for size in [1, 7, 300, 2, 999, 50]:
        x = rng.random(size)
        y = c.step(x)
        fed += dt * x.sum()
        emitted += dt * y.sum()
        assert c.holdup.shape == (1,)
        assert abs(s * fed - emitted - c.holdup[0]) <= 1e-12 * fed
    # drain: everything the kernel will ever emit comes out, hold-up goes to 0
    y = c.step(np.zeros(w.size))
    emitted += dt * y.sum()
    assert abs(c.holdup[0]) <= 1e-15 * fed
    assert abs(s * fed - emitted) <= 1e-12 * fed


def test_convolver_holdup_without_dt_is_in_ticks() -> None:
    c = Convolver([0.5, 0.3, 0.2])
    c.step([2.0])
    # after one tick: 2 * (1 - 0.5) still inside
    assert c.holdup[0] == pytest.approx(1.0, rel=1e-15)


def test_convolver_batch_and_reset() -> None:
    rng = np.random.default_rng(2)
    x = rng.random((3, 400))
    w = rng.random(20)
    c = Convolver(w)
    y1 = np.concatenate([c.step(x[:, :150]), c.step(x[:, 150:])], axis=1)
    np.testing.assert_allclose(y1, reference(x, w), rtol=1e-12, atol=0)
    assert c.batch == 3
    with pytest.raises(ParameterError, match="chunk"):
        c.step(np.zeros((2, 5)))
    c.reset()
    np.testing.assert_allclose(c.step(x), reference(x, w), rtol=1e-12, atol=0)


def test_convolver_out_argument() -> None:
    c = Convolver([1.0, 1.0], batch=2)
    out = np.empty((2, 3))
    res = c.step(np.ones((2, 3)), out=out)
    assert res is out
    np.testing.assert_array_equal(out, [[1, 2, 2], [1, 2, 2]])
    with pytest.raises(ParameterError, match="out"):
        c.step(np.ones((2, 3)), out=np.empty((2, 4)))


def test_convolver_long_kernel_fft_path_non_negative() -> None:
    w = gamma_bin_kernel(600.0, 2, 1.0, 5000)
    c = Convolver(w)
    x = np.zeros(20_000)
    x[3] = 1.0
    y = np.concatenate([c.step(x[:10_000]), c.step(x[10_000:])])
    assert y.min() >= 0.0
    np.testing.assert_allclose(y[3:5003], w, rtol=0, atol=1e-15)


def test_convolver_validation() -> None:
    with pytest.raises(ParameterError, match="w"):
        Convolver([])
    with pytest.raises(ParameterError, match="batch"):
        Convolver([1.0], batch=0)
    with pytest.raises(ParameterError, match="dt"):
        Convolver([1.0], dt=-1.0)
    with pytest.raises(ParameterError, match="chunk"):
        Convolver([1.0]).step([np.nan])


def test_convolver_fft_path_signed_data_chunked() -> None:
    import cmsim.rtd.convolution as conv

    rng = np.random.default_rng(9)
    w = rng.standard_normal(3000)
    x = rng.standard_normal(30_000)
    n, k = 8000, w.size
    assert not conv._use_direct(n, k)  # these chunks take the FFT branch
    c = Convolver(w)
    y = np.concatenate([c.step(x[i : i + n]) for i in range(0, x.size, n)])
    ref = reference(x, w)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_full_convolve_and_autocorrelation_direct_and_by_fft(monkeypatch):
    """Composing kernels: numpy's exact sums for small products, the FFT for large ones (a
    line's kernels at dt = 5 ms took 2.3 s directly); both agree with the definition."""
    import cmsim.rtd.convolution as conv  # noqa: PLC0415

    rng = np.random.default_rng(3)
    a, b = rng.random(300), rng.random(77)
    ref = np.array([sum(a[i] * b[k - i] for i in range(max(0, k - 76), min(k, 299) + 1))
                    for k in range(376)])
    r_ref = np.array([np.dot(a[: a.size - lag], a[lag:]) for lag in range(a.size)])
    np.testing.assert_array_equal(conv.full_convolve(a, b), np.convolve(a, b))
    np.testing.assert_allclose(conv.full_convolve(a, b), ref, rtol=1e-12)
    np.testing.assert_allclose(conv.autocorrelation(a), r_ref, rtol=1e-12)
    monkeypatch.setattr(conv, "FULL_DIRECT_MAX_FMAS", 0)  # force the FFT path
    np.testing.assert_allclose(conv.full_convolve(a, b), ref, rtol=0, atol=1e-12 * ref.max())
    np.testing.assert_allclose(conv.autocorrelation(a), r_ref, rtol=0,
                               atol=1e-12 * r_ref.max())
    with pytest.raises(ParameterError):
        conv.full_convolve([], b)
    with pytest.raises(ParameterError):
        conv.autocorrelation([np.nan])
