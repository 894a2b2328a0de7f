"""``cmsim.bench_monitor``: seeded replicates of every labelled fault, per diversion policy.

Each fault's scenario runs through :func:`cmsim.sweep` (common random numbers: replicate ``r``
of every policy uses the same seed ``SeedSequence(seed).spawn(replicates)[r]``, so the policies
are compared on the same noise). The per-run metrics come from
:func:`cmsim.faultbench.metrics.read_run`, handed to the sweep as a metric function;
:func:`_sweep_runs` is the one place that knows the sweep's interface.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

from cmsim.errors import ParameterError, SimulationError
from cmsim.faultbench.manifest import Fault, load_manifest
from cmsim.faultbench.metrics import read_run, summarize_case

__all__ = ["DEFAULT_POLICIES", "bench_monitor", "default_manifest", "run_fault"]

#: Policies compared when none are named.
DEFAULT_POLICIES = ("risk", "quantile")
#: Label of the monitor's own setting when no policy is asked for (:func:`run_fault`).
MONITOR_DEFAULT = "default"

_RUN_COLUMNS = ("produced", "nonconforming", "escapes", "waste", "diverted",
                "diversion_events", "expected_escapes", "detection_s", "detection_delay_s",
                "duration_s")


def default_manifest() -> Path:
    """The fault manifest shipped with cmsim (a copy of ``scenarios/faults/manifest.toml``)."""
    from importlib import resources  # noqa: PLC0415

    return Path(str(resources.files("cmsim.data") / "scenarios" / "faults" / "manifest.toml"))


# --------------------------------------------------------------------------- one run


#: Prefix of the benchmark's columns in the sweep table (the sweep refuses its own names).
_PREFIX = "bench."


def _bench_metrics(result: Any, start_s: float | None) -> dict[str, float]:
    """The numbers of :func:`read_run` for :func:`cmsim.sweep` (picklable with ``partial``)."""
    row = read_run(result, start_s)
    return {_PREFIX + key: value for key, value in row.items() if key in _RUN_COLUMNS}


def _sweep_runs(scenario: Any, fault: Fault, *, grid: dict[str, list[str]] | None,
                replicates: int, seed: int, executor: Executor | None,
                progress: bool) -> Any:
    """Replicates x grid cases of one fault through :func:`cmsim.sweep`, with the benchmark
    metrics per row (the one function that knows how ``cmsim.sweep`` takes and returns them).

    Raises
    ------
    cmsim.errors.SimulationError
        A replicate failed (the sweep records it; the benchmark stops on it).
    """
    import pandas as pd  # noqa: PLC0415

    from cmsim.sweep import sweep  # noqa: PLC0415

    table = sweep(scenario, replicates=replicates, grid=grid, seed=seed, executor=executor,
                  progress=progress, metrics=functools.partial(_bench_metrics,
                                                               start_s=fault.start_s))
    if "error_type" in table.columns and table["error_type"].notna().any():
        bad = table[table["error_type"].notna()].iloc[0]
        raise SimulationError(f"fault {fault.name!r}, case {bad['case']}, replicate "
                              f"{bad['replicate']}: {bad['error_type']}: "
                              f"{bad['error_message']}")
    keys = [c for c in table.columns if c in ("case", "replicate", "spawn_key")
            or c in (grid or {})]
    out = pd.DataFrame({c: table[c].to_numpy() for c in keys})
    for col in _RUN_COLUMNS:
        out[col] = table[_PREFIX + col].to_numpy()
    return out


def run_fault(fault: Fault, *, policies: Sequence[str] | None = None, replicates: int = 1,
              seed: int = 0, overrides: Sequence[str] = (), executor: Executor | None = None,
              progress: bool = False):
    """Seeded replicates of one fault, one row per policy x replicate.

    Parameters
    ----------
    fault : Fault
        From :func:`cmsim.faultbench.load_manifest`.
    policies : sequence of str, optional
        Values of ``diversion.policy``; None runs the monitor as configured.
    replicates : int
        Replicates per policy, >= 1.
    seed : int
        Root seed (>= 0) of the replicates.
    overrides : sequence of str
        ``path=value`` items applied to the scenario first.
    executor : concurrent.futures.Executor, optional
        Where the runs go (default: here, one after the other).
    progress : bool
        Progress bar per fault.

    Returns
    -------
    pandas.DataFrame
        ``fault``, ``policy``, ``replicate``, ``spawn_key`` and the columns of
        :func:`cmsim.faultbench.metrics.read_run`.
    """
    from cmsim.config import load_scenario  # noqa: PLC0415
    from cmsim.errors import ScenarioError  # noqa: PLC0415

    scenario = load_scenario(fault.path, overrides=override_list(overrides) or None)
    duration = scenario.simulation.duration
    if fault.start_s is not None and fault.start_s >= duration:
        raise ScenarioError(str(fault.path), [(
            "simulation.duration", duration,
            f"must be > the fault start of the manifest ({fault.start_s:g} s) of fault "
            f"{fault.name!r}")])
    grid = {"diversion.policy": list(policies)} if policies else None
    table = _sweep_runs(scenario, fault, grid=grid, replicates=replicates, seed=seed,
                        executor=executor, progress=progress)
    configured = getattr(scenario.diversion, "policy", None) or MONITOR_DEFAULT
    out = table[["replicate", "spawn_key", *_RUN_COLUMNS]].copy()
    out.insert(0, "policy", table["diversion.policy"].astype(str) if policies
               else str(configured))
    out.insert(0, "fault", fault.name)
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- the benchmark


def override_list(overrides: Sequence[str]) -> list[str]:
    """``overrides`` as a list; a plain string is refused (it would be taken letter by
    letter)."""
    if isinstance(overrides, str):
        raise ParameterError("overrides", overrides, "must be a list of 'path=value' strings, "
                             f"e.g. [{overrides!r}]")
    return list(overrides)


def _pick(faults: list[Fault], names: Iterable[str] | None) -> list[Fault]:
    if names is None:
        return faults
    if isinstance(names, str):  # not iterated letter by letter
        raise ParameterError("faults", names, "must be a list of fault names, e.g. "
                             f"[{names!r}]")
    by_name = {f.name: f for f in faults}
    wanted = list(names)
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ParameterError("faults", unknown[0],
                             f"no such fault in the manifest (faults: {', '.join(by_name)})")
    return [by_name[n] for n in dict.fromkeys(wanted)]


def _policies(policies: Sequence[str] | None) -> list[str]:
    from typing import get_args  # noqa: PLC0415

    from cmsim.config.schema import Diversion  # noqa: PLC0415

    if policies is None:
        return list(DEFAULT_POLICIES)
    if isinstance(policies, str):
        raise ParameterError("policies", policies, "must be a list of policy names")
    names = [str(p) for p in policies]
    known = get_args(Diversion.model_fields["policy"].annotation)
    bad = [p for p in names if p not in known]
    if not names or bad:
        raise ParameterError("policies", bad[0] if bad else names,
                             f"must name diversion.policy values ({', '.join(known)})")
    return list(dict.fromkeys(names))


def bench_monitor(*, replicates: int = 200, policies: Sequence[str] | None = None,
                  faults: Iterable[str] | None = None, manifest: str | Path | None = None,
                  seed: int = 0, overrides: Sequence[str] = (),
                  executor: Executor | None = None, progress: bool = False,
                  return_runs: bool = False):
    """Run the labelled fault benchmark of the PAT monitor.

    Parameters
    ----------
    replicates : int
        Seeded replicates per fault and policy (the issue's targets are stated for 200).
    policies : sequence of str, optional
        Diversion policies (``diversion.policy`` values) to compare (default ``("risk",
        "quantile")``).
    faults : iterable of str, optional
        Fault names of the manifest (default: all).
    manifest : str or Path, optional
        Fault manifest (default: :func:`default_manifest`).
    seed : int
        Root seed (>= 0) of the replicates, shared by every fault and policy.
    overrides : sequence of str
        ``path=value`` items applied to every fault's scenario (e.g. a shorter
        ``simulation.duration``).
    executor : concurrent.futures.Executor, optional
        Where the runs go (e.g. ``ProcessPoolExecutor(2)``); default: here, sequentially.
    progress : bool
        Progress bar per fault.
    return_runs : bool
        Also return the per-run table (the :func:`run_fault` rows of every fault).

    Returns
    -------
    pandas.DataFrame, or (pandas.DataFrame, pandas.DataFrame) with ``return_runs``
        One row per fault and policy: ``fault``, ``kind``, ``policy``,
        ``nonconforming_expected`` (the manifest's label), ``start_s``, ``end_s``, the columns
        of :func:`cmsim.faultbench.metrics.summarize_case`.

    Raises
    ------
    cmsim.errors.ParameterError
        Bad ``replicates``, ``seed``, ``policies`` or an unknown fault name.
    cmsim.faultbench.ManifestError, cmsim.errors.ScenarioError
        A bad manifest or scenario (every scenario validates before any run).
    """
    import pandas as pd  # noqa: PLC0415

    from cmsim.config import load_scenario  # noqa: PLC0415

    if isinstance(replicates, bool) or not isinstance(replicates, int | np.integer) \
            or replicates < 1:
        raise ParameterError("replicates", replicates, "must be an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ParameterError("seed", seed, "must be an integer >= 0")
    overrides = override_list(overrides)
    pols = _policies(policies)
    chosen = _pick(load_manifest(manifest or default_manifest()), faults)
    for fault in chosen:  # validate every scenario before running any
        load_scenario(fault.path, overrides=overrides or None)
    rows: list[dict[str, Any]] = []
    run_tables = []
    for fault in chosen:
        head = {"fault": fault.name, "kind": fault.kind,
                "nonconforming_expected": fault.nonconforming,
                "start_s": math.nan if fault.start_s is None else fault.start_s,
                "end_s": math.nan if fault.end_s is None else fault.end_s}
        table = run_fault(fault, policies=pols, replicates=int(replicates), seed=int(seed),
                          overrides=overrides, executor=executor, progress=progress)
        run_tables.append(table)
        for pol, group in table.groupby("policy", sort=False):
            rows.append({**head, "policy": pol,
                         **summarize_case(group.to_dict("records"),
                                          reference=fault.is_reference,
                                          nonconforming_expected=fault.nonconforming)})
    summary = pd.DataFrame(rows)
    if not return_runs:
        return summary
    runs = pd.concat(run_tables, ignore_index=True) if run_tables else pd.DataFrame(
        columns=["fault", "policy", "replicate", "spawn_key", *_RUN_COLUMNS])
    return summary, runs
