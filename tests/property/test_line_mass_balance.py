"""Hypothesis: random small scenarios with random disturbances conserve mass per component."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cmsim

FEEDERS = ("api", "mcc", "mgst")


@st.composite
def disturbance(draw):
    kind = draw(st.sampled_from(["feeder_stop", "feeder_step", "feeder_noise", "refill",
                                 "blender_speed", "press_stop", "feeder_drift"]))
    start = draw(st.floats(0.0, 290.0))
    d = {"type": kind, "start": start}
    if kind.startswith("feeder") or kind == "refill":
        d["feeder"] = draw(st.sampled_from(FEEDERS))
    if kind in ("feeder_stop", "press_stop"):
        d["duration"] = draw(st.floats(0.5, 60.0))
    elif kind == "feeder_step":
        d["mass_flow"] = draw(st.floats(0.0, 30.0)) / 3600
        d["duration"] = draw(st.none() | st.floats(1.0, 100.0))
    elif kind == "feeder_noise":
        d["noise_rsd"] = draw(st.floats(0.0, 0.2))
    elif kind == "feeder_drift":
        d["rate_per_hour"] = draw(st.floats(-0.5, 0.5))
        d["volumetric"] = draw(st.booleans())
    elif kind == "refill":
        d["lot"] = draw(st.sampled_from(["L1", "L2"]))
    elif kind == "blender_speed":
        d["speed"] = draw(st.floats(100.0, 400.0))
    return d


@st.composite
def scenario(draw):
    dt = draw(st.sampled_from([0.5, 1.0, 2.0]))
    hopper = {"capacity": 0.3, "refill_rate": 0.02, "refill_low": 0.3, "refill_high": 0.8,
              "surge": draw(st.floats(0.0, 0.1)),
              "mixing": draw(st.sampled_from(["mixed", "fifo"]))}
    return {
        "name": "prop",
        "simulation": {"duration": 300.0, "dt": dt, "seed": draw(st.integers(0, 2**31)),
                       "initial_state": draw(st.sampled_from(["steady", "empty"]))},
        "feeders": [
            {"name": "api", "material": "API", "role": "api", "mass_flow": 2.0 / 3600,
             "noise_rsd": 0.03, "hopper": hopper},
            {"name": "mcc", "material": "MCC", "mass_flow": 17.8 / 3600, "noise_rsd": 0.02},
            {"name": "mgst", "material": "MgSt", "mass_flow": 0.2 / 3600},
        ],
        "blender": {"rtd": {"model": "tanks_in_series", "mean_residence_time": 40.0,
                            "n_tanks": draw(st.integers(1, 6))}, "speed": 250.0},
        "press": {"transfer_rtd": {"model": "pfr", "delay": draw(st.floats(0.0, 12.0))},
                  "feed_frame_rtd": {"model": "cstr", "mean_residence_time": 15.0},
                  "tablet_mass": 250e-6},
        "disturbances": draw(st.lists(disturbance(), max_size=5)),
    }


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_random_scenarios_conserve_mass(sc):
    r = cmsim.run(sc)
    assert r.mass_balance_max_rel_error < 1e-9
    cm = r.channel_mass
    np.testing.assert_allclose(cm["fed"] + cm["initial_holdup"],
                               cm["accepted"] + cm["diverted"] + cm["holdup"],
                               rtol=1e-9, atol=1e-15)
    assert np.all(r.gate_flow >= -1e-15)
    phi = r.timeseries[[c for c in r.timeseries.columns if c.startswith("lot.API.")]]
    flowing = r.component_flow("API") > 0
    np.testing.assert_allclose(phi[flowing].sum(axis=1), 1.0, atol=1e-9)
    s = r.summary()
    gate_kg = sum(s["mass_kg"]["accepted"].values()) + sum(s["mass_kg"]["diverted"].values())
    assert abs(s["tablets"]["produced"] * 250e-6 - gate_kg) <= 1e-12 * max(gate_kg, 1e-12)
