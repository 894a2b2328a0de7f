"""``RTDModel.apply``: exact recursion where one exists, FIR otherwise, one time-stamp convention.

References are independent of the code under test: the kernel path ``convolve(x,
model.kernel(dt))`` (built from the model's F), the mass balance written with the model's survival
function, closed forms of the partial fractions, and ``np.convolve``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cmsim.errors import ParameterError
from cmsim.rtd import (
    CSTR,
    PFR,
    AxialDispersion,
    Empirical,
    Series,
    TanksInSeries,
    TanksInSeriesFilter,
    convolve,
)
from cmsim.rtd._apply import MAX_PARTIAL_FRACTION_GAIN, partial_fractions

DT = 0.5
TAIL = 1e-15  # the reference kernel keeps everything above round-off


def _signal(rows: int | None = None, n: int = 3000, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random(n if rows is None else (rows, n))
    x[..., n // 3 : n // 3 + 40] = 0.0  # a stop: the exact zeros must stay exact
    return x


def _kernel_path(model, x: np.ndarray, dt: float = DT) -> np.ndarray:
    return convolve(x, model.kernel(dt, tail=TAIL))


def _mass_defect(model, x: np.ndarray, y: np.ndarray, dt: float = DT) -> float:
    """``dt sum(y) + remaining - dt sum(x)`` relative to ``dt sum(x)``, remaining from ``sf``."""
    n = x.shape[-1]
    remaining = dt * np.sum(x * model.sf((n - np.arange(n)) * dt), axis=-1)
    fed = dt * x.sum(axis=-1)
    return float(np.max(np.abs(dt * y.sum(axis=-1) + remaining - fed) / fed))


RECURSIVE = [
    CSTR(7.0),
    CSTR(0.3),  # r = dt/tau > 0.5: another exact form of the filter
    *[TanksInSeries(20.0, n) for n in range(1, 9)],
    TanksInSeries(20.0, 5.0),
    Series(PFR(3.0), TanksInSeries(20.0, 5)),
    Series(CSTR(4.0), TanksInSeries(20.0, 5)),  # equal stage times merge into one chain
    Series(CSTR(3.0), CSTR(9.0), TanksInSeries(12.0, 3)),  # partial fractions
    Series(PFR(10.0), TanksInSeries(60.0, 5), CSTR(30.0), PFR(2.5)),
]


@pytest.mark.parametrize("model", RECURSIVE, ids=repr)
def test_recursion_equals_kernel_path_and_conserves_mass(model) -> None:
    assert model.apply_path(DT) == "recursive"
    x = _signal()
    y = model.apply(x, DT)
    ref = _kernel_path(model, x)
    assert y.shape == x.shape
    assert np.max(np.abs(y - ref)) <= 1e-12 * np.max(ref)
    assert _mass_defect(model, x, y) <= 1e-12
    assert y.min() >= 0.0


@pytest.mark.parametrize("model", RECURSIVE[:4] + RECURSIVE[-2:], ids=repr)
def test_batch_rows_equal_one_dimensional_calls(model) -> None:
    x = _signal(rows=5, n=1500)
    y = model.apply(x, DT)
    assert y.shape == x.shape
    for row, out in zip(x, y, strict=True):
        np.testing.assert_allclose(out, model.apply(row, DT), rtol=1e-13, atol=1e-300)


def test_forced_fir_equals_recursion() -> None:
    model = Series(PFR(3.0), TanksInSeries(20.0, 4))
    x = _signal()
    rec = model.apply(x, DT, method="recursive")
    fir = model.apply(x, DT, method="fir", tail=TAIL)
    assert np.max(np.abs(rec - fir)) <= 1e-12 * np.max(fir)


@pytest.mark.parametrize("delay", [0.0, 0.5, 3.0, 3.2, 0.2, 1e-9, 1499.0])
def test_plug_flow_is_the_kernel_shift(delay: float) -> None:
    """PFR alone: a whole number D of ticks moves the signal by D - 1 (right-edge reading), any
    other delay by floor(delay/dt); both exactly as the kernel places its unit tap."""
    model = PFR(delay)
    x = _signal()
    y = model.apply(x, DT)
    w = model.kernel(DT)
    m = int(np.flatnonzero(w)[0])
    ratio = delay / DT
    expected = max(round(ratio) - 1, 0) if ratio == round(ratio) else math.floor(ratio)
    assert m == expected
    np.testing.assert_array_equal(y[m:], x[: x.size - m])
    np.testing.assert_array_equal(y[:m], 0.0)
    np.testing.assert_array_equal(y, convolve(x, w, method="direct"))  # exact for one tap


def test_pure_delay_series_and_delay_beyond_signal() -> None:
    x = _signal(n=100)
    np.testing.assert_array_equal(Series(PFR(1.0), PFR(2.0)).apply(x, DT), PFR(3.0).apply(x, DT))
    np.testing.assert_array_equal(PFR(500.0).apply(x, DT), np.zeros(100))
    np.testing.assert_array_equal(Series(PFR(500.0), CSTR(3.0)).apply(x, DT), np.zeros(100))


@pytest.mark.parametrize("model", [
    AxialDispersion(20.0, 8.0),
    Empirical([0.0, 2.0, 5.0, 9.0], [0.0, 1.0, 0.5, 0.0]),
    TanksInSeries(20.0, 2.5),
    Series(PFR(3.2), CSTR(5.0)),  # delay of 6.4 ticks before a tank: a different kernel
    Series(TanksInSeries(20.0, 5), CSTR(4.4)),  # close stage times: partial fractions too lossy
], ids=repr)
def test_models_without_recursion_take_the_fir_path(model) -> None:
    assert model.apply_path(DT) == "fir"
    x = _signal(n=1500)
    y = model.apply(x, DT, tail=1e-9)
    np.testing.assert_array_equal(y, convolve(x, model.kernel(DT, tail=1e-9)))
    with pytest.raises(ParameterError, match="no exact recursion"):
        model.apply(x, DT, method="recursive")


def test_fractional_delay_in_front_of_tanks_matches_its_kernel() -> None:
    """The FIR path gives the kernel of the fractional delay, not a rounded shift."""
    model = Series(PFR(3.2), CSTR(5.0))
    x = _signal()
    y = model.apply(x, DT)
    shifted = Series(PFR(3.0), CSTR(5.0)).apply(x, DT)
    assert np.max(np.abs(y - shifted)) > 1e-3 * np.max(y)
    assert _mass_defect(model, x, y) <= 1e-11


def test_partial_fractions_of_two_tanks_closed_form() -> None:
    # 1 / ((1 + s a)(1 + s b)) = a/(a-b) / (1 + s a) + b/(b-a) / (1 + s b)
    a, b = 3.0, 9.0
    terms = partial_fractions(((a, 1), (b, 1)))
    assert [(b_, p) for _, b_, p in terms] == [(a, 1), (b, 1)]
    assert [c for c, _, _ in terms] == pytest.approx([a / (a - b), b / (b - a)], rel=1e-14)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 50.0), st.integers(1, 4)), min_size=1, max_size=3,
                unique_by=lambda s: s[0]))
@example(stages=[(50.0, 1), (49.984375, 1)])  # close stage times: 1 - b_j/b_i cancelled
def test_partial_fractions_reproduce_the_transfer_function(stages) -> None:
    terms = partial_fractions(tuple(stages))
    s = np.array([0.0, 0.013j, 0.1 + 0.2j, 1.7j])
    exact = np.prod([(1.0 + s * b) ** -n for b, n in stages], axis=0)
    parts = sum(c * (1.0 + s * b) ** -p for c, b, p in terms)
    gain = sum(abs(c) for c, _, _ in terms)
    assert np.max(np.abs(parts - exact)) <= 1e-13 * gain
    assert sum(c for c, _, _ in terms) == pytest.approx(1.0, abs=1e-13 * gain)


def test_gain_limit_is_what_decides_between_paths() -> None:
    close = Series(TanksInSeries(20.0, 5), CSTR(4.4))
    gain = sum(abs(c) for c, _, _ in partial_fractions(close._recursive_form().stages))
    assert gain > MAX_PARTIAL_FRACTION_GAIN
    apart = Series(CSTR(3.0), CSTR(9.0), TanksInSeries(12.0, 3))
    gain = sum(abs(c) for c, _, _ in partial_fractions(apart._recursive_form().stages))
    assert gain <= MAX_PARTIAL_FRACTION_GAIN


def test_long_chains_and_overflowing_partial_fractions_take_the_fir_path() -> None:
    """A chain of more than MAX_RECURSIVE_TANKS tanks costs n^2 per tick in its recursion (1,000
    tanks: 14 s for 2e4 samples), and partial fractions of chains this long overflow (their
    gain became NaN, which passed the gain test and gave NaN outputs); both go through the
    kernel, silently (no numpy warning) and equal to it."""
    import warnings

    from cmsim.rtd._apply import apply_path
    from cmsim.rtd.filters import MAX_RECURSIVE_TANKS

    long_chain = TanksInSeries(60.0, MAX_RECURSIVE_TANKS + 1)
    overflow = Series(TanksInSeries(180.0, 1), TanksInSeries(56.6, 1000), TanksInSeries(6.67, 100))
    with np.errstate(over="ignore", invalid="ignore"):
        gain = sum(abs(c) for c, _, _ in partial_fractions(overflow._recursive_form().stages))
    assert not math.isfinite(gain)
    assert apply_path(TanksInSeries(60.0, MAX_RECURSIVE_TANKS), DT) == "recursive"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert apply_path(long_chain, DT) == "fir" and apply_path(overflow, DT) == "fir"
        x = np.random.default_rng(5).uniform(0.0, 1.0, 3000)
        np.testing.assert_allclose(long_chain.apply(x, DT),
                                   convolve(x, long_chain.kernel(DT, tail=1e-12)), rtol=1e-12,
                                   atol=1e-15)


def test_single_chain_reuses_the_streaming_filter() -> None:
    """One-shot apply and the streaming filter fed in chunks give the same numbers."""
    x = _signal()
    f = TanksInSeriesFilter(20.0, 5, DT)
    streamed = np.concatenate([f.step(p) for p in np.array_split(x, 7)])
    np.testing.assert_allclose(TanksInSeries(20.0, 5).apply(x, DT), streamed, rtol=1e-12)


def test_step_response_mean_delay() -> None:
    """Time stamps: the step response of a recursion reaches 1/2 of its total mass at the mean
    residence time, measured from the midpoint of the first input tick, within dt/2."""
    model = Series(PFR(10.0), TanksInSeries(60.0, 5))
    x = np.zeros(4000)
    x[0] = 1.0
    y = model.apply(x, DT)
    t = (np.arange(y.size) + 1.0) * DT  # right edges
    mean = np.sum(t * y) / np.sum(y) - 0.5 * DT  # impulse kernel mean from the tick midpoint
    assert abs(mean - (model.mean)) <= 0.5 * DT


@pytest.mark.parametrize("bad, match", [
    (np.array([[[1.0]]]), "ndim"),
    (np.array([1.0, np.nan]), "finite"),
    ("abc", "real"),
])
def test_bad_signal_is_rejected(bad, match) -> None:
    with pytest.raises(ParameterError, match=match):
        CSTR(3.0).apply(bad, DT)


def test_bad_arguments_are_rejected() -> None:
    x = np.ones(10)
    with pytest.raises(ParameterError, match="dt"):
        CSTR(3.0).apply(x, 0.0)
    with pytest.raises(ParameterError, match="method"):
        CSTR(3.0).apply(x, DT, method="magic")
    with pytest.raises(ParameterError, match="tail"):
        AxialDispersion(20.0, 8.0).apply(x, DT, tail=2.0)


def test_empty_and_one_tick_signals() -> None:
    for model in (CSTR(3.0), Series(PFR(1.0), CSTR(3.0)), AxialDispersion(20.0, 8.0)):
        assert model.apply(np.zeros(0), DT).shape == (0,)
        assert model.apply(np.zeros((3, 0)), DT).shape == (3, 0)
        np.testing.assert_allclose(model.apply(np.array([2.0]), DT),
                                   2.0 * model.kernel(DT)[:1], rtol=1e-13)
