"""Property tests: any chunking of a stream gives the one-shot result (to 1e-12)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsim.rtd.convolution import Convolver, convolve
from cmsim.rtd.filters import PlugFlowDelay, TanksInSeriesFilter

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def signal_and_cuts(draw, max_len: int = 600, max_rows: int = 3):
    n = draw(st.integers(0, max_len))
    rows = draw(st.integers(0, max_rows))  # 0 means a 1-D signal
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.random((rows, n) if rows else n)
    if draw(st.booleans()):
        x = np.where(rng.random(x.shape) < 0.9, 0.0, x)  # sparse, tracer-like
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=8)))
    return x, cuts


def _chunked(step, x: np.ndarray, cuts: list[int]) -> np.ndarray:
    pieces = np.split(x, cuts, axis=-1)
    return np.concatenate([step(p) for p in pieces], axis=-1)


@SETTINGS
@given(data=signal_and_cuts(), k=st.sampled_from([1, 2, 5, 33, 200, 300, 1500]),
       seed=st.integers(0, 1000))
def test_convolver_any_chunking_equals_one_shot(data, k: int, seed: int) -> None:
    x, cuts = data
    w = np.random.default_rng(seed).random(k)
    y = _chunked(Convolver(w).step, x, cuts)
    ref = convolve(x, w, method="direct")
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12 * scale)
    assert y.min(initial=0.0) >= 0.0


@SETTINGS
@given(data=signal_and_cuts(), n=st.integers(1, 8), tau=st.floats(0.5, 200.0),
       dt=st.sampled_from([0.1, 0.5, 1.0, 2.0]))
def test_tis_any_chunking_equals_one_shot(data, n: int, tau: float, dt: float) -> None:
    x, cuts = data
    y = _chunked(TanksInSeriesFilter(tau, n, dt).step, x, cuts)
    ref = TanksInSeriesFilter(tau, n, dt).step(x)
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12 * scale)
    assert y.min(initial=0.0) >= 0.0


@SETTINGS
@given(data=signal_and_cuts(max_len=400), n=st.integers(1, 6), tau=st.floats(2.0, 100.0))
def test_tis_filter_equals_fir_with_its_kernel(data, n: int, tau: float) -> None:
    x, _ = data
    if x.shape[-1] == 0:
        return
    length = x.shape[-1]
    pulse = np.zeros(length)
    pulse[0] = 1.0
    w = TanksInSeriesFilter(tau, n, 1.0).step(pulse)
    np.testing.assert_allclose(TanksInSeriesFilter(tau, n, 1.0).step(x), convolve(x, w),
                               rtol=0, atol=1e-12 * max(1.0, float(x.sum())))


@SETTINGS
@given(data=signal_and_cuts(), ticks=st.integers(0, 250))
def test_delay_any_chunking_is_an_exact_shift(data, ticks: int) -> None:
    x, cuts = data
    d = PlugFlowDelay(ticks * 0.5, 0.5)
    y = _chunked(d.step, x, cuts)
    n = x.shape[-1]
    ref = np.zeros_like(x)
    if ticks < n:
        ref[..., ticks:] = x[..., : n - ticks]
    np.testing.assert_array_equal(y, ref)
    tail = x[..., max(0, n - ticks) :].sum(axis=-1)
    np.testing.assert_allclose(d.holdup, 0.5 * np.atleast_1d(tail), rtol=1e-13)
