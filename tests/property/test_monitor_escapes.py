"""Hypothesis: random disturbances on the fault benchmark's line and variants of it (blender
and press RTDs, the NIR at the blender outlet or the feed frame, its period and noise, the
tick), under the benchmark's feeder and load-cell noise, release no nonconforming tablet
under the default risk policy.

Escapes are counted from the true content the simulator knows. The disturbances are those a
plant signal can reveal: feeder stops, steps and drifts of the API and the main excipient,
press stops, blender speed changes, and either one lot change of a wrong assay or one NIR
fault. A lot change together with an NIR fault is left out: the NIR is the only signal that
sees a lot's potency (docs/pat-monitor.md, assumptions and limits).
"""

from __future__ import annotations

import tomllib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cmsim

with open("scenarios/faults/no_fault.toml", "rb") as fh:
    LINE = tomllib.load(fh)
with open("scenarios/faults/lot_change_assay.toml", "rb") as fh:
    HOPPER = tomllib.load(fh)["feeders"][0]["hopper"]
NOMINAL = {"api": 2.0, "mcc": 17.9}  # kg/h


@st.composite
def line_disturbance(draw):
    kind = draw(st.sampled_from(["feeder_stop", "feeder_step", "feeder_drift", "press_stop",
                                 "blender_speed"]))
    start = f"{draw(st.floats(200.0, 1800.0)):.1f} s"
    feeder = draw(st.sampled_from(["api", "mcc"]))
    if kind == "feeder_stop":
        return {"type": kind, "feeder": feeder, "start": start,
                "duration": f"{draw(st.floats(2.0, 60.0)):.1f} s"}
    if kind == "feeder_step":
        factor = draw(st.sampled_from([0.0, 0.3, 0.8, 0.9, 0.93, 1.07, 1.1, 1.3, 2.0]))
        return {"type": kind, "feeder": feeder, "start": start,
                "mass_flow": f"{factor * NOMINAL[feeder]:.3f} kg/h",
                "duration": f"{draw(st.floats(5.0, 300.0)):.1f} s"}
    if kind == "feeder_drift":
        return {"type": kind, "feeder": "api", "start": start,
                "rate_per_hour": f"{draw(st.sampled_from([-40, -20, 20, 40]))} %",
                "duration": f"{draw(st.floats(60.0, 900.0)):.1f} s"}
    if kind == "press_stop":
        return {"type": kind, "start": start, "duration": f"{draw(st.floats(10.0, 400.0)):.1f} s"}
    return {"type": kind, "start": start,
            "speed": f"{draw(st.sampled_from([120, 150, 200, 300, 400]))} rpm"}


@st.composite
def lot_or_nir_fault(draw):
    start = f"{draw(st.floats(100.0, 1800.0)):.1f} s"
    kind = draw(st.sampled_from(["lot", "bias", "drift", "dropout", "frozen"]))
    if kind == "lot":
        return {"type": "refill", "feeder": "api", "start": start, "lot": "API-002",
                "mass": "0.3 kg", "duration": "12 s",
                "assay": draw(st.sampled_from([0.85, 0.9, 0.93, 0.96, 1.04, 1.07, 1.2]))}
    fault = {"type": "nir_fault", "kind": kind, "start": start}
    if kind in ("bias", "drift"):
        fault["value"] = draw(st.sampled_from([-0.006, -0.003, 0.003, 0.006]))
    if kind in ("dropout", "frozen") or draw(st.booleans()):
        fault["end"] = f"{float(start[:-2]) + draw(st.floats(10.0, 300.0)):.1f} s"
    return fault


@st.composite
def line_variant(draw):
    """The line's RTDs, NIR and tick varied around the benchmark's."""
    n = draw(st.sampled_from([1, 3, 5, 8]))
    mrt = f"{draw(st.sampled_from([40, 60, 90, 120]))} s"
    blender = {"model": "cstr", "mean_residence_time": mrt} if n == 1 else \
        {"model": "tanks_in_series", "mean_residence_time": mrt, "n_tanks": n}
    return {
        "blender": {**LINE["blender"], "rtd": blender},
        "press": {**LINE["press"],
                  "transfer_rtd": {"model": "pfr",
                                   "delay": f"{draw(st.sampled_from([5, 10, 20]))} s"},
                  "feed_frame_rtd": {"model": "cstr", "mean_residence_time":
                                     f"{draw(st.sampled_from([15, 30, 45]))} s"}},
        "pat": {**LINE["pat"], "location": draw(st.sampled_from(["blender_outlet",
                                                                  "feed_frame"])),
                "sample_period": draw(st.sampled_from(["2 s", "5 s"])),
                "noise_sd": draw(st.sampled_from(["0.1 %", "0.25 %", "0.5 %"]))},
        "dt": draw(st.sampled_from(["0.5 s", "1 s"])),
    }


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line_disturbance(), min_size=0, max_size=2),
       st.none() | lot_or_nir_fault(), st.integers(0, 2**31 - 1), line_variant())
def test_random_disturbances_release_no_nonconforming_tablet(line, extra, seed, variant):
    d = {**LINE, "simulation": {**LINE["simulation"], "duration": "40 min", "seed": seed,
                                "dt": variant["dt"]},
         "feeders": [dict(f) for f in LINE["feeders"]], "blender": variant["blender"],
         "press": variant["press"], "pat": variant["pat"]}
    d["disturbances"] = line + ([extra] if extra else [])
    if extra and extra["type"] == "refill":
        d["feeders"][0]["hopper"] = HOPPER
    if not d["disturbances"]:
        d["disturbances"] = [{"type": "blender_speed", "start": "600 s", "speed": "250 rpm"}]
    tablets = cmsim.run(d).summary()["tablets"]
    assert tablets["nonconforming_accepted"] == 0.0
