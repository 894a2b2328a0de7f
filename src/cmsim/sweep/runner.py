"""``cmsim.sweep.sweep``: seeded Monte Carlo replicates over a grid of scenario overrides.

Seeding: replicate ``r`` of *every* grid case runs with ``SeedSequence(seed).spawn(R)[r]``
(common random numbers: cases differ only by their parameters, which sharpens comparisons
between cases). Each run is :func:`cmsim.run` of the case's scenario, so a row is reproduced with
``cmsim.run(scenario, seed=SeedSequence(seed).spawn(R)[r], overrides=...)``.

Jobs (case x replicate, numbered ``j = case * R + r``) run in chunks, serially here or on
workers; rows are collected by job, never in completion order, so the table does not depend on
where the cases ran. With ``out``, each finished chunk is written at once (:mod:`.store`), a
re-run resumes, and SIGINT / SIGTERM keep the finished chunks and leave no worker behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import contextmanager
from typing import Any

import numpy as np

from cmsim._version import __version__
from cmsim.errors import ParameterError, SimulationError
from cmsim.sweep import backends
from cmsim.sweep.grid import case_overrides, expand_grid
from cmsim.sweep.metrics import (
    DEFAULT_METRICS,
    MetricSpec,
    check_metrics,
    check_picklable,
)
from cmsim.sweep.store import KeptResults, SweepStore, definition_sha256
from cmsim.sweep.worker import FIXED_COLUMNS, ChunkResult, SweepContext, run_job

__all__ = ["TASK_SECONDS", "SweepInterrupted", "assemble", "load", "sweep"]

#: Default target compute time of one chunk [s].
TASK_SECONDS = 1.0
#: Finished chunks are written together at most this often [s] (with workers).
FLUSH_SECONDS = 1.0


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by SIGINT or SIGTERM; the finished chunks are on disk (with ``out``).

    Parameters
    ----------
    signum : int
        The signal.
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(self.signum)  # args = (signum,): type(e)(*e.args) rebuilds it

    def __str__(self) -> str:
        return f"sweep interrupted by {signal.Signals(self.signum).name}"


# --------------------------------------------------------------------------- signals


class _Signals:
    """SIGINT and SIGTERM raise :class:`SweepInterrupted`, except inside :meth:`critical`
    (writing a part), where the signal is held until the section ends."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self._depth:
            self._pending = signum
        else:
            raise SweepInterrupted(signum)

    @contextmanager
    def critical(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self._pending is not None:
            raise SweepInterrupted(self._pending)


# --------------------------------------------------------------------------- rows




def assemble(tables: Sequence[Any], definition: Mapping[str, Any]) -> Any:
    """The sweep table from chunk tables (oldest first) and the sweep's definition.

    Parameters
    ----------
    tables : sequence of pyarrow.Table
        Chunk rows (:func:`cmsim.sweep.worker.rows_to_arrow`); of two rows of one job the
        later one counts (a failed job that a resumed sweep ran again).
    definition : mapping
        ``grid`` (list of [path, values]), ``seed``, ``metrics`` (list of [name, function]).

    Returns
    -------
    SweepTable
        Ordered by case then replicate.
    """
    import pyarrow as pa  # noqa: PLC0415

    from cmsim.sweep.table import SweepTable  # noqa: PLC0415

    grid = {path: values for path, values in definition["grid"]}
    cases = expand_grid(grid)
    merged = pa.concat_tables(list(tables), promote_options="default")
    df = merged.to_pandas()
    df = df.sort_values(["case", "replicate"], kind="stable")
    df = df.drop_duplicates(["case", "replicate"], keep="last").reset_index(drop=True)
    case_idx = df["case"].to_numpy()
    rep_idx = df["replicate"].to_numpy()
    cols: dict[str, Any] = {"case": case_idx.astype(np.int64),
                            "replicate": rep_idx.astype(np.int64)}
    for path in grid:
        cols[path] = [cases[c][path] for c in case_idx]
    cols["seed"] = np.full(len(df), int(definition["seed"]), dtype=np.int64)
    cols["spawn_key"] = [str(r) for r in rep_idx]
    custom = [name for name, _ in definition.get("metrics", [])]
    known = [m for m in (*DEFAULT_METRICS, *custom) if m in df.columns]
    rest = sorted(c for c in df.columns if c not in known and c not in FIXED_COLUMNS)
    for name in (*known, *rest):
        cols[name] = df[name].to_numpy(dtype=np.float64)
    for name in ("error_type", "error_message"):
        cols[name] = df[name]
    table = SweepTable(cols)
    table.grid_axes = list(grid)
    table.definition = dict(definition)
    return table


# --------------------------------------------------------------------------- the sweep


def validate_case(base: Any, overrides: list[str], label: str = "grid") -> None:
    """Validate one grid case before anything runs; a bad path is named as the grid's
    (``label``), not as a ``--set`` override."""
    from cmsim.config import load_scenario  # noqa: PLC0415

    load_scenario(base, overrides=overrides or None, override_label=label)


def sweep(scenario: Any, *, replicates: int = 1,
          grid: Mapping[str, Sequence[Any]] | None = None, seed: int = 0,
          executor: Executor | Any | None = None, progress: bool = False,
          out: str | os.PathLike | None = None, metrics: MetricSpec | None = None,
          keep: bool | Callable[[Mapping[str, Any]], bool] | None = None,
          workers: int | None = None, task_seconds: float = TASK_SECONDS):
    """Run ``replicates`` seeded replicates of every case of ``grid``.

    Parameters
    ----------
    scenario : str, path, dict or cmsim.config.Scenario
        As for :func:`cmsim.run`.
    replicates : int
        Replicates per case, >= 1.
    grid : mapping of str to sequence, optional
        ``{field path: [values]}`` (e.g. ``{"feeders[0].noise_rsd": [0.02, 0.05]}``); the
        cases are the Cartesian product (:func:`expand_grid`). Values are scenario values
        (numbers or strings with units).
    seed : int
        Root seed (>= 0) of :class:`numpy.random.SeedSequence`.
    executor : concurrent.futures.Executor or distributed.Client, optional
        Where the chunks run: any Executor (e.g. ``ProcessPoolExecutor(2)``), or a Dask
        ``Client`` (or its ``get_executor()``), to which the scenario is broadcast once per
        worker. Default: serially in this process.
    progress : bool
        Show a tqdm bar over finished runs.
    out : path-like, optional
        Sweep directory (:mod:`cmsim.sweep.store`): chunks are written as they finish, a
        re-run with the same definition resumes, the final table and per grid point
        statistics are written at the end. Refused if it holds another sweep or is in use.
    metrics : mapping of str to callable, or callable, optional
        User metrics besides :func:`case_metrics`: ``{name: f(result) -> float}``, or
        ``f(result) -> {name: float}`` (columns in sorted name order). With workers they must
        pickle (module-level functions).
    keep : bool or callable, optional
        Keep the results of the cases ``keep(row)`` selects (``row``: ``case``, ``replicate``
        and the metrics), or all (True); they come back in ``table.results`` and, with
        ``out``, are pickled under ``out/kept/``. A result of a 1 h case at dt = 1 s is about
        1 MB.
    workers : int, optional
        Run on a pool of this many worker processes that the sweep starts and ends (the
        scenario is sent once per process); not together with ``executor``.
    task_seconds : float
        Target compute time of one chunk [s] (:class:`cmsim.sweep.backends.ChunkSizer`).

    Returns
    -------
    SweepTable
        A pandas DataFrame, one row per case x replicate, ordered by case then replicate:
        ``case``, ``replicate``, one column per grid path, ``seed`` (root), ``spawn_key``
        (str), the metrics (:func:`case_metrics`, then the user's), ``error_type`` and
        ``error_message`` (None where the case ran; a failed case has NaN metrics).

    Raises
    ------
    cmsim.errors.ParameterError
        Bad ``replicates``, ``seed``, ``grid``, ``executor``, ``metrics``, ``keep``.
    cmsim.errors.ScenarioError
        A case does not validate (checked for every case before any run).
    cmsim.sweep.store.SweepDefinitionError, cmsim.sweep.store.SweepLockedError
        ``out`` holds another sweep, or another process is writing it.
    SweepInterrupted
        SIGINT or SIGTERM (a KeyboardInterrupt): pending chunks were cancelled, finished
        ones are in ``out``, workers of a pool the sweep owns were ended.

    Examples
    --------
    >>> import cmsim
    >>> df = cmsim.sweep("baseline", replicates=2,
    ...                  grid={"simulation.duration": ["2 min"]})  # doctest: +SKIP
    """
    from cmsim.config import load_scenario  # noqa: PLC0415

    _check_arguments(replicates, seed, executor, workers, keep, task_seconds)
    remote = executor is not None or (workers is not None and workers > 1)
    check_metrics(metrics, picklable=remote)
    if remote and callable(keep):
        check_picklable("keep", keep)
    cases = expand_grid(grid)
    base = load_scenario(scenario)
    overrides = {}
    for i, case in enumerate(cases):
        overrides[i] = case_overrides(case)
        validate_case(base, overrides[i])
    definition = {
        "scenario": base.name, "scenario_sha256": base.sha256(),
        "grid": [[path, list(values)] for path, values in (grid or {}).items()],
        "replicates": int(replicates), "seed": int(seed), "cmsim_version": __version__,
        "metrics": _metric_identity(metrics),
    }
    ctx = SweepContext(key=definition_sha256(definition), scenario=base, overrides=overrides,
                       seed=int(seed), metrics=metrics,
                       keep=_keep_all if keep is True else (keep or None))
    jobs = [(i, r) for i in range(len(cases)) for r in range(int(replicates))]
    return _Run(ctx, definition, jobs, executor, workers, out, progress, task_seconds).run()


def _keep_all(_row: Mapping[str, Any]) -> bool:
    return True


def _check_arguments(replicates: Any, seed: Any, executor: Any, workers: Any, keep: Any,
                     task_seconds: Any) -> None:
    def is_int(v: Any) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, np.integer))

    if not is_int(replicates) or replicates < 1:
        raise ParameterError("replicates", replicates, "must be an integer >= 1")
    if not is_int(seed) or seed < 0:
        raise ParameterError("seed", seed, "must be an integer >= 0")
    if executor is not None and not isinstance(executor, Executor) \
            and backends.dask_client(executor) is None:
        raise ParameterError("executor", executor, "must be a concurrent.futures.Executor, a "
                             "distributed.Client or None")
    if workers is not None:
        if not is_int(workers) or workers < 1:
            raise ParameterError("workers", workers, "must be an integer >= 1")
        if executor is not None:
            raise ParameterError("workers", workers, "give either workers or executor")
    if keep is not None and not isinstance(keep, bool) and not callable(keep):
        raise ParameterError("keep", keep, "must be True, False, None or a callable f(row)")
    if isinstance(task_seconds, bool) or not isinstance(task_seconds, (int, float)) \
            or not task_seconds > 0:
        raise ParameterError("task_seconds", task_seconds, "must be a number > 0 [s]")


