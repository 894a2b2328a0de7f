"""Edge cases of the streaming RTD filters: form switches, bad chunks, mass across switches.

The reference for every output is an independent simulation of the tank chain (docs/rtd.md,
compartment model):
the tank masses are advanced per tick with ``scipy.linalg.expm`` of the compartment matrix, the
tick's input mass enters tank 0 at the start of the tick and the output is the mass that left the
last tank during the tick divided by ``dt``. It shares no code with the filter (which uses the
cascade, Jordan or mass-recursion forms depending on ``n`` and ``dt / tau_i``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import expm

from cmsim.errors import ParameterError
from cmsim.rtd.convolution import Convolver, convolve
from cmsim.rtd.filters import PlugFlowDelay, TanksInSeriesFilter


class ChainReference:
    """Tank masses advanced with the matrix exponential (independent of the filter)."""

    def __init__(self, n: int, dt: float) -> None:
        self.n = n
        self.dt = dt
        self.m = np.zeros(n)

    def phi(self, tau: float) -> np.ndarray:
        k = self.n / tau  # 1 / tau_i
        a = -k * np.eye(self.n) + k * np.eye(self.n, k=-1)
        return expm(a * self.dt)

    def run(self, tau: float, x: np.ndarray) -> np.ndarray:
        p = self.phi(tau)
        y = np.empty(x.size)
        for i, u in enumerate(x):
            self.m[0] += self.dt * u
            before = self.m.sum()
            self.m = p @ self.m
            y[i] = (before - self.m.sum()) / self.dt
        return y


def form_of(f: TanksInSeriesFilter) -> str:
    # private, only to make sure the cases below really visit every realisation
    return f._form


def test_the_cases_visit_every_form() -> None:
    assert form_of(TanksInSeriesFilter(60.0, 5, 1.0)) == "cascade"
    assert form_of(TanksInSeriesFilter(4.0, 5, 1.0)) == "jordan"
    assert form_of(TanksInSeriesFilter(10.0, 50, 1.0)) == "mass"


# ----------------------------------------------------------------------------- form switches
@pytest.mark.parametrize("n", [2, 3, 5, 8])
@pytest.mark.parametrize("tau2", [4.0, 9.0, 60.0, 600.0])
def test_all_mass_in_tank_zero_then_switch(n: int, tau2: float) -> None:
    """A pulse in the last tick leaves nearly all mass in tank 0; switching must stay >= 0."""
    dt = 1.0
    for tau1 in (600.0, 4.0):  # start in the cascade form, and in a non-cascade form
        f = TanksInSeriesFilter(tau1, n, dt)
        ref = ChainReference(n, dt)
        x = np.zeros(40)
        x[-1] = 1.0
        np.testing.assert_allclose(f.step(x), ref.run(tau1, x), rtol=0, atol=1e-14)
        m = f.tank_masses[0]
        np.testing.assert_allclose(m, ref.m, rtol=1e-12, atol=1e-16)
        if tau1 == 600.0:
            assert m[0] > 0.98 * m.sum()
        h0 = f.holdup[0]
        f.set_mean_residence_time(tau2)
        assert f.holdup[0] == pytest.approx(h0, rel=1e-12)
        np.testing.assert_allclose(f.tank_masses[0], ref.m, rtol=1e-11, atol=1e-15)
        z = np.zeros(int(20 * tau2))
        y = f.step(z)
        assert y.min() >= 0.0
        np.testing.assert_allclose(y, ref.run(tau2, z), rtol=0, atol=1e-13)
        # everything drains out: emitted = hold-up at the switch
        assert dt * y.sum() + f.holdup[0] == pytest.approx(h0, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 9),
    taus=st.lists(st.floats(2.0, 200.0), min_size=2, max_size=5),
    age=st.integers(0, 30),
    lengths=st.lists(st.integers(0, 40), min_size=5, max_size=5),
)
def test_switches_never_give_negative_outputs_and_conserve_mass(
    n: int, taus: list[float], age: int, lengths: list[int],
) -> None:
    """Pulse ``age`` ticks before a chain of switches: outputs >= 0, match the reference, and
    ``fed - emitted == holdup`` to 1e-12 after every switch and chunk."""
    dt = 1.0
    f = TanksInSeriesFilter(taus[0], n, dt)
    ref = ChainReference(n, dt)
    x = np.zeros(age + 1)
    x[0] = 1.0
    fed = dt * x.sum()
    y = f.step(x)
    emitted = dt * y.sum()
    np.testing.assert_allclose(y, ref.run(taus[0], x), rtol=0, atol=1e-14)
    for tau, length in zip(taus[1:], lengths, strict=False):
        h0 = f.holdup[0]
        f.set_mean_residence_time(tau)
        assert abs(f.holdup[0] - h0) <= 1e-12 * fed
        np.testing.assert_allclose(f.tank_masses[0], ref.m, rtol=0, atol=1e-12 * fed)
        z = np.zeros(length)
        y = f.step(z)
        assert y.size == 0 or y.min() >= 0.0
        np.testing.assert_allclose(y, ref.run(tau, z), rtol=0, atol=1e-13)
        emitted += dt * y.sum()
        assert abs(fed - emitted - f.holdup[0]) <= 1e-12 * fed
    y = f.step(np.zeros(int(40 * max(taus))))
    assert y.min() >= 0.0
    emitted += dt * y.sum()
    assert abs(fed - emitted) <= 1e-12 * fed


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 8),
    taus=st.lists(st.floats(2.0, 120.0), min_size=2, max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_input_across_switches_matches_reference(
    n: int, taus: list[float], seed: int,
) -> None:
    """Non-negative random input with switches (chunks shorter than n - 1 included)."""
    rng = np.random.default_rng(seed)
    dt = 0.5
    f = TanksInSeriesFilter(taus[0], n, dt)
    ref = ChainReference(n, dt)
    fed = emitted = 0.0
    for tau in taus:
        f.set_mean_residence_time(tau)
        for length in rng.integers(0, 12, size=3):
            x = rng.random(length) * (rng.random(length) < 0.5)
            y = f.step(x)
            assert y.size == 0 or y.min() >= 0.0
            np.testing.assert_allclose(y, ref.run(tau, x), rtol=0, atol=1e-13)
            fed += dt * x.sum()
            emitted += dt * y.sum()
            assert abs(fed - emitted - f.holdup[0]) <= 1e-12 * max(fed, 1.0)


def test_batch_switch_keeps_rows_independent() -> None:
    n, dt = 5, 1.0
    x = np.zeros((3, 30))
    x[0, -1] = 1.0  # all in tank 0
    x[1, 0] = 2.0  # spread over the chain
    f = TanksInSeriesFilter(60.0, n, dt, batch=3)
    f.step(x)
    h0 = f.holdup.copy()
    f.set_mean_residence_time(4.0)
    np.testing.assert_allclose(f.holdup, h0, rtol=1e-12, atol=0)
    y = f.step(np.zeros((3, 200)))
    assert y.min() >= 0.0
    assert np.all(y[2] == 0.0)  # the empty row stays exactly empty
    for row in (0, 1):
        ref = ChainReference(n, dt)
        ref.run(60.0, x[row])
        np.testing.assert_allclose(y[row], ref.run(4.0, np.zeros(200)), rtol=0, atol=1e-13)


# ----------------------------------------------------------------------------- bad chunks
BAD_VALUES = [float("nan"), float("inf"), -float("inf")]


@pytest.mark.parametrize("bad", BAD_VALUES)
@pytest.mark.parametrize(("tau", "n"), [(60.0, 5), (60.0, 3), (4.0, 5), (10.0, 50), (60.0, 1)])
def test_bad_chunk_leaves_state_unchanged(tau: float, n: int, bad: float) -> None:
    rng = np.random.default_rng(3)
    good = rng.random(50)
    f = TanksInSeriesFilter(tau, n, 1.0)
    twin = TanksInSeriesFilter(tau, n, 1.0)
    f.step(good)
    twin.step(good)
    before = f.tank_masses.copy()
    chunk = rng.random(20)
    chunk[7] = bad
    with pytest.raises(ParameterError, match=r"chunk.*element 7 = .*must be finite") as info:
        f.step(chunk)
    assert info.value.name == "chunk"
    np.testing.assert_array_equal(f.tank_masses, before)
    more = rng.random(30)
    np.testing.assert_array_equal(f.step(more), twin.step(more))


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_bad_chunk_after_switch_keeps_the_head_clip(bad: float) -> None:
    """A failed chunk right after a switch must not lose the post-switch state."""
    x = np.zeros(30)
    x[-1] = 1.0
    f = TanksInSeriesFilter(4.0, 5, 1.0)
    twin = TanksInSeriesFilter(4.0, 5, 1.0)
    for g in (f, twin):
        g.step(x)
        g.set_mean_residence_time(60.0)
    with pytest.raises(ParameterError, match="element 0"):
        f.step(np.array([bad, 1.0]))
    z = np.zeros(400)
    y = f.step(z)
    np.testing.assert_array_equal(y, twin.step(z))
    assert y.min() >= 0.0


def test_bad_element_of_a_batch_is_named() -> None:
    f = TanksInSeriesFilter(60.0, 5, 1.0, batch=2)
    f.step(np.ones((2, 10)))
    before = f.tank_masses.copy()
    chunk = np.ones((2, 10))
    chunk[1, 3] = np.nan
    with pytest.raises(ParameterError, match=r"element 13 = nan"):
        f.step(chunk)
    np.testing.assert_array_equal(f.tank_masses, before)


def test_overflowing_chunk_is_rejected_and_state_kept() -> None:
    f = TanksInSeriesFilter(60.0, 5, 1.0)
    f.step(np.ones(10))
    before = f.tank_masses.copy()
    with pytest.raises(ParameterError, match="too large"):
        f.step(np.full(5, 1e308))
    np.testing.assert_array_equal(f.tank_masses, before)


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_delay_rejects_bad_chunk_and_keeps_its_buffer(bad: float) -> None:
    d = PlugFlowDelay(3.0, 1.0)
    d.step(np.array([1.0, 2.0]))
    h = d.holdup.copy()
    with pytest.raises(ParameterError, match=r"chunk.*element 1"):
        d.step(np.array([5.0, bad]))
    np.testing.assert_array_equal(d.holdup, h)
    np.testing.assert_array_equal(d.step(np.zeros(4)), [0.0, 1.0, 2.0, 0.0])


# ----------------------------------------------------------------------------- FIR bad input
# The direct FIR path detects a non-finite input on its outputs (no separate pass): every input
# sample must reach an output, also through a zero first tap (0 * inf = NaN).
@pytest.mark.parametrize("bad", BAD_VALUES)
@pytest.mark.parametrize("pos", [0, 1, 37, 998, 999])
@pytest.mark.parametrize("w0", [0.0, 0.3])
@pytest.mark.parametrize("k", [1, 9, 50, 1000])
def test_convolve_names_a_bad_sample_anywhere(bad: float, pos: int, w0: float, k: int) -> None:
    rng = np.random.default_rng(pos + k)
    w = rng.random(k)
    w[0] = w0
    x = rng.random(1000)
    x[pos] = bad
    for x_in in (x, np.vstack([np.ones(1000), x])):
        with pytest.raises(ParameterError, match=r"x='element (\d+) = .*must be finite") as info:
            convolve(x_in, w)
        assert int(info.value.value.split()[1]) == pos + (1000 if x_in.ndim == 2 else 0)


@pytest.mark.parametrize("bad", BAD_VALUES)
@pytest.mark.parametrize("k", [1, 4, 50, 400])
def test_convolver_bad_chunk_keeps_history(bad: float, k: int) -> None:
    rng = np.random.default_rng(k)
    w = rng.random(k)
    c = Convolver(w)
    twin = Convolver(w)
    first = rng.random(30)
    c.step(first)
    twin.step(first)
    h = c.holdup.copy()
    for length in (1, 3, 80):
        chunk = rng.random(length)
        chunk[-1] = bad
        with pytest.raises(ParameterError, match=rf"chunk='element {length - 1} = .*finite"):
            c.step(chunk)
        np.testing.assert_array_equal(c.holdup, h)
    more = rng.random(200)
    np.testing.assert_array_equal(c.step(more), twin.step(more))


def test_convolve_overflow_of_finite_input_is_not_an_error() -> None:
    x = np.full(20, 1e308)
    y = convolve(x, [1.0, 1.0])
    assert y[0] == 1e308
    assert np.all(np.isinf(y[1:]))
    c = Convolver([1.0, 1.0])
    np.testing.assert_array_equal(c.step(x), y)
    np.testing.assert_array_equal(c.step(np.zeros(2)), [1e308, 0.0])


# ----------------------------------------------------------------------------- two-lane cascade
# For n = 5 in the cascade form, chunks of at least ``_min_split`` ticks run as two interleaved
# lanes: the second half from a zero state, plus the free response of the state at the split.
def gamma_bin_kernel(tau: float, n: int, dt: float, length: int) -> np.ndarray:
    """Independent bin kernel from scipy: differences of P below the median, of Q above it."""
    from scipy.special import gammainc, gammaincc

    t = n * np.arange(length + 1) * dt / tau
    p, q = gammainc(n, t), gammaincc(n, t)
    return np.where(p[:-1] < 0.5, np.diff(p), -np.diff(q))


def plain_twin(f: TanksInSeriesFilter) -> TanksInSeriesFilter:
    g = TanksInSeriesFilter(f.mean_residence_time, f.n_tanks, f.dt)
    g._min_split = 2**62  # private: force the single-lane kernel as the reference
    return g


@pytest.mark.parametrize(("n_tanks", "odd"), [(5, 0), (5, 1), (1, 1), (3, 0), (8, 1)])
def test_two_lane_split_matches_convolution_and_single_lane(n_tanks: int, odd: int) -> None:
    tau, dt = 60.0, 1.0
    f = TanksInSeriesFilter(tau, n_tanks, dt)
    assert form_of(f) == "cascade"
    n = 2 * (f._min_split // 2) + 1000 + odd
    assert n % 2 == odd and n >= f._min_split
    rng = np.random.default_rng(11)
    x = rng.random(n) * (rng.random(n) < 0.3)
    g = plain_twin(f)
    y = f.step(x)
    y_plain = g.step(x)
    # 25 tau (50 tau for one tank): the kernel mass beyond is < 1e-20
    w = gamma_bin_kernel(tau, n_tanks, dt, 1500 if n_tanks > 1 else 3000)
    ref = np.convolve(x, w)[:n]
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-13 * ref.max())
    np.testing.assert_allclose(y, y_plain, rtol=0, atol=1e-14 * ref.max())
    assert y.min() >= 0.0
    np.testing.assert_allclose(f.tank_masses, g.tank_masses, rtol=1e-13, atol=0)
    fed = dt * math.fsum(x)
    assert abs(f.holdup[0] - (fed - dt * math.fsum(y))) <= 1e-12 * fed


@pytest.mark.parametrize(("n_tanks", "where"), [(5, "before_split"), (5, "at_split"),
                                                (5, "end"), (2, "before_split"), (7, "at_split")])
def test_two_lane_split_impulse_is_the_kernel(n_tanks: int, where: str) -> None:
    """An impulse just before the split travels entirely through the free-response correction."""
    tau, dt = 60.0, 1.0
    f = TanksInSeriesFilter(tau, n_tanks, dt)
    n = f._min_split + 10
    h = n // 2
    pos = {"before_split": h - 1, "at_split": h, "end": n - 3}[where]
    x = np.zeros(n)
    x[pos] = 1.0
    y = f.step(x)
    assert y.min() >= 0.0
    assert np.all(y[:pos] == 0.0)
    length = min(2000, n - pos)
    w = gamma_bin_kernel(tau, n_tanks, dt, length)
    np.testing.assert_allclose(y[pos : pos + length], w, rtol=1e-11, atol=1e-300)
    assert f.holdup[0] + dt * y.sum() == pytest.approx(1.0, rel=1e-13)


def test_two_lane_split_with_a_huge_state_and_chunking() -> None:
    """A state of 1e200 at the split needs a longer correction; chunkings agree with one call."""
    tau, dt = 30.0, 0.5
    f = TanksInSeriesFilter(tau, 5, dt)
    n = 3 * f._min_split
    rng = np.random.default_rng(5)
    x = rng.random(n)
    x[n // 2 - 100] = 1e200
    y = f.step(x)
    g = plain_twin(f)
    np.testing.assert_allclose(y, g.step(x), rtol=1e-13, atol=1e-13)
    h = TanksInSeriesFilter(tau, 5, dt)
    cuts = np.sort(rng.integers(0, n, size=4))
    parts = [h.step(p) for p in np.split(x, cuts)]
    np.testing.assert_allclose(np.concatenate(parts), y, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(h.tank_masses, f.tank_masses, rtol=1e-12)


@pytest.mark.parametrize("n_tanks", [5, 3])
def test_two_lane_split_batch_rows_match_1d(n_tanks: int) -> None:
    f = TanksInSeriesFilter(60.0, n_tanks, 1.0, batch=3)
    n = f._min_split + 2
    rng = np.random.default_rng(9)
    x = rng.random((3, n))
    y = f.step(x)
    for row in range(3):
        g = plain_twin(f)
        np.testing.assert_allclose(y[row], g.step(x[row]), rtol=1e-13, atol=1e-15)


def test_two_lane_split_after_a_switch_stays_non_negative() -> None:
    f = TanksInSeriesFilter(4.0, 5, 1.0)
    x = np.zeros(50)
    x[-1] = 1.0
    y0 = f.step(x)
    f.set_mean_residence_time(60.0)
    z = np.zeros(f._min_split + 100)
    z[len(z) // 2 - 1] = 0.5
    y = f.step(z)
    assert y.min() >= 0.0
    assert f.holdup[0] + y.sum() + y0.sum() == pytest.approx(1.5, rel=1e-12)


def test_parallel_direct_path_names_the_bad_sample() -> None:
    """(64, 40000) takes the prange kernel; its summed probe must still flag one NaN."""
    from cmsim.rtd import convolution

    rows, n = 64, 40_000
    assert rows * n >= convolution._PARALLEL_MIN_WORK
    x = np.random.default_rng(1).random((rows, n))
    x[37, 12_345] = np.nan
    with pytest.raises(ParameterError, match=rf"x='element {37 * n + 12_345} = nan"):
        convolve(x, np.full(50, 0.02))
    x[37, 12_345] = 0.5
    y = convolve(x, np.full(50, 0.02))
    np.testing.assert_allclose(y[37, :500], np.convolve(x[37, :500], np.full(50, 0.02))[:500],
                               rtol=1e-13)


@pytest.mark.parametrize(("n", "tau"), [(200, 0.05), (100, 0.001), (40, 0.01)])
def test_many_tanks_with_a_long_tick_build_without_overflow(n, tau):
    """With many tanks and dt >> tau the Jordan basis overflows; the chain then takes the
    mass form (it used to fail in numpy's SVD or warn of an overflow). Everything that
    enters leaves within the tick, and the hold-up is what entered minus what left."""
    dt = 0.5
    f = TanksInSeriesFilter(tau, n, dt, batch=2)  # the suite turns warnings into errors
    x = np.vstack([np.ones(50), np.linspace(0.0, 2.0, 50)])
    y = f.step(x)
    np.testing.assert_allclose(y, x, rtol=1e-12, atol=1e-300)  # r = n dt / tau >= 2000
    np.testing.assert_allclose(f.holdup, dt * (x.sum(axis=1) - y.sum(axis=1)), atol=1e-12)
