"""Benchmark session setup: allocator policy, thread counts, seeds, numba JIT warm-up.

Run the suite with ``pytest benchmarks --benchmark-only`` (add ``--benchmark-autosave`` to keep
history). CI smoke-runs it with ``pytest benchmarks --benchmark-disable``: every benchmark body
then runs once as a plain test (with reduced sizes where a full size would only cost time) and
checks its result. Ratio gates are marked ``perfgate`` and only run when selected explicitly with
``-m perfgate``.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable

import numpy as np
import pytest

SEED = 20240601


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``perfgate`` tests unless the marker expression asks for them."""
    if "perfgate" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="ratio gate: run on demand with -m perfgate")
    for item in items:
        if "perfgate" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _bench_session() -> None:
    """Allocator policy, thread count for scipy.fft, and a warm numba JIT for every kernel."""
    from cmsim._alloc import tune_allocator

    tune_allocator()
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    warm_numba()


def warm_numba() -> None:
    """Compile (or load from the cache) every kernel the benchmarks use, outside the timings."""
    from cmsim.rtd import filters
    from cmsim.rtd.convolution import Convolver, convolve

    rng = np.random.default_rng(0)
    x = rng.random(1000)
    convolve(x, rng.random(50), method="direct")
    convolve(rng.random((2, 1000)), rng.random(50), method="direct")
    Convolver(rng.random(50)).step(x)
    for n in (5, 3):
        filters.TanksInSeriesFilter(60.0, n, 1.0).step(x)
        filters.TanksInSeriesFilter(60.0, n, 1.0).step(rng.random((2, 100)))
        big = rng.random((filters.PARALLEL_MIN_ROWS,
                          filters.PARALLEL_MIN_SAMPLES // filters.PARALLEL_MIN_ROWS))
        filters.TanksInSeriesFilter(60.0, n, 1.0).step(big)


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator per test."""
    return np.random.default_rng(SEED)


def median_time(fn: Callable[[], object], repeats: int = 7) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls [s] (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_rounds(
    candidate: Callable[[], object],
    baselines: dict[str, Callable[[], object]],
    repeats: int = 5,
    rounds: int = 3,
) -> dict[str, list[float]]:
    """Per-round median times [s] of a candidate and its baselines, timed in alternation.

    Each round times the candidate and every baseline once, ``repeats`` times over (in a shuffled
    order), and keeps the median per function; a ratio is then formed *within* a round, so slow
    drifts of a shared machine hit numerator and denominator alike. When the fastest function is
    short, every function is called several times per sample (the same count for all, so that
    the fastest takes about 2 ms per sample). Returns
    ``{"candidate": [t_round0, ...], name: [...], ...}``.
    """
    fns = {"candidate": candidate, **baselines}
    inner: dict[str, int] = {}
    for name, fn in fns.items():
        fn()
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        inner[name] = max(1, min(1000, int(2e-3 / max(first, 1e-9))))
    # one common count (that of the fastest function), so that every function is timed under the
    # same conditions (back-to-back calls reuse warm caches and freed memory alike)
    common = max(inner.values())
    inner = dict.fromkeys(fns, common)
    out: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    order_rng = random.Random(SEED)
    for _ in range(rounds):
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(repeats):
            # a fresh (seeded) order per repeat: no function always runs first or after the same
            # one (a predecessor that evicts the caches or the freed memory biases a timing)
            order_rng.shuffle(names)
            for name in names:
                fn = fns[name]
                reps = inner[name]
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn()
                times[name].append((time.perf_counter() - t0) / reps)
        for name, ts in times.items():
            out[name].append(statistics.median(ts))
    return out


def interleaved(
    candidate: Callable[[], object],
    baselines: dict[str, Callable[[], object]],
    repeats: int = 7,
) -> dict[str, float]:
    """Median times [s] of a candidate and its baselines, timed in alternation in one process.

    One round of :func:`interleaved_rounds`. Returns ``{"candidate": t, name: t, ...}``.
    """
    return {name: ts[0]
            for name, ts in interleaved_rounds(candidate, baselines, repeats, 1).items()}


def ratio_summary(ratios: list[float], lower_is_better: bool = True) -> dict[str, float]:
    """Median and best of per-round ratios (best = min when lower is better, else max)."""
    best = min(ratios) if lower_is_better else max(ratios)
    return {"median": statistics.median(ratios), "best": best}


@pytest.fixture
def timing() -> dict[str, Callable]:
    """The timing helpers (``median_time``, ``interleaved``) for the benchmark modules."""
    return {"median_time": median_time, "interleaved": interleaved,
            "interleaved_rounds": interleaved_rounds}
