"""Diversion-window ends carried through press stops (:class:`PressStops`)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cmsim.monitor.press_stops import PressStops


def _running_time(stops: list[tuple[float, float]], a: float, b: float) -> float:
    """Seconds the press runs in [a, b], integrated on a fine grid (independent of the
    interval arithmetic of ``end_through``)."""
    t = np.linspace(a, b, 200_001)
    running = np.ones_like(t, dtype=bool)
    for s, e in stops:
        running &= ~((t >= s) & (t < e))
    return float(running[:-1].mean() * (b - a))


@given(st.lists(st.tuples(st.floats(0, 900), st.floats(1, 200)), max_size=4),
       st.floats(0, 1000), st.floats(0, 400))
def test_the_moved_end_leaves_the_press_running_exactly_the_window_length(raw, t_ref, length):
    stops, t = [], 0.0
    clock = PressStops()
    for start, dur in sorted(raw):
        if start <= t:  # stops must be disjoint and ordered
            continue
        clock.observe(t, start, True)
        clock.observe(start, start + dur, False)
        stops.append((start, start + dur))
        t = start + dur
    clock.observe(t, t + 5000.0, True)
    end = clock.end_through(t_ref, t_ref + length)
    assert end >= t_ref + length
    assert abs(_running_time(stops, t_ref, end) - length) < 0.02
    # the end never falls inside a stop
    assert not any(s < end < e for s, e in stops)


def test_a_stop_in_progress_lasts_until_the_signals_seen_so_far():
    clock = PressStops()
    clock.observe(0.0, 400.0, True)
    assert clock.observe(400.0, 550.0, False) is None and clock.stopped
    assert clock.end_through(380.0, 450.0) == 600.0  # 20 s run before the stop, 50 s after 550
    assert clock.observe(700.0, 800.0, True) == (400.0, 700.0)
    assert clock.end_through(380.0, 450.0) == 750.0
