"""The NIR feedback's input without a PAT monitor: the plant's NIR instrument (the monitor's
instrument model, ``NIRSensor`` run by ``PlantRecorder``), not a model of control's own."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cmsim
from cmsim.api import rng_streams
from cmsim.assembly import assemble
from cmsim.config import load_scenario
from cmsim.config.loader import read_toml
from cmsim.control import NIRSource, PlantNIR, attach_control
from cmsim.engine import Engine
from cmsim.errors import ParameterError
from cmsim.line import build_line, rng_source_names
from cmsim.monitor.plant import nir_start_time
from cmsim.monitor.sensors import NIRSensor

NIR_FB = "scenarios/control_nir_feedback.toml"
LATENCY, INTEGRATION, NOISE = 3.0, 2.0, 0.002


def _no_pat(duration: str = "8 min", **nir_feedback) -> dict:
    """control_nir_feedback without [pat], [diversion] and [monitor]: no PAT monitor."""
    raw = read_toml(NIR_FB)
    for key in ("pat", "diversion", "monitor"):
        raw.pop(key, None)
    raw["simulation"]["duration"] = duration
    raw["control"]["nir_feedback"] = nir_feedback
    return raw


def _lively(duration: str = "20 min") -> dict:
    """A short blender and a noisy API feeder: the content at the probe moves within seconds
    (so that a wrong latency shows in the readings)."""
    raw = _no_pat(duration, latency=f"{LATENCY} s", integration_time=f"{INTEGRATION} s",
                  noise_sd=f"{NOISE * 100} %")
    raw["blender"]["rtd"] = {"model": "tanks_in_series", "mean_residence_time": "6 s",
                             "n_tanks": 2}
    raw["feeders"][0]["noise_rsd"] = "20 %"
    raw["feeders"][0]["noise_correlation_time"] = "3 s"
    raw["disturbances"] = []
    return raw


def _run(raw: dict, seed: int, record: str | None = None):
    """Run the line with its control (no monitor); the probe port's record if asked."""
    sc = load_scenario(raw)
    asm = assemble(sc)
    gens, _ = rng_streams(seed, rng_source_names(sc) + ["control.nir"])
    line = build_line(sc, gens, assembly=asm)
    rec = line.record(record) if record else None
    sup = attach_control(line, sc, gens["control.nir"], models=asm.models)
    Engine(line, list(asm.disturbances), control_period_s=sup.period_s).run()
    return sc, line, sup, rec


