"""``cmsim.sweep``: seeded Monte Carlo replicates over a grid of scenario overrides.

Seeding: ``children = numpy.random.SeedSequence(seed).spawn(replicates)``; replicate ``r`` of
*every* grid case runs with ``children[r]`` (common random numbers: cases differ only by their
parameters, which sharpens comparisons between cases). The spawn key of each child is recorded.
Each run is :func:`cmsim.run` with the case's overrides, so a row can be reproduced with
``cmsim.run(scenario, seed=SeedSequence(seed).spawn(replicates)[r], overrides=...)``.

Runs go through any :class:`concurrent.futures.Executor` (default: sequential in this
process); rows are collected by case index, never in completion order, so the table does not
depend on the executor.
"""

from __future__ import annotations

import itertools
import json
import sys
import types
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from cmsim.errors import ParameterError

__all__ = ["case_metrics", "expand_grid", "sweep"]


def expand_grid(grid: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """Cartesian product of a grid ``{field path: values}`` in the given key order.

    Parameters
    ----------
    grid : mapping of str to sequence, or None
        Axes; None or empty gives one case without overrides.

    Returns
    -------
    list of dict
        One ``{path: value}`` per case; the last axis varies fastest.

    Examples
    --------
    >>> expand_grid({"a": [1, 2], "b": ["x", "y"]})
    [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
    """
    if not grid:
        return [{}]
    if not isinstance(grid, Mapping):
        raise ParameterError("grid", grid, "must be a mapping {field path: [values]}")
    axes = []
    for path, values in grid.items():
        if not isinstance(path, str) or not path:
            raise ParameterError("grid", path, "keys must be field paths (str)")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ParameterError(f"grid[{path}]", values, "must be a non-empty list of values")
        axes.append([(path, val) for val in values])
    return [dict(combo) for combo in itertools.product(*axes)]


def _override(path: str, value: Any) -> str:
    return f"{path}={json.dumps(value)}"


def case_metrics(result: Any) -> dict[str, float]:
    """Scalar KPIs of one run.

    Parameters
    ----------
    result : cmsim.SimulationResult

    Returns
    -------
    dict
        ``escapes`` (nonconforming tablets accepted), ``waste`` (conforming tablets
        diverted), ``tablets_produced``, ``tablets_accepted``, ``tablets_diverted`` [-],
        ``api_content_mean``, ``api_content_rsd``, ``api_content_min``, ``api_content_max``
        (true API content as a fraction of target, tablet-weighted over the ticks with flow,
        [-]) and ``mass_balance_error`` [-].
    """
    s = result.summary()
    tab = s["tablets"]
    content = np.asarray(result.api_content, dtype=np.float64)
    weight = np.asarray(result.tablets, dtype=np.float64)
    ok = np.isfinite(content) & (weight > 0)
    if ok.any():
        c, w = content[ok], weight[ok]
        mean = float(np.average(c, weights=w))
        sd = float(np.sqrt(np.average((c - mean) ** 2, weights=w)))
        cmin, cmax = float(c.min()), float(c.max())
        rsd = sd / mean if mean else float("nan")
    else:
        mean = rsd = cmin = cmax = float("nan")
    return {
        "escapes": float(tab["nonconforming_accepted"]),
        "waste": float(tab["conforming_diverted"]),
        "tablets_produced": float(tab["produced"]),
        "tablets_accepted": float(tab["accepted"]),
        "tablets_diverted": float(tab["diverted"]),
        "api_content_mean": mean,
        "api_content_rsd": rsd,
        "api_content_min": cmin,
        "api_content_max": cmax,
        "mass_balance_error": float(result.mass_balance_max_rel_error),
    }


def _run_case(scenario: Any, overrides: list[str], seed: np.random.SeedSequence
              ) -> dict[str, float]:
    from cmsim.api import run  # noqa: PLC0415

    return case_metrics(run(scenario, seed=seed, overrides=overrides or None))


def sweep(scenario: Any, *, replicates: int = 1,
          grid: Mapping[str, Sequence[Any]] | None = None, seed: int = 0,
          executor: Executor | None = None, progress: bool = False):
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
    executor : concurrent.futures.Executor, optional
        Where the runs go (e.g. ``ProcessPoolExecutor(2)``); default sequential here.
    progress : bool
        Show a tqdm bar over finished runs.

    Returns
    -------
    pandas.DataFrame
        One row per case x replicate, ordered by case then replicate: ``case``,
        ``replicate``, one column per grid path, ``seed`` (root), ``spawn_key`` (str), then
        :func:`case_metrics`.

    Raises
    ------
    cmsim.errors.ParameterError
        Bad ``replicates``, ``seed`` or ``grid``.
    cmsim.errors.ScenarioError
        A case does not validate (checked for every case before any run).

    Examples
    --------
    >>> import cmsim
    >>> df = cmsim.sweep("baseline", replicates=2,
    ...                  grid={"simulation.duration": ["2 min"]})  # doctest: +SKIP
    """
    import pandas as pd  # noqa: PLC0415

    from cmsim.config import load_scenario  # noqa: PLC0415

    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)) \
            or replicates < 1:
        raise ParameterError("replicates", replicates, "must be an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError("seed", seed, "must be an integer >= 0")
    if executor is not None and not isinstance(executor, Executor):
        raise ParameterError("executor", executor,
                             "must be a concurrent.futures.Executor or None")
    cases = expand_grid(grid)
    base = load_scenario(scenario)
    case_overrides = []
    for case in cases:
        ov = [_override(p, val) for p, val in case.items()]
        load_scenario(base, overrides=ov or None)  # every case validates before any run
        case_overrides.append(ov)
    children = np.random.SeedSequence(int(seed)).spawn(int(replicates))
    jobs = [(i, r) for i in range(len(cases)) for r in range(int(replicates))]
    results: list[dict[str, float] | None] = [None] * len(jobs)
    bar = None
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        bar = tqdm(total=len(jobs), unit="run", desc="cmsim sweep", leave=False)
    try:
        if executor is None:
            for j, (i, r) in enumerate(jobs):
                results[j] = _run_case(base, case_overrides[i], children[r])
                if bar is not None:
                    bar.update(1)
        else:
            from concurrent.futures import as_completed  # noqa: PLC0415

            futures = {executor.submit(_run_case, base, case_overrides[i], children[r]): j
                       for j, (i, r) in enumerate(jobs)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    rows = []
    for j, (i, r) in enumerate(jobs):
        row: dict[str, Any] = {"case": i, "replicate": r}
        row.update(cases[i])
        row["seed"] = int(seed)
        row["spawn_key"] = ",".join(str(k) for k in children[r].spawn_key)
        row.update(results[j])
        rows.append(row)
    return pd.DataFrame(rows)


class _CallableModule(types.ModuleType):
    """Importing ``cmsim.sweep`` binds this module to the attribute ``cmsim.sweep``, which
    would shadow the function; the module therefore calls :func:`sweep` when called."""

    def __call__(self, *args: Any, **kwargs: Any):
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
