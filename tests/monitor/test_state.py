"""State of control: start-up qualification, excursions, transitions, shut-down."""

from __future__ import annotations

import numpy as np
import pytest

from cmsim import rtd
from cmsim.errors import ParameterError
from cmsim.monitor.state import (
    IN_CONTROL,
    OUT_OF_CONTROL,
    SHUTDOWN,
    STARTUP,
    evaluate_state_of_control,
    sustained,
)

LINE = rtd.Series(rtd.PFR(10.0), rtd.TanksInSeries(60.0, 5), rtd.CSTR(30.0))
T999 = 293.834  # docs/monitor.md#diversion-windows: t_99.9% of the example line
T005 = 31.732   # t_0.5%
t = np.arange(0.0, 2000.0, 1.0)
PAT_T = np.arange(0.0, 2000.0, 2.0)


def test_startup_needs_settled_line_and_k_in_limit_readings():
    s = evaluate_state_of_control(t, {"feeders_ok": np.ones(t.size, bool)},
                                  pat_times=PAT_T, pat_in_limits=np.ones(PAT_T.size, bool),
                                  k_consecutive=3, line_model=LINE)
    assert s.settle_time_s == pytest.approx(T999, abs=1e-3)
    # readings at >= 293.83 s: 294, 296, 298 -> start-up complete at 298 s
    assert s.startup_complete_s == (298.0,)
    assert np.all(s.state[t < 298.0] == STARTUP)
    assert np.all(s.state[t >= 298.0] == IN_CONTROL)
    assert s.time_in_state()["startup"] == 298.0
    assert s.intervals() == [(0.0, 298.0, "startup"), (298.0, 2000.0, "in_control")]


def test_out_of_limit_reading_restarts_the_count_and_readings_before_settling_do_not_count():
    ok = np.ones(PAT_T.size, bool)
    ok[PAT_T == 296.0] = False
    ok[PAT_T < 200.0] = False  # bad readings while the line fills do not matter
    s = evaluate_state_of_control(t, pat_times=PAT_T, pat_in_limits=ok, k_consecutive=3,
                                  line_model=LINE)
    assert s.startup_complete_s == (302.0,)
    # k = 0 or no PAT in the strategy: only the settling time counts
    s0 = evaluate_state_of_control(t, line_model=LINE)
    assert s0.startup_complete_s == pytest.approx((T999,), abs=1e-3)
    assert s0.state[293] == STARTUP and s0.state[294] == IN_CONTROL


def test_condition_failures_after_startup_are_excursions_with_reasons():
    feeders = np.ones(t.size, bool)
    feeders[500:520] = False
    spc = np.ones(t.size, bool)
    spc[800:805] = False
    spc[100:150] = False  # during start-up: stays start-up
    s = evaluate_state_of_control(t, {"feeders_ok": feeders, "no_spc_alarm": spc},
                                  settle_time=300.0)
    assert np.all(s.state[500:520] == OUT_OF_CONTROL) and np.all(s.state[800:805] ==
                                                                 OUT_OF_CONTROL)
    assert np.all(s.state[100:150] == STARTUP)
    assert s.n_excursions == 2
    np.testing.assert_array_equal(s.failed["feeders_ok"], ~feeders)
    assert s.time_in_state()["out_of_control"] == 25.0
    assert sum(s.time_in_state().values()) == 2000.0


def test_setpoint_change_starts_a_transition():
    s = evaluate_state_of_control(t, pat_times=PAT_T, pat_in_limits=np.ones(PAT_T.size, bool),
                                  line_model=LINE, setpoint_changes=[0.0, 1000.0])
    assert s.startup_complete_s == (298.0, 1298.0)
    assert np.all(s.state[(t >= 1000.0) & (t < 1298.0)] == STARTUP)
    assert s.state[999] == IN_CONTROL and s.state[1298] == IN_CONTROL


def test_shutdown_after_feed_stop_plus_t_alpha():
    s = evaluate_state_of_control(t, line_model=LINE, feed_stops=[(1500.0, None)])
    assert s.shutdown_delay_s == pytest.approx(T005, abs=1e-3)
    assert s.state[1531] == IN_CONTROL and s.state[1532] == SHUTDOWN
    assert np.all(s.state[1532:] == SHUTDOWN)


def test_pause_and_restart_is_shutdown_plus_startup():
    s = evaluate_state_of_control(t, line_model=LINE, feed_stops=[(1000.0, 1100.0)],
                                  settle_time=300.0, shutdown_delay=30.0)
    assert s.state[1029] == IN_CONTROL
    assert np.all(s.state[1030:1100] == SHUTDOWN)
    assert np.all(s.state[1100:1400] == STARTUP)
    assert np.all(s.state[1400:] == IN_CONTROL)
    assert s.startup_complete_s == (300.0, 1400.0)


def test_no_pat_readings_means_never_in_control():
    s = evaluate_state_of_control(t, pat_times=[], pat_in_limits=[], settle_time=10.0)
    assert np.all(s.state == STARTUP) and s.startup_complete_s == ()


def test_sustained():
    tt = np.arange(0.0, 10.0, 0.5)
    c = np.ones(tt.size, bool)
    c[4] = False
    out = sustained(tt, c, 2.0)
    # first run [0, 1.5] never lasts 2 s; the second starts at 2.5 s -> true from 4.5 s
    np.testing.assert_array_equal(out, tt >= 4.5)
    assert sustained(tt, c, 0.0).tolist() == c.tolist()


def test_bad_inputs():
    with pytest.raises(ParameterError, match="settle_time"):
        evaluate_state_of_control(t)
    with pytest.raises(ParameterError, match="conditions"):
        evaluate_state_of_control(t, {"x": np.ones(3, bool)}, settle_time=1.0)
    with pytest.raises(ParameterError, match="boolean"):
        evaluate_state_of_control(t, {"x": np.full(t.size, 0.5)}, settle_time=1.0)
    with pytest.raises(ParameterError, match="pat_in_limits"):
        evaluate_state_of_control(t, pat_times=PAT_T, settle_time=1.0)
    with pytest.raises(ParameterError, match="feed_stops"):
        evaluate_state_of_control(t, settle_time=1.0, feed_stops=[(5.0, 1.0)])
    with pytest.raises(ParameterError, match="k_consecutive"):
        evaluate_state_of_control(t, settle_time=1.0, k_consecutive=-1)
