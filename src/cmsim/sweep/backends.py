"""Where the chunks of a sweep run: a pool cmsim owns, any Executor, or a Dask cluster.

Each backend submits one chunk (:func:`cmsim.sweep.worker.run_chunk`) and returns a
:class:`concurrent.futures.Future`. They differ in how the shared :class:`SweepContext` reaches
the workers:

- :class:`OwnPool` (``workers=K``): a ``spawn`` process pool whose initializer installs the
  context once per process and warms the numba kernels; on an interrupt the worker processes are
  terminated (none is left behind).
- :class:`DaskBackend` (a ``distributed.Client`` or its ``get_executor()``): the context is
  broadcast once to every worker (``client.scatter(..., broadcast=True)``) and each worker runs
  one warm-up task before the first chunk; chunks are submitted with ``pure=False`` (no hashing
  of arguments).
- :class:`ExecutorBackend` (any other ``concurrent.futures.Executor``): the context, cut to the
  chunk's cases, goes with each chunk; pending chunks are cancelled on an interrupt (shutting the
  executor down is left to its owner).

:class:`ChunkSizer` chooses the cases per chunk from the measured per-case compute time and the
measured round trip of an empty task.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from typing import Any

from cmsim.sweep import worker
from cmsim.sweep.worker import SweepContext

__all__ = ["MAX_OVERHEAD", "ChunkSizer", "DaskBackend", "ExecutorBackend", "OwnPool",
           "dask_client", "make_backend"]

#: Largest share of a chunk's compute time the per-task round trip may cost [-].
MAX_OVERHEAD = 0.05


class ChunkSizer:
    """Cases per chunk.

    ``size = max(1, floor, min(target, balance))`` with ``floor = ceil(overhead / (0.05 t))``
    (the task round trip stays below 5 % of the chunk's compute), ``target = ceil(task_seconds
    / t)`` (chunks of about ``task_seconds`` [s]: few tasks for the scheduler, little work lost
    on a hard kill) and ``balance = ceil(remaining / (2 slots))`` (at least two chunks per slot
    while enough cases remain), where ``t`` is the median compute time per case measured so
    far [s]. Before the first measurement chunks hold one case.

    Parameters
    ----------
    slots : int
        Tasks that run at once (worker processes or threads).
    overhead_s : float
        Round trip of an empty task [s].
    task_seconds : float
        Target compute time per chunk [s].
    """

    def __init__(self, slots: int, overhead_s: float, task_seconds: float) -> None:
        self.slots = max(1, int(slots))
        self.overhead_s = float(overhead_s)
        self.task_seconds = float(task_seconds)
        self._seconds: deque[float] = deque(maxlen=2000)

    def observe(self, seconds: Sequence[float]) -> None:
        """Record per-case compute times [s]."""
        self._seconds.extend(float(s) for s in seconds)

    @property
    def case_seconds(self) -> float | None:
        """Median compute time per case so far [s] (None before any)."""
        return statistics.median(self._seconds) if self._seconds else None

    def size(self, remaining: int) -> int:
        """Cases for the next chunk, ``remaining`` cases being left."""
        t = self.case_seconds
        if t is None or t <= 0.0:
            return 1
        floor = math.ceil(self.overhead_s / (MAX_OVERHEAD * t))
        target = math.ceil(self.task_seconds / t)
        balance = math.ceil(remaining / (2 * self.slots))
        return max(1, floor, min(target, balance))


def _round_trip(submit: Any, repeats: int = 5) -> float:
    """Median round trip [s] of an empty task (after one untimed task that starts workers)."""
    submit(worker.noop).result()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        submit(worker.noop).result()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class OwnPool:
    """A ``spawn`` process pool of ``workers`` processes, owned and ended by the sweep."""

    kind = "processes"

    def __init__(self, workers: int, ctx: SweepContext) -> None:
        import multiprocessing  # noqa: PLC0415
        from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

        self.slots = int(workers)
        self.ctx_key = ctx.key
        self.executor = ProcessPoolExecutor(
            max_workers=self.slots, mp_context=multiprocessing.get_context("spawn"),
            initializer=worker.init_worker, initargs=(ctx,))
        self.describe = f"{self.slots} worker processes"

    def measure_overhead(self) -> float:
        return _round_trip(self.executor.submit)

    def submit(self, jobs: list[tuple[int, int]]) -> Future:
        return self.executor.submit(worker.run_chunk, self.ctx_key, jobs)

    def close(self, interrupted: bool) -> None:
        """Shut the pool down; after an interrupt, terminate the workers first."""
        if interrupted:
            procs = list((getattr(self.executor, "_processes", None) or {}).values())
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(5.0)
                if p.is_alive():
                    p.kill()
                    p.join(1.0)
        self.executor.shutdown(wait=True, cancel_futures=True)


class ExecutorBackend:
    """Any ``concurrent.futures.Executor`` the caller owns."""

    kind = "executor"

    def __init__(self, executor: Executor, ctx: SweepContext) -> None:
        self.executor = executor
        self.ctx = ctx
        self.slots = int(getattr(executor, "_max_workers", None) or os.cpu_count() or 1)
        self.describe = f"{type(executor).__name__} ({self.slots} slots)"

    def measure_overhead(self) -> float:
        return _round_trip(self.executor.submit)

    def submit(self, jobs: list[tuple[int, int]]) -> Future:
        ctx = self.ctx.for_cases([c for c, _ in jobs])
        return self.executor.submit(worker.run_chunk, ctx, jobs)

    def close(self, interrupted: bool) -> None:
        """Nothing to end: the caller owns the executor (pending chunks are cancelled by the
        caller of :meth:`submit`)."""


def dask_client(executor: Any) -> Any | None:
    """The ``distributed.Client`` behind ``executor`` (a Client or its ``get_executor()``), or
    None when ``executor`` is no Dask object."""
    module = type(executor).__module__ or ""
    if not module.startswith("distributed"):
        return None
    if hasattr(executor, "scatter") and hasattr(executor, "get_executor"):
        return executor
    client = getattr(executor, "_client", None)  # distributed.cfexecutor.ClientExecutor
    return client if client is not None and hasattr(client, "scatter") else None


class DaskBackend:
    """A Dask cluster: the context is broadcast once per worker, each worker warms once."""

    kind = "dask"

    def __init__(self, client: Any, ctx: SweepContext) -> None:
        self.client = client
        self.executor = client.get_executor(pure=False)
        self.slots = max(1, sum(client.nthreads().values()))
        self.ctx_future = client.scatter(ctx, broadcast=True, hash=False)
        addresses = list(client.scheduler_info().get("workers", {}))
        warm = [client.submit(worker.warm_up, self.ctx_future, workers=[a],
                              allow_other_workers=False, pure=False) for a in addresses]
        client.gather(warm)
        self.describe = f"Dask at {client.scheduler.address} ({self.slots} threads)"

    def measure_overhead(self) -> float:
        return _round_trip(self.executor.submit)

    def submit(self, jobs: list[tuple[int, int]]) -> Future:
        return self.executor.submit(worker.run_chunk, self.ctx_future, jobs)

    def close(self, interrupted: bool) -> None:
        """Release the broadcast context (cancelled chunks are released by the scheduler)."""
        try:
            self.client.cancel([self.ctx_future])
        except Exception:  # noqa: BLE001, S110 - a closed client has nothing left to release
            pass


def make_backend(executor: Any, workers: int | None, ctx: SweepContext) -> Any:
    """The backend for ``executor`` / ``workers`` (None: run serially in this process)."""
    if workers is not None and workers > 1:
        return OwnPool(workers, ctx)
    if executor is None:
        return None
    client = dask_client(executor)
    if client is not None:
        return DaskBackend(client, ctx)
    return ExecutorBackend(executor, ctx)
