"""``cmsim.run``: one simulation of a scenario, a pure function of (scenario, seed).

Seeding protocol (style guide C.5): ``root = numpy.random.SeedSequence(seed)``; every stochastic
source of the line (``feeder.<name>``, sorted) gets its own child
``SeedSequence(entropy=root.entropy, spawn_key=root.spawn_key + (key(name),))`` where ``key`` is
a stable 32-bit hash (SHA-256) of the source name. A child depends only on the root entropy and
its own name, so adding a source never shifts the others. ``seed=None`` takes
``simulation.seed`` from the scenario, and when that is absent too, fresh OS entropy; the
entropy actually used is recorded (``summary()["seed"]``, metadata ``entropy``) so every run can
be repeated. No global random state is touched.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from cmsim._version import __version__
from cmsim.errors import ParameterError
from cmsim.results import SimulationResult

__all__ = ["rng_streams", "run"]


def _name_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "little")


def rng_streams(seed: int | np.random.SeedSequence | None,
                names: Iterable[str]) -> tuple[dict[str, np.random.Generator], dict[str, Any]]:
    """Independent generators, one per named stochastic source.

    Parameters
    ----------
    seed : int, numpy.random.SeedSequence or None
        Root seed; None draws fresh entropy.
    names : iterable of str
        Source names.

    Returns
    -------
    (dict, dict)
        ``{name: Generator}`` and ``{"entropy": int, "spawn_keys": {name: [int, ...]}}``.

    Examples
    --------
    >>> g, info = rng_streams(1, ["feeder.api", "feeder.mcc"])
    >>> g2, _ = rng_streams(1, ["feeder.api"])
    >>> float(g["feeder.api"].random()) == float(g2["feeder.api"].random())
    True
    """
    if isinstance(seed, np.random.SeedSequence):
        root = seed
    elif seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)
                          and seed >= 0):
        root = np.random.SeedSequence(None if seed is None else int(seed))
    else:
        raise ParameterError("seed", seed, "must be an int >= 0, a SeedSequence or None")
    gens: dict[str, np.random.Generator] = {}
    keys: dict[str, list[int]] = {}
    for name in sorted(set(names)):
        child = np.random.SeedSequence(entropy=root.entropy,
                                       spawn_key=tuple(root.spawn_key) + (_name_key(name),))
        gens[name] = np.random.default_rng(child)
        keys[name] = [int(k) for k in child.spawn_key]
    return gens, {"entropy": int(root.entropy), "spawn_keys": keys}


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for mod in ("numpy", "scipy", "numba", "simpy"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = str(getattr(m, "__version__", "?"))
    return out


def _progress_callback(progress: bool | Callable[[int, int], None], total: int):
    if callable(progress):
        return progress, None
    if not progress:
        return None, None
    from tqdm.auto import tqdm  # noqa: PLC0415

    bar = tqdm(total=total, unit="tick", desc="cmsim", disable=None, leave=False)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    return update, bar


def run(scenario: Any, *, seed: int | np.random.SeedSequence | None = None,
        out: str | os.PathLike | None = None, overrides: Iterable[str] | None = None,
        progress: bool | Callable[[int, int], None] = False,
        extra_sync_s: Iterable[float] = ()) -> SimulationResult:
    """Simulate one scenario.

    Parameters
    ----------
    scenario : str, path, dict or cmsim.config.Scenario
        Scenario file, shipped scenario name, scenario data or a validated Scenario.
    seed : int, SeedSequence or None
        Root seed; None uses ``simulation.seed`` (fresh entropy if that is absent).
    out : path-like, optional
        Write the output directory there (atomically; must not exist or be empty).
    overrides : iterable of str, optional
        ``path=value`` overrides (``simulation.duration=10 min``) applied before validation.
    progress : bool or callable
        True shows a tqdm bar on a terminal (quiet elsewhere); a callable receives
        ``(done_ticks, total_ticks)``.
    extra_sync_s : iterable of float
        Extra engine sync times [s] (no effect on results; for tests of chunk invariance).

    Returns
    -------
    SimulationResult

    Raises
    ------
    cmsim.errors.InputError
        Invalid scenario, seed or output directory.
    cmsim.errors.SimulationError
        A broken invariant (mass balance) or an output failure.

    Examples
    --------
    >>> import cmsim
    >>> r = cmsim.run("baseline", overrides=["simulation.duration=2 min"])  # doctest: +SKIP
    >>> r.summary()["mass_balance_max_rel_error"] < 1e-9                   # doctest: +SKIP
    True
    """
    from cmsim import disturbances as dist  # noqa: PLC0415
    from cmsim import io  # noqa: PLC0415
    from cmsim.config import load_scenario  # noqa: PLC0415
    from cmsim.engine import Engine  # noqa: PLC0415
    from cmsim.line import build_line, rng_source_names  # noqa: PLC0415

    sc = load_scenario(scenario, overrides=list(overrides) if overrides else None)
    if out is not None:
        io.check_output_dir(out)
    t_start = time.perf_counter()
    root_seed = seed if seed is not None else sc.simulation.seed
    gens, seed_info = rng_streams(root_seed, rng_source_names(sc))
    line = build_line(sc, gens)
    plan = dist.from_scenario(sc.disturbances, sc.feeders)
    callback, bar = _progress_callback(progress, line.n_ticks)
    try:
        engine = Engine(line, plan, progress=callback,
                        sync_every_s=(line.n_ticks * line.dt / 100.0) if callback else None,
                        extra_sync_s=extra_sync_s)
        events = engine.run()
    finally:
        if bar is not None:
            bar.close()
    err = line.check_mass_balance()
    wall = time.perf_counter() - t_start
    comp = line.component_masses()
    cm = line.channel_masses()
    metadata: dict[str, Any] = {
        "scenario": sc.name,
        "scenario_sha256": sc.sha256(),
        "scenario_source": str(sc.source) if sc.source else None,
        "seed": seed_info["entropy"],
        "entropy": seed_info["entropy"],
        "spawn_keys": seed_info["spawn_keys"],
        "cmsim_version": __version__,
        "versions": _versions(),
        "wall_time_s": wall,
        "dt_s": line.dt,
        "trace_epsilon": float(sc.simulation.trace_epsilon),
        "initial_state": sc.simulation.initial_state,
        "alignment_shift_ticks": line.shift,
        "n_syncs": engine.n_syncs,
        # for the report (cmsim.report): description, API feeder, nominal feeder-to-gate RTD
        "description": sc.description,
        "api_feeder": next((f.name for f in sc.feeders if f.role == "api"), None),
        "line_rtd": {"model": "Series", "stages": [
            {"model": type(m).__name__, **m.params}
            for m in (sc.blender.rtd.build(), sc.press.transfer_rtd.build(),
                      sc.press.feed_frame_rtd.build())]},
    }
    result = SimulationResult(
        dt=line.dt,
        materials=tuple(line.channel_map.materials),
        channels=tuple(line.channel_map.channels),
        api_material=line.channel_map.api_material,
        gate_flow=line.flow,
        diverted=line.diverted,
        tablet_mass=float(sc.press.tablet_mass),
        target_api_fraction=float(sc.target_api_fraction),
        api_content_limits=tuple(float(x) for x in sc.specification.api_content_limits),
        mass=comp,
        channel_mass=cm,
        mass_balance_max_rel_error=err,
        event_log=events,
        metadata=metadata,
    )
    if out is not None:
        result.write(out)
    return result