def _probe_fraction(line, rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time stamps [s] and true API fraction [-] of the probe stream per tick (independent of
    the plant recorder: stamps from the stage count, fractions from the record)."""
    api = np.asarray(line.channel_map.material_rows(line.channel_map.api_material))
    tot = rec.sum(axis=0)
    w = np.divide(rec[api].sum(axis=0), tot, out=np.zeros(tot.size), where=tot > 0)
    stages = line.nodes["blender"].unit.n_dispersive
    return (np.arange(tot.size) + 0.5 + 0.5 * stages) * line.dt, w


def _window_means(t: np.ndarray, w: np.ndarray, ts: np.ndarray, lag: float,
                  width: float) -> np.ndarray:
    """Exact means of the linear interpolant of ``(t, w)`` over ``[ts - lag - width, ts - lag]``
    by the trapezoid rule on the window's ends and the knots inside (NaN when not covered)."""
    out = np.full(ts.size, np.nan)
    for i, ti in enumerate(ts):
        a, b = ti - lag - width, ti - lag
        if a < t[0] or b > t[-1]:
            continue
        x = np.concatenate(([a], t[(t > a) & (t < b)], [b]))
        out[i] = np.trapezoid(np.interp(x, t, w), x) / width
    return out


def _held(times: np.ndarray, values: np.ndarray, t: float) -> float:
    ok = np.flatnonzero(np.isfinite(values) & (times <= t + 1e-9))
    return float(values[ok[-1]]) if ok.size else math.nan


@pytest.fixture(scope="module")
def lively():
    return _run(_lively(), seed=5, record="blender.out")


def test_readings_are_the_shared_instruments_readings_for_the_same_seed(lively):
    sc, line, sup, rec = lively
    probe = sup.nir_source.instrument
    assert isinstance(probe, PlantNIR) and probe in line.observers
    assert line.observers.index(probe) < line.observers.index(sup)   # it measures first
    got_t = np.concatenate(probe.readings["t"])
    got_y = np.concatenate(probe.readings["nir"])
    # the same instrument fed once with the whole run, seeded with the same stream
    gens, _ = rng_streams(5, rng_source_names(sc) + ["control.nir"])
    t, w = _probe_fraction(line, rec)
    ref = NIRSensor(sup.period_s, NOISE, LATENCY, INTEGRATION, rng=gens["control.nir"],
                    start=nir_start_time(sup.period_s, LATENCY, INTEGRATION, t[0]))
    ref_t, ref_y = ref.measure(t, w)
    n = got_t.size
    assert n > 500 and ref_t.size >= n
    np.testing.assert_array_equal(got_t, ref_t[:n])
    np.testing.assert_allclose(got_y, ref_y[:n], rtol=1e-12, atol=0)
    # the feedback acts on the last reading at each action tick (sampled at the action ticks)
    h = sup.history
    reported = got_t <= line.n_ticks * line.dt     # the last ones are stamped after the run
    assert np.all(np.isin(got_t[reported], h["time_s"]))
    expected = np.array([_held(got_t, got_y, tc) for tc in h["time_s"]])
    np.testing.assert_array_equal(h["nir_reading"], expected)


def test_noise_sd_and_latency_match_the_settings(lively):
    """Residuals against independently computed window means have the set noise SD; the
    latency (and integration time) that explain the readings best are the set ones."""
    _, line, sup, rec = lively
    probe = sup.nir_source.instrument
    ts = np.concatenate(probe.readings["t"])
    y = np.concatenate(probe.readings["nir"])
    t, w = _probe_fraction(line, rec)
    resid = y - _window_means(t, w, ts, LATENCY, INTEGRATION)
    assert np.isfinite(resid).all()
    n = resid.size
    # sample mean and SD of n Gaussian residuals: 4-sigma bands of their sampling errors
    assert abs(resid.mean()) < 4 * NOISE / math.sqrt(n)
    assert abs(resid.std(ddof=1) / NOISE - 1) < 4 / math.sqrt(2 * (n - 1))
    assert np.std(w) > 3 * NOISE                  # the probe signal moves more than the noise

    def sse(lag: float, width: float) -> float:
        return float(np.nansum((y - _window_means(t, w, ts, lag, width)) ** 2))

    lags = np.arange(0.0, 6.01, 0.25)
    assert lags[np.argmin([sse(lag, INTEGRATION) for lag in lags])] == LATENCY
    widths = np.arange(0.5, 4.01, 0.25)
    assert widths[np.argmin([sse(LATENCY, wd) for wd in widths])] == INTEGRATION


def test_no_pat_run_is_reproducible_and_chunk_invariant():
    raw = _no_pat(latency="2.5 s", noise_sd="0.2 %")
    a = cmsim.run(raw, seed=3)
    b = cmsim.run(raw, seed=3, extra_sync_s=[1.5, 33.25, 100.0, 301.5, 302.0])
    c = cmsim.run(raw, seed=4)
    assert a.nir_readings is None                   # no monitor, no PAT readings in the result
    ha, hb = a.control_history, b.control_history
    assert np.isfinite(ha["nir_reading"]).sum() > 200
    np.testing.assert_array_equal(ha["nir_reading"], hb["nir_reading"])
    np.testing.assert_allclose(a.gate_flow, b.gate_flow, rtol=1e-12, atol=1e-18)
    assert not np.array_equal(ha["nir_reading"], c.control_history["nir_reading"],
                              equal_nan=True)


def test_without_pat_the_feedback_still_controls():
    raw = _no_pat("20 min", noise_sd="0.25 %")
    fb = cmsim.run(raw)
    raw.pop("control")
    none = cmsim.run(raw)
    late = none.time_s > 900.0
    err_none = np.nanmean(np.abs(none.api_content[late] - 1.0))
    err_fb = np.nanmean(np.abs(fb.api_content[late] - 1.0))
    assert err_fb < 0.5 * err_none


def test_with_pat_but_no_monitor_the_probe_is_the_pat_instrument():
    """``run(monitor=False)``: the [pat] probe (its clock, dropouts) without the monitor."""
    over = ["simulation.duration=6 min", "pat.sample_period=3 s",
            "pat.dropout_probability=0.3"]
    r = cmsim.run(NIR_FB, overrides=over, monitor=False)
    assert r.nir_readings is None
    sc = load_scenario(NIR_FB, overrides=over)
    gens, _ = rng_streams(sc.simulation.seed, rng_source_names(sc) + ["control.nir"])
    line = build_line(sc, gens)
    sup = attach_control(line, sc, gens["control.nir"])
    sensor = sup.nir_source.instrument.sensor
    assert (sensor.sample_period, sensor.dropout_probability) == (3.0, 0.3)
    assert (sensor.latency, sensor.noise_sd) == (sc.pat.latency, sc.pat.noise_sd)
    h = r.control_history
    # 3 s readings seen at 2 s action ticks: held values repeat; dropouts hold too
    y = h["nir_reading"][np.isfinite(h["nir_reading"])]
    assert y.size > 100 and np.mean(y[1:] == y[:-1]) > 0.3


def test_nir_source_needs_readings_and_holds_dropouts():
    class Instrument:
        readings = {"t": [np.array([2.0, 4.0])], "nir": [np.array([0.1, np.nan])]}

    src = NIRSource(Instrument())
    assert math.isnan(src.latest(1.0))
    assert src.latest(2.0) == 0.1 and src.latest(5.0) == 0.1      # dropout at 4 s held
    Instrument.readings["t"].append(np.array([6.0]))
    Instrument.readings["nir"].append(np.array([0.12]))
    assert src.latest(6.0) == 0.12
    with pytest.raises(ParameterError, match="readings"):
        NIRSource(object())


def test_noisy_instrument_needs_a_generator():
    sc = load_scenario(_no_pat(noise_sd="0.1 %"))
    gens, _ = rng_streams(1, rng_source_names(sc))
    with pytest.raises(ParameterError, match="rng"):
        attach_control(build_line(sc, gens), sc, None)
