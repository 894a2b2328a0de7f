"""Line benchmarks: the hybrid engine vs a stepped SimPy reference, and the 8 h baseline.

``pytest benchmarks --benchmark-only`` runs the full sizes (24 h and 8 h at dt = 1 s); with
``--benchmark-disable`` (CI smoke run) each body runs once on a shortened horizon and still
checks that the hybrid and stepped outlet traces agree.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

import cmsim
from cmsim import disturbances as dist
from cmsim.api import rng_streams
from cmsim.config import load_scenario
from cmsim.engine import Engine
from cmsim.line import build_line, rng_source_names
from stepped_reference import run_stepped  # noqa: I001  (benchmarks/ is on sys.path)

BASELINE = "scenarios/baseline.toml"


def hybrid_gate(sc):
    """Hybrid engine on a loaded scenario (same work as the stepped reference)."""
    gens, _ = rng_streams(sc.simulation.seed, rng_source_names(sc))
    line = build_line(sc, gens)
    Engine(line, dist.from_scenario(sc.disturbances, sc.feeders)).run()
    line.check_mass_balance()
    return line.flow


@pytest.mark.benchmark(group="line")
def test_hybrid_vs_stepped_24h(benchmark):
    hours = 0.5 if benchmark.disabled else 24.0
    overrides = [f"simulation.duration={hours} h"]
    sc = load_scenario(BASELINE, overrides=overrides)
    assert sc.simulation.dt == 1.0 and len(sc.feeders) == 3
    gate = benchmark(hybrid_gate, sc)
    t0 = time.perf_counter()
    ref = run_stepped(BASELINE, overrides=overrides)
    stepped_s = time.perf_counter() - t0
    assert np.max(np.abs(gate - ref)) <= 1e-12 * np.max(ref)
    hybrid_s = (benchmark.stats.stats.median if not benchmark.disabled
                else statistics.median(_times(lambda: hybrid_gate(sc), 3)))
    ratio = stepped_s / hybrid_s
    benchmark.extra_info.update(hours=hours, stepped_s=stepped_s, hybrid_s=hybrid_s,
                                speedup_vs_stepped=ratio, target_speedup=50.0)
    print(f"\n{hours} h line: hybrid {hybrid_s * 1e3:.1f} ms, stepped {stepped_s:.2f} s, "
          f"ratio {ratio:.0f}x")


@pytest.mark.benchmark(group="line")
def test_monitored_24h_vs_stepped(benchmark):
    """24 h at dt = 1 s with the PAT monitor (NIR every 1 s, line-state estimator, risk-based
    diversion) through ``cmsim.run`` vs the stepped SimPy reference of the bare line.
    Target: at least 50x faster."""
    hours = 0.5 if benchmark.disabled else 24.0
    overrides = [f"simulation.duration={hours} h", "pat.sample_period=1 s"]
    result = benchmark(cmsim.run, BASELINE, overrides=overrides)
    assert result.summary()["diversion"]["policy"] == "risk"
    t0 = time.perf_counter()
    run_stepped(BASELINE, overrides=overrides)
    stepped_s = time.perf_counter() - t0
    run_s = (benchmark.stats.stats.median if not benchmark.disabled
             else statistics.median(_times(lambda: cmsim.run(BASELINE, overrides=overrides),
                                           3)))
    ratio = stepped_s / run_s
    benchmark.extra_info.update(hours=hours, stepped_s=stepped_s, monitored_run_s=run_s,
                                speedup_vs_stepped=ratio, target_speedup=50.0,
                                meets_target=ratio >= 50.0)
    print(f"\n{hours} h monitored run: {run_s * 1e3:.1f} ms, stepped bare line "
          f"{stepped_s:.2f} s, ratio {ratio:.0f}x")


@pytest.mark.benchmark(group="line")
def test_baseline_8h(benchmark):
    overrides = ["simulation.duration=30 min"] if benchmark.disabled else None
    result = benchmark(cmsim.run, BASELINE, overrides=overrides)
    assert result.mass_balance_max_rel_error < 1e-9
    benchmark.extra_info.update(hours=result.n_ticks * result.dt / 3600,
                                events=len(result.event_log))


def _times(fn, repeats):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out
