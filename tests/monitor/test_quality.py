"""The flat-line check of the NIR readings (:class:`FrozenReadings`)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cmsim.monitor.quality import FrozenReadings


def _naive(values: list[float]) -> list[bool]:
    """Repeat flags by a plain loop: equal to the last finite value before."""
    last, out = None, []
    for v in values:
        finite = not np.isnan(v)
        out.append(finite and last is not None and v == last)
        if finite:
            last = v
    return out


@given(st.lists(st.sampled_from([0.1, 0.2, 0.3, float("nan")]), max_size=40),
       st.integers(1, 7))
def test_repeats_are_blanked_whatever_the_chunks(values, step):
    q = FrozenReadings()
    y = np.array(values, dtype=float)
    t = np.arange(y.size) * 2.0
    out = np.concatenate([q.clean(t[i:i + step], y[i:i + step]) for i in range(0, y.size, step)]
                         ) if y.size else y
    flags = _naive(values)
    assert np.array_equal(np.isnan(out), np.isnan(y) | np.array(flags, dtype=bool))
    assert np.array_equal(out[~np.isnan(out)], y[~np.isnan(out)])
    # one alarm per run of repeats, cleared by the next differing reading
    kinds = [e.kind.value for e in q.events]
    assert kinds == ["alarm", "alarm_cleared"] * (len(kinds) // 2) + ["alarm"] * (len(kinds) % 2)


def test_noisy_readings_pass_untouched():
    rng = np.random.default_rng(1)
    y = 0.1 + 0.0025 * rng.standard_normal(10_000)
    q = FrozenReadings()
    assert q.clean(np.arange(y.size) * 2.0, y) is y
    assert q.events == []


def test_an_episode_over_a_chunk_boundary_is_one_alarm():
    q = FrozenReadings()
    q.clean(np.array([0.0, 2.0]), np.array([0.11, 0.12]))
    out = q.clean(np.array([4.0, 6.0, 8.0]), np.array([0.12, 0.12, np.nan]))
    out2 = q.clean(np.array([10.0, 12.0]), np.array([0.12, 0.13]))
    assert np.isnan(out).all() and np.isnan(out2[0]) and out2[1] == 0.13
    assert [(e.time_s, e.kind.value, e.data["key"]) for e in q.events] == [
        (4.0, "alarm", "nir_frozen#1"), (12.0, "alarm_cleared", "nir_frozen#1")]
