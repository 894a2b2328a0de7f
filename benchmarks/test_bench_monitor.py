"""PAT monitor overhead: an 8 h run with the monitor vs the same run without it.

The monitor is the line-state monitor with the default ``risk`` policy: plant instruments
(load cells at 1 s, NIR), the estimator's own blender and press, the NIR Kalman update, the
risk, the diversion plan and the state of control. Target (issue "PAT monitor v2", item 7):
with / without <= 1.3 on the shipped 8 h baseline. **Missed.**

Two configurations, timed interleaved in the same process (medians of repeats, after a
warm-up):

``shipped``
    the shipped baseline scenario as it is (NIR with 2.5 % of target noise, load cells with
    0.1 g noise at 1 s, ``[diversion]``): the issue's "8 h run".
``all_on``
    a stress configuration: Shewhart, EWMA and CUSUM on the innovations, NIR dropouts,
    noisier load cells.

Both ratios go into ``extra_info`` with ``meets_target``. The ratio gate (``perfgate``, run on
demand with ``-m perfgate``) asserts the shipped ratio with a 1.5x margin over the target
(<= 1.95). With ``--benchmark-disable`` (CI smoke run) the horizon is 30 min and nothing is
gated (start-up costs dominate short runs).

Measured (2-core machine, load 1.3): shipped 1.73x (22.3 vs 12.9 ms); at load 0.9 later the
same day 2.1-2.2x (16.1-16.6 vs 7.5-7.8 ms: the bare line ran faster, the monitor's ~8.5 ms did
not), with no difference between the code before and after the frozen-NIR check and the second
risk estimate. all_on 2.71x before the charts' restart fix and about 2.5x after it. Where the
~9 ms of the shipped monitor go (load 0.9): estimator ~3.0 ms (NIR update 0.85, which is
sequential: each reading's update waits on the one before; mass-tracking inflow kernel 0.5;
gate kernel 0.3; its own blender and press ~0.6; reading times 0.16), plant instruments ~2.6 ms
(load cells 1.4, of which ~0.95 are the 86,400 normal draws of the weighing noise; NIR 0.6 plus
the probe fraction ~0.25), state of control ~1.0 ms, set-up ~0.7 ms, diversion records 0.34 ms,
signals and expected escapes ~0.25 ms, risk, phases and per-chunk copies ~0.4 ms. The noise
draws, the sequential Kalman update and the estimator's copy of the line alone take about 2.6
ms, and every further pass over the 28,800 ticks about 0.3 ms: 1.3x (3.9 ms over a 12.9 ms
line) is at the floor of this design, not within reach of tuning. The 24 h monitored run stays
76-108x faster than the stepped reference (``test_bench_line.py``; target 50x).
"""

from __future__ import annotations

import os
import statistics
import time

import pytest

import cmsim
from cmsim.config import load_scenario

BASELINE = "scenarios/baseline.toml"
TARGET = 1.3
MARGIN = 1.5


def _shipped(hours: float) -> dict:
    return load_scenario(BASELINE, overrides=[f"simulation.duration={hours} h"]).to_dict()


def _all_on(hours: float) -> dict:
    d = _shipped(hours)
    # a monitor doing everything it can: charts, noisy sensors, dropouts, load cells
    d["pat"].update(noise_sd=0.0025, dropout_probability=0.01)
    d["monitor"] = {"ewma": True, "cusum": True, "shewhart": True, "load_cell_noise": 1e-4}
    return d


def _interleaved(d: dict, repeats: int) -> tuple[float, float]:
    """Median wall times [s] with and without the monitor, runs alternating."""
    cmsim.run(d, monitor=True)  # warm-up (numba caches, imports, RTD caches)
    cmsim.run(d, monitor=False)
    on, off = [], []
    for _ in range(repeats):
        for flag, store in ((False, off), (True, on)):
            t0 = time.perf_counter()
            cmsim.run(d, monitor=flag)
            store.append(time.perf_counter() - t0)
    return statistics.median(on), statistics.median(off)


def _record(benchmark, name: str, hours: float, with_s: float, without_s: float) -> float:
    ratio = with_s / without_s
    benchmark.extra_info.update({
        f"{name}_with_monitor_s": with_s, f"{name}_without_monitor_s": without_s,
        f"{name}_ratio": ratio, f"{name}_meets_target": ratio <= TARGET,
        f"{name}_overhead_ms_per_h": (with_s - without_s) * 1e3 / hours})
    print(f"\n{name}, {hours} h: with monitor {with_s * 1e3:.1f} ms, without "
          f"{without_s * 1e3:.1f} ms, ratio {ratio:.2f} (target {TARGET})")
    return ratio


@pytest.mark.benchmark(group="monitor")
def test_monitor_overhead_8h(benchmark):
    hours = 0.5 if benchmark.disabled else 8.0
    repeats = 1 if benchmark.disabled else 15
    d = _shipped(hours)
    cmsim.run(d, monitor=True)
    result = benchmark(cmsim.run, d)
    assert result.summary()["tablets"]["produced"] > 0
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    benchmark.extra_info.update(hours=hours, target_ratio=TARGET, repeats=repeats,
                                load_avg_1_5_15=list(load))
    for name, scen in (("shipped", d), ("all_on", _all_on(hours))):
        with_s, without_s = _interleaved(scen, repeats)
        _record(benchmark, name, hours, with_s, without_s)
        assert with_s > 0.0 and without_s > 0.0


@pytest.mark.perfgate
def test_monitor_overhead_gate():
    """The shipped 8 h run with its monitor within 1.5x of the 1.3 target ratio."""
    with_s, without_s = _interleaved(_shipped(8.0), 7)
    assert with_s / without_s <= TARGET * MARGIN, (with_s, without_s)
