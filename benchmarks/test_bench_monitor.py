"""PAT monitor overhead: an 8 h run with the monitor vs the same run without it.

Since the line-state monitor (cmsim 0.2) the ``shipped`` configuration runs the default
``risk`` policy: plant instruments, the estimator's own blender and press, the NIR Kalman
update, risk and the state of control; ``rules`` runs the rule-based monitor of cmsim 0.1 on
the same scenario for comparison. Target 1.3x, missed.

Latest (all results bit-identical on every shipped scenario and fault, two seeds, and on the
fault benchmark): the estimator's NIR update writes the bookkeeping rows straight into the
press input, the blender and the press write into given arrays, the alignment shift is read
in place by the gate kernel, load-cell noise is drawn in place, feeder discharges are read as
views of the records, and the tanks-in-series coefficients are cached per (n, dt, tau) (which
also speeds up the bare line by ~0.5 ms). The monitor run now takes no page faults (it took
~600-670 per run). Estimator step on the recorded chunk 4.2 -> 3.0 ms. Measured on the
2-core machine, 15-25 interleaved rounds, medians: shipped 1.71x (20.8 vs 12.2 ms) at load
0.9; at load 2.4, alternating processes against the tree before: 1.85-1.87x (overhead
~10.9 ms) vs 1.86-1.90x (~12.0 ms); the bare line got faster too, so the ratio moved less
than the overhead. Where the ~9 ms (load 0.9) go: estimator ~3.0 ms (NIR update 0.85, inflow
kernel 0.5, gate kernel 0.3, its blender and press ~0.6, reading times 0.16), plant
instruments ~2.6 ms (load cells 1.4, of which ~0.95 are the 86,400 normal draws of the
weighing noise; NIR 0.6 plus the probe fraction ~0.25), state of control ~1.0 ms, set-up
~0.7 ms, diversion events 0.34 ms, signals/expected escapes ~0.25 ms, risk, phases and the
per-chunk copies ~0.4 ms. The 24 h monitored run stays ~90x faster than the stepped
reference (test_bench_line.py). The history below concerns the rules monitor.

Target (issue 5): the monitor adds no more than 30 % to the wall time of an 8 h run
(ratio with / without <= 1.3). Two configurations, timed interleaved in the same process
(medians of repeats, after a warm-up):

``shipped``
    the shipped baseline scenario as it is (its ``[pat]`` NIR with 0.25 % noise, its
    ``[diversion]``, the default monitoring rules: specification persistence, soft sensor,
    feeder triggers, load cells at 1 s, tablet weight at 10 s): the issue's "8 h run".
``all_on``
    a stress configuration: every chart, NIR dropouts, noisy load cells and tablet weights.

Both ratios go into ``extra_info`` with ``meets_target``. The ratio gate (``perfgate``, run on
demand with ``-m perfgate``) asserts the shipped ratio with the house's 1.5x margin over the
target (<= 1.95). With ``--benchmark-disable`` (CI smoke run) the horizon is 30 min and nothing
is gated (start-up costs dominate short runs).

Where the time goes (8 h at dt = 1 s, one chunk of 28,800 ticks, the bare line ~11 ms, 2-core
machine, load ~0.6): the monitor costs ~3-3.5 ms: set-up ~0.45 ms, NIR ~0.6 ms (compiled window
means 0.18 ms, noise draws), soft sensor ~0.6 ms (the line RTD as its exact cascade recursion,
0.27 ms for both components), load cells ~0.4 ms (all feeders in two compiled passes over the
sample times, fed with views of the feeder records), tablet weight 0.08 ms, alarm trackers
~0.2 ms, windows and state of control ~0.2 ms, plus the line's record of the blender outlet for
the probe. Much of what is left is first touch of fresh arrays (page faults, ~0.3 ms per MB
here), so the monitor avoids temporaries the size of the chunk. Measured shipped ratios
(medians of 15-25 interleaved rounds, load 0.6): 1.28-1.32 (was ~1.9-2.2 before the compiled
sensors, the recursive soft sensor and the allocation trimming); all_on ~1.8.

Later: the probe reads the line's per-chunk stream (``Line.watch``) instead of a per-tick record
of the blender outlet (results bit-identical), and the monitor detects feed stops (shut-down,
one compiled pass). Interleaved 25-round medians, load ~0.85, against the tree before both
changes in the same session: 1.29-1.38 (paired medians 1.31-1.33) vs 1.31-1.32 before; the
record's cost (~0.7 MB of stores) is below the run-to-run noise of this 2-core machine.

Then (all results bit-identical on every shipped scenario): the load-cell weighings sum up to
four cells in one pass (independent addition chains), the alarm trackers skip runs of good
samples eight flags at a time, the probe API fraction is summed in vectorised blocks, the
start-up qualifier of a run that starts in control is no longer fed, window times skip the
array validation, and a one-model soft sensor flags its prediction in one pass. After warm-up
a run takes no page faults (glibc reuses the freed blocks), so what is left is compute:
soft-sensor recursion ~0.27 ms (throughput-bound), NIR noise draws ~0.15 ms and window means
~0.17 ms, load-cell flow estimates ~0.19 ms, set-up ~0.4 ms, diversion events ~0.2 ms.
Against the tree before these changes, alternating processes, 25 interleaved rounds each,
load 0.7-0.9: shipped ratio 1.26-1.28 (paired 1.25-1.28; overhead ~2.6-3.1 ms) vs 1.30-1.34
(paired 1.31-1.33; ~3.4-3.9 ms) before. Occasional full (generation-2) garbage collections
of ~70 ms land in either kind of run; the medians are robust to them, means are not.
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
    # a monitor doing everything it can: charts, noisy sensors, dropouts, load cells, weights
    d["pat"].update(noise_sd=0.0025, dropout_probability=0.01)
    d["monitor"] = {"ewma": True, "cusum": True, "shewhart": True, "load_cell_noise": 1e-4,
                    "tablet_weight_rsd": 0.01}
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
