"""Sweep benchmarks: throughput of a 2-worker Dask LocalCluster and a 2-process pool against
serial on 1 h cases, the per-task overhead, the per-case metric cost, and memory per simulated
hour.

``pytest benchmarks/test_bench_sweep.py --benchmark-only -s`` prints the figures of the README
section "Sweeps at scale"; ``-m perfgate`` asserts the targets (>= 1.7x serial with 2 Dask
workers, task overhead < 5 % of compute). With ``--benchmark-disable`` (CI smoke run) every body
runs once on a few short cases and checks its tables only.
"""

from __future__ import annotations

import os
import pickle
import statistics
import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest

import cmsim
from cmsim.config import load_scenario
from cmsim.sweep.metrics import case_metrics

SCEN = "scenarios/api_feeder_stop.toml"  # noisy NIR, diversion: a monitor study's case
GRID = {"pat.noise_sd": [0.002, 0.004]}


def _scenario(hours: float):
    return load_scenario(SCEN, overrides=[f"simulation.duration={hours} h"])


def _load() -> str:
    return "load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg())


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


@pytest.fixture(scope="module")
def figures(request) -> dict:
    """Serial, 2-process pool and 2-worker Dask LocalCluster on the same cases, timed in
    alternating rounds (each ratio within one round)."""
    distributed = pytest.importorskip("distributed", reason="needs pip install 'cmsim[dask]'")
    disabled = request.config.getoption("benchmark_disable", False)
    hours, reps, rounds = (0.1, 4, 1) if disabled else (1.0, 300, 3)
    sc = _scenario(hours)
    kw = {"replicates": reps, "grid": GRID, "seed": 1}
    out: dict = {"hours": hours, "cases": reps * 2, "rounds": rounds, "load_before": _load()}
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        cmsim.sweep(sc, replicates=2, grid=GRID, executor=client)  # start and warm the workers
        serial_s, dask_s, pool_s, overhead = [], [], [], []
        for _ in range(rounds):
            t, serial = _timed(lambda: cmsim.sweep(sc, **kw))
            serial_s.append(t)
            t, on_dask = _timed(lambda: cmsim.sweep(sc, executor=client, **kw))
            dask_s.append(t)
            t, pooled = _timed(lambda: cmsim.sweep(sc, workers=2, **kw))
            pool_s.append(t)
            pd.testing.assert_frame_equal(serial, on_dask, check_exact=True)
            pd.testing.assert_frame_equal(serial, pooled, check_exact=True)
            info = on_dask.run_info
            sizes = info["chunk_sizes"]
            chunk_compute = statistics.median(sizes) * info["case_seconds_median"]
            overhead.append(info["task_overhead_s"] / chunk_compute)
        out.update(
            serial_s=serial_s, dask_s=dask_s, pool_s=pool_s,
            dask_ratio=statistics.median(s / d for s, d in zip(serial_s, dask_s, strict=True)),
            pool_ratio=statistics.median(s / p for s, p in zip(serial_s, pool_s, strict=True)),
            serial_case_ms=1e3 * statistics.median(serial_s) / out["cases"],
            worker_case_ms=1e3 * info["case_seconds_median"],
            task_overhead_ms=1e3 * info["task_overhead_s"],
            chunk_sizes=sizes, overhead_fraction=statistics.median(overhead),
            load_after=_load())
    finally:
        client.close()
        cluster.close()
    return out


@pytest.mark.benchmark(group="sweep")
def test_sweep_dask_and_pool_vs_serial(benchmark, figures):
    sc = _scenario(figures["hours"])
    benchmark.pedantic(cmsim.sweep, args=(sc,), kwargs={"replicates": 2, "grid": GRID},
                       rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in figures.items() if k != "chunk_sizes"})
    print(f"\n{figures['cases']} cases of {figures['hours']} h ({figures['rounds']} rounds; "
          f"{figures['load_before']} before, {figures['load_after']} after): serial "
          f"{figures['serial_case_ms']:.2f} ms/case; Dask 2 workers {figures['dask_ratio']:.2f}x "
          f"serial; process pool 2 workers {figures['pool_ratio']:.2f}x; per case on a worker "
          f"{figures['worker_case_ms']:.2f} ms; empty-task round trip "
          f"{figures['task_overhead_ms']:.2f} ms = {100 * figures['overhead_fraction']:.2f} % of "
          f"a chunk's compute; chunk sizes {figures['chunk_sizes']}")
    assert figures["dask_ratio"] > 0 and figures["overhead_fraction"] > 0


@pytest.mark.perfgate
def test_dask_two_workers_reach_1_7x_serial_with_overhead_below_5_percent(figures):
    assert figures["dask_ratio"] >= 1.7, figures
    assert figures["overhead_fraction"] < 0.05, figures


def _metrics_with_summary(result) -> dict[str, float]:
    """The tablet counts as the sweep read them before: through summary() (hash chain)."""
    tab = result.summary()["tablets"]
    return {"escapes": tab["nonconforming_accepted"], "waste": tab["conforming_diverted"]}


