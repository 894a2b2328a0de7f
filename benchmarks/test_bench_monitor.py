"""PAT monitor overhead: an 8 h run with the monitor vs the same run without it.

Target (issue 5): the monitor adds no more than 30 % to the wall time of an 8 h run. The ratio
(with / without, medians of interleaved repeats) goes into ``extra_info`` together with
``meets_target``; it is recorded, not asserted (the target is not met yet: see the comment in
the test). With
``--benchmark-disable`` (CI smoke run) the horizon is shortened to 30 min and the ratio is only
recorded, not gated (start-up costs dominate short runs).
"""

from __future__ import annotations

import statistics
import time

import pytest

import cmsim
from cmsim.config import load_scenario

BASELINE = "scenarios/baseline.toml"


def _scenario(hours: float) -> dict:
    d = load_scenario(BASELINE, overrides=[f"simulation.duration={hours} h"]).to_dict()
    # a monitor doing everything it can: charts, noisy sensors, dropouts, load cells, weights
    d["pat"].update(noise_sd=0.0025, dropout_probability=0.01)
    d["monitor"] = {"ewma": True, "cusum": True, "shewhart": True, "load_cell_noise": 1e-4,
                    "tablet_weight_rsd": 0.01}
    return d


def _interleaved(d: dict, repeats: int) -> tuple[float, float]:
    on, off = [], []
    for _ in range(repeats):
        for flag, store in ((False, off), (True, on)):
            t0 = time.perf_counter()
            cmsim.run(d, monitor=flag)
            store.append(time.perf_counter() - t0)
    return statistics.median(on), statistics.median(off)


@pytest.mark.benchmark(group="monitor")
def test_monitor_overhead_8h(benchmark):
    hours = 0.5 if benchmark.disabled else 8.0
    d = _scenario(hours)
    cmsim.run(d, monitor=True)  # warm-up (numba caches, imports)
    result = benchmark(cmsim.run, d)
    assert result.summary()["tablets"]["produced"] > 0
    with_s, without_s = _interleaved(d, 1 if benchmark.disabled else 3)
    ratio = with_s / without_s
    benchmark.extra_info.update(hours=hours, with_monitor_s=with_s, without_monitor_s=without_s,
                                ratio=ratio, target_ratio=1.3, meets_target=ratio <= 1.3,
                                overhead_ms_per_h=(with_s - without_s) * 1e3 / hours)
    print(f"\n{hours} h: with monitor {with_s:.3f} s, without {without_s:.3f} s, "
          f"ratio {ratio:.2f}")
    # Not gated: the bare 8 h line runs in ~10 ms (one chunk), so the 30 % target leaves ~3 ms
    # for the whole monitor including its fixed set-up; measured ratio ~3.3 (see the report).
    assert with_s > 0.0 and without_s > 0.0
