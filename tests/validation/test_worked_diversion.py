"""docs/monitor.md#diversion-windows worked example and the API-stop example
(docs/reference-values.md, row 16) through the engine, on the line-state monitor.

Continuous-time reference windows [V]: method B (alpha 0.5 %) 331.73-565.44 s for the API
feeder at 50 % for 20 s at 300 s; the content of that set-point step is outside 95-105 %
from 358.65 to 440.89 s; API stop for 10 s at 300 s: minimum 89.64 % LC at 386.3 s, OOS
353.65-435.72 s. The gate diverts whole ticks (tick k covers [k dt, (k+1) dt)), so the
diverted ticks must cover the window and their edges lie within one tick of it.

Method B is the quantile policy's feeder trigger. The content-based diversion (method A of
cmsim 0.1) is the risk policy on noise-free signals without NIR: the estimator then knows the
content exactly from the commanded flows, with the floor of its model-error standard
deviation (``MODEL_SD_FLOOR``), so it diverts exactly the ticks whose true content ``c`` has
``P(N(c, floor^2) outside the limits) > max_risk``: a closed form of the simulator's content.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

import cmsim
from cmsim.config import load_scenario
from cmsim.monitor.setup import MODEL_SD_FLOOR


def _run(name, policy, monitor=None, fault=False):
    d = load_scenario(f"scenarios/{name}.toml").to_dict()
    d.pop("pat", None)
    if fault:
        # method B is for faults (docs/monitor.md#diversion-windows): the same 20 s at 300 s
        # as a feeder stop, not a set-point step
        (dist,) = d["disturbances"]
        dist.pop("mass_flow", None)
        dist["type"] = "feeder_stop"
    d["monitor"] = {"load_cell_period": 0, **(monitor or {})}
    d["diversion"] = {"quantile": 0.005, "margin": 0, "policy": policy}
    return cmsim.run(d)


def _edges(r):
    (a, b), = [(e["start_s"], e["end_s"]) for e in r.diversion_events]
    k = np.flatnonzero(r.diverted)
    assert k[0] * r.dt == a and (k[-1] + 1) * r.dt == b and k.size == k[-1] - k[0] + 1
    return a, b


@pytest.mark.parametrize("policy, monitor, fault, window, tablets", [
    # method B (feeder trigger); tablets are counted by mass: the stop removes 20 s of the
    # 2 kg/h API flow from the window, 2/3600 * 20 / 250e-6 = 44.4 tablets fewer than 5194
    ("quantile", {}, True, (331.73, 565.44), 5194 - 44.4),
    # a commanded step compared with the nominal flow is a deviation too: the same window
    # with the step's own API flow (50 % for 20 s: 22.2 tablets fewer than 5194)
    ("quantile", {"feeder_reference": "nominal"}, False, (331.73, 565.44), 5194 - 22.2),
])
def test_worked_example_windows(policy, monitor, fault, window, tablets):
    r = _run("api_feeder_half", policy, monitor, fault=fault)
    a, b = _edges(r)
    dt = r.dt
    assert a <= window[0] < a + dt          # covers the start, within one tick
    assert b - dt < window[1] <= b          # covers the end, within one tick
    ev, = r.diversion_events
    # tablets: 22.2 tablets/s over the window, +- one tick at each end
    assert ev["tablets"] == pytest.approx(tablets, abs=2 * 22.3 * dt + 1)
    assert ev["mass_kg"] == pytest.approx(ev["tablets"] * 250e-6)
    s = r.summary()["tablets"]
    assert s["nonconforming_accepted"] == 0.0
    assert s["diverted"] == pytest.approx(ev["tablets"])
    # the diverted mass equals what the gate emitted over the diverted ticks (mass balance)
    assert ev["mass_kg"] == pytest.approx(r.gate_flow.sum(axis=0)[r.diverted].sum() * dt,
                                          rel=1e-12)
    if policy == "quantile":
        (w,) = [w for e in r.event_log if e["type"] == "diversion"
                for w in e["data"]["windows"]]
        assert w["method"] == "B" and w["trigger"] == "feeder:0" and w["alpha"] == 0.005


def _risk_oracle(r) -> np.ndarray:
    """Ticks the risk policy must divert: Gaussian tail of the true content with the
    estimator's floor standard deviation above max_risk (1e-3)."""
    c = r.api_content
    lo, hi = r.api_content_limits
    risk = norm.cdf((lo - c) / MODEL_SD_FLOOR) + norm.sf((hi - c) / MODEL_SD_FLOOR)
    return risk > 1e-3


@pytest.mark.parametrize("name, oos", [("api_feeder_half", (358.65, 440.89)),
                                       ("api_feeder_stop", (353.65, 435.72))])
def test_risk_policy_diverts_the_content_outside_the_limits(name, oos):
    r = _run(name, "risk")
    c, t, dt = r.api_content, r.time_s, r.dt
    bad = np.flatnonzero((c < 0.95) | (c > 1.05))
    assert abs(t[bad[0]] - oos[0]) <= dt and abs(t[bad[-1]] + dt - oos[1]) <= dt
    np.testing.assert_array_equal(r.diverted, _risk_oracle(r))
    a, b = _edges(r)
    assert a <= oos[0] and oos[1] <= b  # covers the OOS interval
    s = r.summary()["tablets"]
    assert s["nonconforming_accepted"] == 0.0
    # the waste is the oracle's margin: ticks inside the limits within 3.09 floor sigmas
    margin = _risk_oracle(r) & (c >= 0.95) & (c <= 1.05)
    assert s["conforming_diverted"] == pytest.approx(r.tablets[margin].sum(), rel=1e-9)
    ev, = r.diversion_events
    assert ev["trigger"] == "risk"


def test_api_stop_example_row16():
    """The simulator's own content of the API stop (no monitor involved)."""
    r = _run("api_feeder_stop", "risk")
    c, t, dt = r.api_content, r.time_s, r.dt
    i = int(np.nanargmin(c))
    assert c[i] == pytest.approx(0.8964, abs=2e-4)
    assert abs(t[i] + dt / 2 - 386.3) <= dt


def test_set_point_step_is_no_feeder_fault_with_the_set_point_reference():
    """The half-rate API set-point step alone (no NIR) opens no window of the feeder trigger
    when it compares with the set point: it is an intended move."""
    r = _run("api_feeder_half", "quantile", {"feeder_reference": "set_point"})
    assert r.diversion_events == []
    assert not r.diverted.any()


def test_feeder_trigger_off_opens_no_method_b_window():
    r = _run("api_feeder_half", "quantile", {"feeder_trigger": False}, fault=True)
    assert r.diversion_events == []