@pytest.mark.benchmark(group="sweep")
def test_case_metrics_cost_per_case(benchmark):
    hours = 0.1 if benchmark.disabled else 1.0
    sc = _scenario(hours)
    result = cmsim.run(sc, seed=3)

    def fresh_summary():
        result._cache.clear()
        return _metrics_with_summary(result)

    def fresh_metrics():
        result._cache.clear()
        return case_metrics(result)

    assert fresh_metrics()["escapes"] == fresh_summary()["escapes"]
    reps = 3 if benchmark.disabled else 50
    t_run = statistics.median(_timed(lambda: cmsim.run(sc, seed=3))[0] for _ in range(5))
    t_before = statistics.median(_timed(fresh_summary)[0] for _ in range(reps))
    benchmark(fresh_metrics)
    if benchmark.disabled:
        t_after = statistics.median(_timed(fresh_metrics)[0] for _ in range(reps))
    else:
        t_after = benchmark.stats.stats.median
    events = len(result.event_log)
    benchmark.extra_info.update(run_ms=1e3 * t_run, before_ms=1e3 * t_before,
                                after_ms=1e3 * t_after, events=events)
    print(f"\nper case ({hours} h, {events} events): run {1e3 * t_run:.2f} ms; tablet metrics "
          f"through summary() {1e3 * t_before:.3f} ms, case_metrics {1e3 * t_after:.3f} ms "
          f"(all KPIs, no hash chain)")


@pytest.mark.benchmark(group="sweep")
def test_memory_per_simulated_hour(benchmark):
    """Peak Python heap of one run (tracemalloc) and the size of its pickled result, at 1 h and
    4 h with dt = 1 s: the slope is the memory per simulated hour."""
    hours = (0.1, 0.2) if benchmark.disabled else (1.0, 4.0)
    peaks, sizes = [], []
    for h in hours:
        sc = load_scenario(SCEN, overrides=[f"simulation.duration={h} h",
                                            "simulation.dt=1 s"])
        cmsim.run(sc)  # compiled, caches filled
        tracemalloc.start()
        result = cmsim.run(sc, seed=1)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        sizes.append(len(pickle.dumps(result)))
    benchmark.pedantic(lambda: None, rounds=1)
    dh = hours[1] - hours[0]
    peak_mb_h = (peaks[1] - peaks[0]) / dh / 1e6
    result_mb_h = (sizes[1] - sizes[0]) / dh / 1e6
    benchmark.extra_info.update(peak_mb_per_h=peak_mb_h, result_mb_per_h=result_mb_h,
                                peak_mb_1=peaks[0] / 1e6, peaks_hours=list(hours))
    print(f"\nmemory at dt = 1 s: peak heap {peaks[0] / 1e6:.1f} MB at {hours[0]} h, "
          f"{peaks[1] / 1e6:.1f} MB at {hours[1]} h: {peak_mb_h:.2f} MB per simulated hour; "
          f"pickled result {result_mb_h:.2f} MB per hour")
    assert peak_mb_h > 0 and result_mb_h > 0
    assert np.isfinite(peak_mb_h)


def _run_ms(sc, seeds: range) -> float:
    """Median wall time of one ``cmsim.run`` of ``sc`` over ``seeds`` [ms]."""
    return 1e3 * statistics.median(_timed(lambda s=s: cmsim.run(sc, seed=s))[0]
                                   for s in seeds)


@pytest.mark.benchmark(group="sweep")
def test_run_cost_split_fixed_and_per_tick(benchmark):
    """What a batched replicate path could save: one run's cost split into a part fixed per
    run (set-up, Python calls per chunk, the result) and a part per tick (kernels, random
    draws, every pass over the tick arrays), from runs of ``faults/no_fault`` at several
    durations (dt = 0.5 s, least squares). Replicates run together can share at most the fixed
    part; the per-tick work stays per replicate, so the fixed share bounds the speed-up of
    batching on one core."""
    hours = (0.05, 0.1) if benchmark.disabled else (0.25, 0.5, 1.0, 2.0, 4.0)
    seeds = range(2) if benchmark.disabled else range(15)
    ticks, ms = [], []
    for h in hours:
        sc = load_scenario("scenarios/faults/no_fault.toml",
                           overrides=[f"simulation.duration={h} h"])
        cmsim.run(sc, seed=0)  # compiled, caches filled
        ticks.append(sc.n_ticks)
        ms.append(_run_ms(sc, seeds))
    benchmark.pedantic(lambda: None, rounds=1)
    per_tick_ms, fixed_ms = np.polyfit(np.array(ticks, float), np.array(ms), 1)
    n_1h = 7200
    total_1h = fixed_ms + per_tick_ms * n_1h
    ceiling = total_1h / (per_tick_ms * n_1h)
    benchmark.extra_info.update(hours=list(hours), ms=ms, fixed_ms=fixed_ms,
                                per_tick_us=1e3 * per_tick_ms, ceiling_1h=ceiling,
                                load=_load())
    print(f"\none run of faults/no_fault ({_load()}): "
          + ", ".join(f"{h} h {m:.2f} ms" for h, m in zip(hours, ms, strict=True))
          + f"; fit: {fixed_ms:.2f} ms per run + {1e3 * per_tick_ms:.3f} us per tick; at 1 h "
          f"{total_1h:.2f} ms, of which {100 * fixed_ms / total_1h:.0f} % fixed: batching "
          f"replicates gains at most {ceiling:.2f}x per core")
    assert all(np.isfinite(ms)) and min(ms) > 0