def _metric_identity(metrics: MetricSpec | None) -> list[list[str]]:
    def name_of(fn: Any) -> str:
        return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"

    if metrics is None:
        return []
    if isinstance(metrics, Mapping):
        return [[name, name_of(fn)] for name, fn in metrics.items()]
    return [["*", name_of(metrics)]]


class _Run:
    """One start of a sweep: resume bookkeeping, the chunk loop, the final table."""

    def __init__(self, ctx: SweepContext, definition: dict[str, Any],
                 jobs: list[tuple[int, int]], executor: Any, workers: int | None,
                 out: Any, progress: bool, task_seconds: float) -> None:
        self.ctx, self.definition, self.jobs = ctx, definition, jobs
        self.executor, self.workers = executor, workers
        self.store = SweepStore(out) if out is not None else None
        self.progress, self.task_seconds = progress, float(task_seconds)
        self.replicates = int(definition["replicates"])
        self.tables: list[Any] = []
        self.kept: dict[tuple[int, int], Any] = {}
        self.info: dict[str, Any] = {"tasks": 0, "chunk_sizes": [], "case_seconds": []}
        self.start = 0
        self.bar: Any = None
        self._held: list[ChunkResult] = []
        self._last_flush = time.perf_counter()

    def run(self) -> Any:
        t0 = time.perf_counter()
        with _Signals() as sig:
            self.sig = sig
            try:
                todo = self._open()
                self._make_bar(len(self.jobs), len(self.jobs) - len(todo))
                if todo:
                    backend = backends.make_backend(self.executor, self.workers, self.ctx)
                    if backend is None:
                        self.info["backend"] = "serial"
                        self._serial(todo)
                    else:
                        self.info["backend"] = backend.describe
                        self._pooled(backend, todo)
                table = self._finish()
            finally:
                if self.bar is not None:
                    self.bar.close()
                if self.store is not None:
                    self.store.release()
        self.info["wall_s"] = time.perf_counter() - t0
        table.run_info = self.info
        return table

    # ------------------------------------------------------------------ bookkeeping
    def _open(self) -> list[tuple[int, int]]:
        if self.store is None:
            return list(self.jobs)
        self.store.acquire()
        done = self.store.finished_jobs()
        todo = [job for job in self.jobs if job not in done]
        self.start = self.store.open(self.definition, {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid(),
            "host": socket.gethostname(), "jobs_to_run": len(todo),
            "where": "serial" if self.executor is None and not self.workers
            else (f"{self.workers} worker processes" if self.workers
                  else type(self.executor).__name__)})
        self.info["resumed_jobs"] = len(self.jobs) - len(todo)
        return todo

    def _make_bar(self, total: int, done: int) -> None:
        if self.progress:
            from cmsim._progress import progress_bar  # noqa: PLC0415

            self.bar = progress_bar(total=total, initial=done, unit="run", desc="cmsim sweep")

    def _collect(self, chunk: ChunkResult) -> None:
        """Take one finished chunk; write the held chunks as one part when one is due."""
        if chunk.table.num_rows == 0:
            return
        self._held.append(chunk)
        self.kept.update(chunk.kept)
        self.info["case_seconds"].extend(chunk.seconds)
        if self.bar is not None:
            self.bar.update(chunk.table.num_rows)
        if time.perf_counter() - self._last_flush >= FLUSH_SECONDS:
            self._flush()

    def _flush(self) -> None:
        """Write the held chunks as one part (a few parts per second at most, whatever the
        number of workers: the writer does not become the bottleneck of a large cluster)."""
        import pyarrow as pa  # noqa: PLC0415

        held, self._held = self._held, []
        self._last_flush = time.perf_counter()
        if not held:
            return
        table = pa.concat_tables([c.table for c in held], promote_options="default")
        with self.sig.critical():
            if self.store is not None:
                first = min(int(c.table.column("case")[0].as_py()) * self.replicates
                            + int(c.table.column("replicate")[0].as_py()) for c in held)
                self.store.write_part(table, self.start, first)
                for chunk in held:
                    for key, result in chunk.kept.items():
                        self.store.save_kept(key, result)
            else:
                self.tables.append(table)

    # ------------------------------------------------------------------ loops
    def _serial(self, todo: list[tuple[int, int]]) -> None:
        rows: list[dict[str, Any]] = []
        seconds: list[float] = []
        kept: dict[tuple[int, int], Any] = {}
        last = time.perf_counter()
        try:
            for case, rep in todo:
                t0 = time.perf_counter()
                row, result = run_job(self.ctx, case, rep)
                seconds.append(time.perf_counter() - t0)
                rows.append(row)
                if result is not None:
                    kept[(case, rep)] = result
                if time.perf_counter() - last >= self.task_seconds:
                    self._collect(ChunkResult.from_rows(rows, seconds, kept))
                    self._flush()
                    self.info["tasks"] += 1
                    rows, seconds, kept = [], [], {}
                    last = time.perf_counter()
        finally:  # also on an interrupt: keep the cases that finished
            self._collect(ChunkResult.from_rows(rows, seconds, kept))
            self._flush()

    def _pooled(self, backend: Any, todo: list[tuple[int, int]]) -> None:
        interrupted = True
        inflight: dict[Future, int] = {}
        try:
            overhead = backend.measure_overhead()
            sizer = backends.ChunkSizer(backend.slots, overhead, self.task_seconds)
            self.info.update(task_overhead_s=overhead, slots=backend.slots)
            nxt = 0
            while nxt < len(todo) or inflight:
                while nxt < len(todo) and len(inflight) < 2 * backend.slots:
                    if sizer.case_seconds is None and len(inflight) >= backend.slots:
                        break  # first wave: one case per slot until a time is measured
                    n = sizer.size(len(todo) - nxt)
                    chunk = todo[nxt:nxt + n]
                    inflight[backend.submit(chunk)] = len(chunk)
                    self.info["chunk_sizes"].append(len(chunk))
                    nxt += len(chunk)
                done, _ = wait(list(inflight), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    del inflight[fut]
                    result = fut.result()
                    sizer.observe(result.seconds)
                    self.info["tasks"] += 1
                    self._collect(result)
            interrupted = False
        finally:
            for fut in inflight:
                fut.cancel()
            try:
                self._flush()  # also on an interrupt: keep the chunks that finished
            finally:
                backend.close(interrupted)

    # ------------------------------------------------------------------ the end
    def _finish(self) -> Any:
        tables = self.store.read_parts() if self.store is not None else self.tables
        table = assemble(tables, self.definition)
        if len(table) != len(self.jobs):
            raise SimulationError(f"sweep: {len(table)} rows for {len(self.jobs)} runs")
        directory = self.store.dir if self.store is not None else None
        table.results = KeptResults(self.kept, directory)
        if self.store is not None:
            from cmsim.sweep.stats import summarize  # noqa: PLC0415

            with self.sig.critical():
                self.store.write_final(table, summarize(table), {
                    "cmsim.sweep.definition": json.dumps(self.definition, sort_keys=True),
                    "cmsim.sweep.definition_sha256": self.ctx.key})
        secs = self.info.pop("case_seconds")
        self.info["case_seconds_median"] = float(np.median(secs)) if secs else None
        self.info["compute_s"] = float(np.sum(secs)) if secs else 0.0
        return table


def load(out: str | os.PathLike) -> Any:
    """The table of a sweep directory, from its finished chunks (complete or not).

    Parameters
    ----------
    out : path-like
        A directory written by :func:`sweep` (``cmsim sweep --out``).

    Returns
    -------
    SweepTable
        As :func:`sweep` returns it (same rows, dtypes and order); the runs that did not
        finish yet have no row. ``table.results`` reads the kept results from ``out/kept/``.
    """
    from cmsim.errors import InputError  # noqa: PLC0415

    store = SweepStore(out)
    manifest = store.read_manifest()
    if manifest is None:
        raise InputError(f"{store.dir}: no sweep here (manifest.json is missing)")
    tables = store.read_parts()
    if not tables:
        raise InputError(f"{store.dir}: no finished runs yet (parts/ is empty)")
    table = assemble(tables, manifest["definition"])
    table.results = KeptResults({}, store.dir)
    return table
