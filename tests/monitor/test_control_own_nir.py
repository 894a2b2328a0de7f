"""The supervisor's own NIR (NIR feedback without the PAT monitor) reads the line's per-chunk
stream of its port (``Line.watch``), keeping only the ticks its reading windows need."""

from __future__ import annotations

import numpy as np
import pytest

from cmsim.api import rng_streams
from cmsim.config import load_scenario
from cmsim.control import attach_control
from cmsim.line import build_line, rng_source_names

SCENARIO = "scenarios/control_nir_feedback.toml"


def _line(seed: int = 1):
    sc = load_scenario(SCENARIO, overrides=["simulation.duration=8 min", "pat.noise_sd=0"])
    gens, _ = rng_streams(seed, rng_source_names(sc) + ["control.nir"])
    return sc, gens, build_line(sc, gens)


@pytest.mark.parametrize("seed", [3, 4])
def test_own_nir_readings_are_window_means_of_the_stream_in_any_chunks(seed):
    """Random chunks of 1-12 ticks (several control ticks per chunk, windows reaching back
    over several chunks): every reading is the mean API fraction over its window of ticks,
    computed from an independent per-tick record of the same port."""
    sc, gens, line = _line()
    port = "blender.out"
    record = line.record(port)  # the reference only (the supervisor keeps no record)
    sup = attach_control(line, sc, gens["control.nir"])
    assert sup is not None and sup.nir_source is None and sup.nir_settings.port == port
    rng = np.random.default_rng(seed)
    k = 0
    while k < line.n_ticks:
        k = min(line.n_ticks, k + int(rng.integers(1, 13)))
        line.run_to(k)
    s, dt = sup.nir_settings, line.dt
    api_rows = np.asarray(line.channel_map.material_rows(line.channel_map.api_material))
    h = sup.history
    assert h["time_s"].size == line.n_ticks // sup.period_ticks
    n_checked = 0
    for t, y in zip(h["time_s"], h["nir_reading"], strict=True):
        kc = round(t / dt)
        b = min(kc, round(kc - s.latency / dt))
        a = min(round(kc - (s.latency + s.integration_time) / dt), b - 1)
        if a < 0:
            assert np.isnan(y)
            continue
        tot = record[:, a:b].sum(axis=0)
        frac = record[api_rows, a:b].sum(axis=0)[tot > 0] / tot[tot > 0]
        assert y == pytest.approx(float(frac.mean()), rel=1e-14, abs=0)
        n_checked += 1
    assert n_checked > 0.9 * h["time_s"].size
    assert abs(float(np.nanmean(h["nir_reading"])) / sc.target_api_fraction - 1) < 0.1


def test_own_nir_keeps_no_record_of_the_run():
    sc, gens, line = _line()
    sup = attach_control(line, sc, gens["control.nir"])
    assert sup is not None
    line.run_to(line.n_ticks)
    assert line.records.keys().isdisjoint({sup.nir_settings.port})
    assert sup._nir_buf.shape[1] <= sup._nir_keep  # only the last ticks are kept
    assert np.isfinite(sup.history["nir_reading"]).sum() > 0
