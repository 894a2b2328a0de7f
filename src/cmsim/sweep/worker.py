"""What runs on a worker: one chunk of (case, replicate) jobs of a sweep.

A :class:`SweepContext` holds everything the jobs share (the scenario, the overrides per case,
the root seed, the user's metrics); it goes to a worker once (a pool initializer or a Dask
broadcast) or, for an executor cmsim does not own, with each chunk (cut to the chunk's cases).
A worker resolves each case's scenario once and keeps it (:func:`case_scenario`).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cmsim.sweep.metrics import MetricSpec, evaluate

__all__ = ["FIXED_COLUMNS", "ChunkResult", "SweepContext", "case_scenario", "init_worker",
           "noop", "rows_to_arrow", "run_chunk", "run_job", "warm_up"]

#: Contexts installed by :func:`init_worker` in this process, by key.
_INSTALLED: dict[str, SweepContext] = {}
#: Resolved case scenarios of this process, by (context key, case) (least recently used out).
_SCENARIOS: OrderedDict[tuple[str, int], Any] = OrderedDict()
_SCENARIO_CACHE_SIZE = 256
#: Keys of the contexts whose kernels this process has warmed.
_WARMED: set[str] = set()


@dataclass
class SweepContext:
    """What every job of a sweep shares.

    Parameters
    ----------
    key : str
        The sweep definition's SHA-256 (names the context in worker caches).
    scenario : cmsim.config.Scenario
        The validated base scenario.
    overrides : dict of int to list of str
        ``path=value`` overrides per case index.
    seed : int
        Root seed; replicate ``r`` runs with ``SeedSequence(seed, spawn_key=(r,))``, which is
        ``SeedSequence(seed).spawn(R)[r]``.
    metrics : mapping or callable, optional
        User metrics (:func:`cmsim.sweep.metrics.evaluate`).
    keep : callable, optional
        ``keep(row) -> bool`` on the row dict (``case``, ``replicate`` and the metrics): return
        the case's result with the chunk.
    """

    key: str
    scenario: Any
    overrides: dict[int, list[str]]
    seed: int
    metrics: MetricSpec | None = None
    keep: Callable[[Mapping[str, Any]], bool] | None = None

    def for_cases(self, cases: Sequence[int]) -> SweepContext:
        """A copy that only holds the overrides of ``cases`` (what one chunk needs)."""
        return replace(self, overrides={c: self.overrides[c] for c in set(cases)})


#: Columns of every chunk table besides the metrics.
FIXED_COLUMNS = ("case", "replicate", "error_type", "error_message")


def rows_to_arrow(rows: list[dict[str, Any]]) -> Any:
    """One chunk's rows as a pyarrow Table: case, replicate (int64), the metrics (float64),
    error_type, error_message (string)."""
    import pyarrow as pa  # noqa: PLC0415

    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(k for k in row if k not in FIXED_COLUMNS))
    cols = {"case": pa.array([r["case"] for r in rows], pa.int64()),
            "replicate": pa.array([r["replicate"] for r in rows], pa.int64())}
    for name in names:
        cols[name] = pa.array([r.get(name, float("nan")) for r in rows], pa.float64())
    for name in ("error_type", "error_message"):
        cols[name] = pa.array([r.get(name) for r in rows], pa.string())
    return pa.table(cols)


@dataclass
class ChunkResult:
    """What a chunk sends back.

    Parameters
    ----------
    table : pyarrow.Table
        One row per job (:func:`rows_to_arrow`), built on the worker.
    seconds : list of float
        Compute time per job on the worker [s].
    kept : dict
        ``{(case, replicate): SimulationResult}`` for the jobs ``keep`` selected.
    """

    table: Any
    seconds: list[float]
    kept: dict[tuple[int, int], Any]

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]], seconds: list[float],
                  kept: dict[tuple[int, int], Any]) -> ChunkResult:
        """From row dicts (``case``, ``replicate``, metrics, ``error_type``,
        ``error_message``)."""
        return cls(rows_to_arrow(rows), seconds, kept)


def case_scenario(ctx: SweepContext, case: int) -> Any:
    """The validated scenario of ``case`` (base + overrides), resolved once per process."""
    from cmsim.config import load_scenario  # noqa: PLC0415

    key = (ctx.key, case)
    sc = _SCENARIOS.get(key)
    if sc is None:
        ov = ctx.overrides[case]
        sc = load_scenario(ctx.scenario, overrides=ov or None)
        _SCENARIOS[key] = sc
        if len(_SCENARIOS) > _SCENARIO_CACHE_SIZE:
            _SCENARIOS.popitem(last=False)
    else:
        _SCENARIOS.move_to_end(key)
    return sc


def run_job(ctx: SweepContext, case: int, replicate: int
            ) -> tuple[dict[str, Any], Any | None]:
    """Run one case x replicate; an exception becomes the row's error.

    Returns
    -------
    (dict, SimulationResult or None)
        The row, and the result when ``ctx.keep`` selects it.
    """
    from cmsim.api import run  # noqa: PLC0415

    row: dict[str, Any] = {"case": case, "replicate": replicate}
    try:
        seed = np.random.SeedSequence(ctx.seed, spawn_key=(replicate,))
        result = run(case_scenario(ctx, case), seed=seed)
        row.update(evaluate(result, ctx.metrics))
        kept = result if ctx.keep is not None and ctx.keep(dict(row)) else None
    except Exception as exc:  # noqa: BLE001 - a failing case becomes a row, the sweep goes on
        row.update(error_type=type(exc).__name__, error_message=str(exc))
        return row, None
    row.update(error_type=None, error_message=None)
    return row, kept


def run_chunk(ctx: SweepContext | str, jobs: Sequence[tuple[int, int]]) -> ChunkResult:
    """Run the ``(case, replicate)`` jobs of one chunk in order.

    Parameters
    ----------
    ctx : SweepContext or str
        The context, or the key of one installed by :func:`init_worker`.
    jobs : sequence of (int, int)
    """
    if isinstance(ctx, str):
        ctx = _INSTALLED[ctx]
    if ctx.key not in _WARMED:
        warm_up(ctx)
    rows, seconds, kept = [], [], {}
    for case, replicate in jobs:
        t0 = time.perf_counter()
        row, result = run_job(ctx, int(case), int(replicate))
        seconds.append(time.perf_counter() - t0)
        rows.append(row)
        if result is not None:
            kept[(int(case), int(replicate))] = result
    return ChunkResult.from_rows(rows, seconds, kept)


def warm_up(ctx: SweepContext | str) -> float:
    """Compile (or load from the numba cache) the kernels of the sweep's scenario here.

    Runs the first case for a few ticks. Returns its wall time [s].
    """
    from cmsim.api import run  # noqa: PLC0415

    if isinstance(ctx, str):
        ctx = _INSTALLED[ctx]
    t0 = time.perf_counter()
    if ctx.key not in _WARMED:
        _single_thread()
        sc = case_scenario(ctx, min(ctx.overrides))
        try:
            short = max(20.0 * float(sc.simulation.dt), 1.0)
            run(sc, seed=0, overrides=[f"simulation.duration={short} s"])
        except Exception:  # noqa: BLE001, S110 - the real case will report what fails
            pass
        _WARMED.add(ctx.key)
    return time.perf_counter() - t0


def _single_thread() -> None:
    """One numba thread per worker (a sweep is parallel across processes, not inside a case),
    and the allocator policy of :func:`cmsim._alloc.tune_allocator` (large freed blocks stay in
    the heap: no page faults per case on a KVM guest)."""
    from cmsim._alloc import tune_allocator  # noqa: PLC0415

    tune_allocator()
    try:
        import numba  # noqa: PLC0415

        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass


def noop() -> None:
    """An empty task (measures the round trip of one task through an executor)."""


def init_worker(ctx: SweepContext) -> None:
    """Initializer of the worker processes of a pool cmsim owns.

    Installs the context (sent once per process), ignores SIGINT (the parent handles Ctrl-C
    and ends the workers), asks Linux to end this process when its parent dies, and warms the
    numba kernels.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    _INSTALLED[ctx.key] = ctx
    warm_up(ctx)


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes  # noqa: PLC0415

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() == 1:  # the parent already died before the prctl call
            os._exit(1)
    except (OSError, AttributeError):
        pass
