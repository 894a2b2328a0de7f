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

import contextlib
import hashlib
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from cmsim._version import __version__
from cmsim.errors import ParameterError
from cmsim.results import SimulationResult

__all__ = ["pat_rng_names", "rng_streams", "run"]


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


def pat_rng_names(scenario: Any) -> list[str]:
    """Names of the PAT monitor's random streams (``pat.nir``, ``pat.load_cell.<feeder>``)."""
    return ["pat.nir"] + [f"pat.load_cell.{f.name}"
                                               for f in scenario.feeders]


def _attach_monitor(scenario: Any, line: Any, rng: dict[str, np.random.Generator],
                    models: Any) -> Any:
    """The scenario's monitor: the line-state estimator with the risk or quantile policy."""
    from cmsim.config.schema import Monitor  # noqa: PLC0415
    from cmsim.monitor.setup import build_line_monitor  # noqa: PLC0415

    return build_line_monitor(scenario, scenario.monitor or Monitor(), line, rng, models)


def _summary_event(ev: dict[str, Any]) -> dict[str, Any]:
    """A diversion event for summary.json: window, trigger, tablets, mass and the methods used
    (A: predicted content, B: RTD quantiles, ...) of its contributing windows."""
    out = {k: ev[k] for k in ("start_s", "end_s", "trigger", "tablets", "mass_kg")}
    methods = [str(w["method"]) for w in ev.get("windows", ()) if w.get("method")]
    out["method"] = "+".join(dict.fromkeys(methods))
    return out


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for mod in ("numpy", "scipy", "numba", "simpy"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = str(getattr(m, "__version__", "?"))
    return out


class _RunProgress:
    """One progress bar for a whole run: the simulated ticks, then the output files.

    ``progress=True`` draws a bar from :func:`cmsim._progress.progress_bar` (a widget in Jupyter
    with ipywidgets, text otherwise; outside Jupyter only on a terminal); a callable receives
    ``(done_ticks, total_ticks)`` of the simulation only.
    """

    def __init__(self, progress: bool | Callable[[int, int], None], total_ticks: int) -> None:
        self.bar: Any = None
        self.callback: Callable[[int, int], None] | None = None
        if callable(progress):
            self.callback = progress
        elif progress:
            from cmsim._progress import progress_bar  # noqa: PLC0415

            self.bar = progress_bar(total=total_ticks, unit="tick", desc="simulating",
                                    terminal_only=True)
            self.callback = self._ticks

    def _ticks(self, done: int, _total: int) -> None:
        self.bar.update(done - self.bar.n)

    def files(self, label: str, done: int, total: int) -> None:
        """Progress of :func:`cmsim.io.write_output_dir` (``label`` is the file being written)."""
        if self.bar is None:
            return
        if self.bar.unit != "file":
            self.bar.reset(total=total)
            self.bar.unit = "file"
            self.bar.set_description("writing outputs")
        self.bar.set_postfix_str(label, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(scenario: Any, *, seed: int | np.random.SeedSequence | None = None,
        out: str | os.PathLike | None = None,
        overrides: Mapping[str, Any] | Iterable[str] | None = None,
        progress: bool | Callable[[int, int], None] = False,
        extra_sync_s: Iterable[float] = (), monitor: bool = True, figures: bool = True,
        report: bool = True, overwrite: bool = False) -> SimulationResult:
    """Simulate one scenario.

    Parameters
    ----------
    scenario : str, path, dict or cmsim.config.Scenario
        Scenario file, shipped scenario name, scenario data or a validated Scenario.
    seed : int, SeedSequence or None
        Root seed; None uses ``simulation.seed`` (fresh entropy if that is absent).
    out : path-like, optional
        Write the output directory there (atomically; must not exist or be empty). The
        directory is checked and claimed before simulating, so a refused or taken directory
        costs no simulation.
    overrides : mapping or list of str, optional
        ``{path: value}`` (``{"simulation.duration": "10 min"}``, values as they are) or
        ``["path=value", ...]`` (values read like ``--set``), applied before validation. A
        plain string is refused.
    progress : bool or callable
        True shows a tqdm bar for the simulation and then for the output files: on a terminal
        or in Jupyter (a widget with ipywidgets, text without), quiet elsewhere (e.g. output
        piped to a file); a callable receives ``(done_ticks, total_ticks)`` of the simulation.
    extra_sync_s : iterable of float
        Extra engine sync times [s] (no effect on results; for tests of chunk invariance).
    monitor : bool
        Attach the PAT monitor when the scenario has a ``[pat]`` or ``[diversion]`` section
        (default); False runs the bare line (the gate never diverts).
    figures : bool
        With ``out``: write the PNG figures (default). False skips them (and the report then
        has tables only), which saves most of the writing time.
    report : bool
        With ``out``: write ``report.html`` (default).
    overwrite : bool
        With ``out``: replace an existing cmsim output directory (default False: refuse).

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
    from cmsim import io  # noqa: PLC0415
    from cmsim.assembly import assemble  # noqa: PLC0415
    from cmsim.config import load_scenario  # noqa: PLC0415

    if not (isinstance(progress, bool) or callable(progress)):
        raise ParameterError("progress", progress, "must be True, False or a callable "
                             "progress(done_ticks, total_ticks)")
    sc = load_scenario(scenario, overrides=overrides)
    # the one place that builds the RTD models etc.; a model that refuses its parameters is
    # reported before the output directory is claimed
    asm = assemble(sc)
    with contextlib.ExitStack() as stack:
        if out is not None:
            stack.enter_context(io.claim_output_dir(out, overwrite=overwrite))
        result, bar = _simulate(sc, asm, seed, progress, extra_sync_s, monitor)
        stack.callback(bar.close)
        if out is not None:
            io.write_output_dir(result, out, figures=figures, report=report,
                                overwrite=overwrite, progress=bar.files)
    return result


def _simulate(sc: Any, asm: Any, seed: Any, progress: bool | Callable[[int, int], None],
              extra_sync_s: Iterable[float], monitor: bool) -> tuple[SimulationResult, Any]:
    """Simulate a validated scenario (assembled as ``asm``); return the result and the
    run's progress bar."""
    from cmsim.engine import Engine  # noqa: PLC0415
    from cmsim.line import build_line, rng_source_names  # noqa: PLC0415

    t_start = time.perf_counter()
    root_seed = seed if seed is not None else sc.simulation.seed
    use_monitor = bool(monitor) and (sc.pat is not None or sc.diversion is not None)
    names = rng_source_names(sc) + (pat_rng_names(sc) if use_monitor else [])
    names += ["control.nir"] if getattr(sc, "control", None) is not None else []
    gens, seed_info = rng_streams(root_seed, names)
    line = build_line(sc, gens, assembly=asm)
    from cmsim.control import SetPointRecorder, attach_control  # noqa: PLC0415

    setpoints = SetPointRecorder.attach(line)
    mon = _attach_monitor(sc, line, gens, asm.models) if use_monitor else None
    # NIR feedback reads the PAT monitor's readings when there is an NIR probe ([pat])
    supervisor = attach_control(line, sc, gens.get("control.nir"),
                                monitor=mon if mon is not None and sc.pat is not None else None,
                                models=asm.models)
    plan = list(asm.disturbances)
    bar = _RunProgress(progress, line.n_ticks)
    callback = bar.callback
    try:
        engine = Engine(line, plan, progress=callback,
                        sync_every_s=(line.n_ticks * line.dt / 100.0) if callback else None,
                        extra_sync_s=extra_sync_s,
                        control_period_s=supervisor.period_s if supervisor else None)
        engine.run()
        diversion_events: list[dict[str, Any]] = []
        if mon is not None:
            from cmsim.monitor.events import EventKind, MonitorEvent  # noqa: PLC0415

            diversion_events = mon.diversion_events(line.flow, line.diverted,
                                                    float(sc.press.tablet_mass))
            for i, ev in enumerate(diversion_events):
                mon.log.append(MonitorEvent(ev["start_s"], EventKind.DIVERSION,
                                            {"event": i, **ev}, source="diversion"))
        events = engine.event_log()
    except BaseException:
        bar.close()
        raise
    cm = line.channel_masses()
    err = line.check_mass_balance(masses=cm)
    wall = time.perf_counter() - t_start
    comp = line.component_masses(cm)
    metadata: dict[str, Any] = {
        "scenario": sc.name,
        "scenario_sha256": sc.sha256(),
        # the file name only: outputs carry no absolute path of the user's machine
        "scenario_source": sc.source.name if sc.source else None,
        "scenario_data": sc.to_dict(),
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
            for m in (asm.models.blender, asm.models.transfer, asm.models.feed_frame)]},
    }
    tick_signals: dict[str, np.ndarray] = {}
    for f in sc.feeders:
        tick_signals[f"setpoint.{f.name}"] = setpoints.set_point[f.name]
        tick_signals[f"flow.{f.name}"] = setpoints.flow[f.name]
    if mon is not None:
        metadata["pat"] = {"location": sc.pat.location if sc.pat is not None else None,
                           "initial_in_control": not mon.phases.starts_cold}
    from cmsim.monitor.setup import lot_potency  # noqa: PLC0415

    potency = lot_potency(sc, line.channel_map.channels)
    if (potency != 1.0).any():
        metadata["channel_potency"] = potency.tolist()
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
        diversion_events=[_summary_event(ev) for ev in diversion_events],
        tick_signals=tick_signals,
        pat_signals=mon.signals() if mon is not None else {},
        control_history=supervisor.history if supervisor is not None else {},
    )
    if mon is not None:
        result.metadata["monitor"] = {
            "policy": sc.diversion.policy if sc.diversion is not None else None,
            "expected_escapes": mon.expected_escapes(result.tablets, line.diverted),
            "state_changes": [[t, b] for t, b in mon.state_changes()]}
        result.plant_signals = mon.plant.table if mon.plant is not None else None
        # what cmsim replay needs besides the table
        result.metadata["replay"] = {
            "scenario": sc.portable_dict(), "line_shift": int(line.shift),
            "n_api_lots": len(line.channel_map.lots(line.channel_map.api_material))}
    return result, bar
