"""Hypothesis: a historian table with one bad value replays, or is refused with InputError.

One value of a recorded signals table is replaced by an extreme (NaN, +-inf, 1e300, a
negative, 0, 0.5, 2, ...). ``cmsim replay`` must then either re-apply the monitor (risk in
[0, 1], decisions per tick) or refuse the table with a :class:`cmsim.errors.InputError` that
names the column; never a numpy warning or an exception from inside the estimator. A fuzz of
this kind found cast warnings, OverflowError and ZeroDivisionError deep in the monitor.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cmsim
from cmsim.errors import InputError
from cmsim.replay import replay

STOP = "scenarios/api_feeder_stop.toml"
SHORT = ["simulation.duration=6 min"]
VALUES = [np.nan, np.inf, -np.inf, 1e300, -1e300, -1.0, 0.0, 0.5, 1.0, 2.0, 1e-300, 7.0]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay") / "run"
    cmsim.run(STOP, overrides=SHORT, out=out)
    return pd.read_parquet(out / "signals.parquet")


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(col=st.integers(0, 10**6), row=st.integers(0, 719), value=st.sampled_from(VALUES))
def test_one_bad_value_replays_or_is_refused_naming_its_column(tmp_path, table, col, row,
                                                                value):
    bad = table.copy()
    column = bad.columns[col % len(bad.columns)]
    bad.loc[row, column] = value
    path = tmp_path / f"sig_{col}_{row}.csv"
    bad.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            rep = replay(path, scenario=STOP, overrides=SHORT)
        except InputError as err:
            assert column in str(err) or "time_s" in str(err), str(err)
            return
    assert rep.diverted.shape == (720,)
    assert np.all((rep.risk >= 0.0) & (rep.risk <= 1.0))
