"""What one run needs from a validated scenario, read and built once.

:func:`assemble` builds the residence-time models (blender, transfer, feed frame and their
series, the line's feeder-to-gate RTD), the channel map and the disturbance plan of a validated
scenario. :func:`cmsim.run` assembles a scenario once and hands the :class:`RunAssembly` to the
parts that build the line, the control loops and the monitor, so none of them builds the models
again. The scenario is read duck-typed (any object with the scenario's attributes); this module
imports no configuration code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cmsim import disturbances as dist
from cmsim.disturbances import scenario_field
from cmsim.errors import InputError, ScenarioError
from cmsim.footprint import memory_problems
from cmsim.rtd import RTDModel, Series
from cmsim.streams import ChannelMap
from cmsim.unitops.stage import SPEED_CAPABLE_MODELS, speed_capable

__all__ = ["LineModels", "RunAssembly", "assemble", "build_models", "scenario_channel_map"]

#: scenario paths of the three residence-time tables, in the order of the line
RTD_PATHS = ("blender.rtd", "press.transfer_rtd", "press.feed_frame_rtd")
#: tables of ``[monitor.rtd]``: the monitor's own characterisation of those three RTDs
MONITOR_RTD_KEYS = ("blender", "transfer", "feed_frame")


@dataclass(frozen=True)
class LineModels:
    """The line's residence-time models, built from the scenario once.

    Attributes
    ----------
    blender : RTDModel
        Blender RTD at its nominal speed.
    transfer : RTDModel
        Blender-to-press transfer RTD.
    feed_frame : RTDModel
        Feed-frame RTD.
    line : RTDModel
        ``Series(blender, transfer, feed_frame)``: the feeder-to-gate RTD.
    monitor : dict of str to RTDModel
        The monitor's own characterisation where ``[monitor.rtd]`` gives one (keys
        ``blender``, ``transfer``, ``feed_frame``); empty when the monitor uses the line's.
    """

    blender: RTDModel
    transfer: RTDModel
    feed_frame: RTDModel
    line: RTDModel
    monitor: Mapping[str, RTDModel] = field(default_factory=dict)

    def by_path(self) -> dict[str, RTDModel]:
        """``{scenario path: model}`` of the three tables (``blender.rtd``, ...)."""
        return dict(zip(RTD_PATHS, (self.blender, self.transfer, self.feed_frame), strict=True))


@dataclass(frozen=True)
class RunAssembly:
    """Everything the parts of one run read from a validated scenario.

    Attributes
    ----------
    dt : float
        Time step [s].
    n_ticks : int
        Ticks to simulate [-].
    channel_map : ChannelMap
        One channel per material and lot (:func:`scenario_channel_map`).
    models : LineModels
        The residence-time models.
    disturbances : tuple of cmsim.disturbances.Disturbance
        The disturbance plan, in scenario order (NIR faults excluded: they belong to the
        sensor).
    """

    dt: float
    n_ticks: int
    channel_map: ChannelMap
    models: LineModels
    disturbances: tuple[dist.Disturbance, ...]


def _rtd_table(scenario: Any, path: str) -> Any:
    obj = scenario
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def build_models(scenario: Any) -> LineModels:
    """Build the scenario's residence-time models; constructor errors become scenario errors.

    Parameters
    ----------
    scenario : cmsim.config.Scenario
        Validated scenario (SI values).

    Returns
    -------
    LineModels

    Raises
    ------
    cmsim.errors.ScenarioError
        A model refuses its parameters (the problem names the field path, value and rule).
    """
    built: dict[str, RTDModel] = {}
    problems = []
    mon_rtd = getattr(getattr(scenario, "monitor", None), "rtd", None)
    monitor_paths = [f"monitor.rtd.{k}" for k in MONITOR_RTD_KEYS
                     if mon_rtd is not None and getattr(mon_rtd, k) is not None]
    for path in (*RTD_PATHS, *monitor_paths):
        table = _rtd_table(scenario, path)
        try:
            built[path] = table.build()
        except InputError as exc:
            name = getattr(exc, "name", "")
            value = exc.value if hasattr(exc, "value") else table.model_dump(mode="json")
            rule = getattr(exc, "rule", str(exc))
            problems.append((f"{path}.{name}" if name else path, value, rule))
    for path in ("blender.rtd", "monitor.rtd.blender"):
        if problems or path not in built or speed_capable(built[path]):
            continue
        problems = [(f"disturbances[{i}].type", "blender_speed",
                     f"the RTD at {path} ({type(built[path]).__name__}) cannot follow "
                     f"a speed change: that needs one {' or one '.join(SPEED_CAPABLE_MODELS)} "
                     "element (plug-flow delays allowed)")
                    for i, d in enumerate(scenario.disturbances)
                    if scenario_field(d, "type") == "blender_speed"]
    if problems:
        raise ScenarioError(str(getattr(scenario, "source", None) or "<scenario>"), problems)
    b, tr, ff = (built[p] for p in RTD_PATHS)
    monitor = {p.rpartition(".")[2]: built[p] for p in monitor_paths}
    return LineModels(blender=b, transfer=tr, feed_frame=ff, line=Series(b, tr, ff),
                      monitor=monitor)



def scenario_channel_map(scenario: Any) -> ChannelMap:
    """Channel layout of a scenario: one channel per material and lot.

    Lots are the feeders' initial lots followed by the lots brought by ``refill``
    disturbances, in scenario order. Materials follow the feeder order.
    """
    lots: dict[str, list[str]] = {}
    material_of: dict[str, str] = {}
    for f in scenario.feeders:
        lots.setdefault(f.material, []).append(str(f.lot))
        material_of[f.name] = f.material
    for d in scenario.disturbances:
        if scenario_field(d, "type") == "refill":
            mat = material_of[scenario_field(d, "feeder")]
            if str(scenario_field(d, "lot")) not in lots[mat]:
                lots[mat].append(str(scenario_field(d, "lot")))
    return ChannelMap.from_lots(lots, api_material=scenario.api_feeder.material)


def assemble(scenario: Any, models: LineModels | None = None) -> RunAssembly:
    """Read and build what a run needs from a validated scenario, once.

    Parameters
    ----------
    scenario : cmsim.config.Scenario
        Validated scenario (SI values).
    models : LineModels, optional
        Residence-time models already built from this scenario (:func:`build_models`).

    Returns
    -------
    RunAssembly

    Raises
    ------
    cmsim.errors.ScenarioError
        A model refuses its parameters, or the run cannot fit in this machine's memory
        (:func:`cmsim.footprint.memory_problems`).
    """
    dt, n_ticks = float(scenario.simulation.dt), int(scenario.n_ticks)
    cmap = scenario_channel_map(scenario)
    models = models if models is not None else build_models(scenario)
    problems = memory_problems(scenario, dt, n_ticks, cmap.n_channels, models)
    if problems:
        raise ScenarioError(str(getattr(scenario, "source", None) or "<scenario>"), problems)
    return RunAssembly(
        dt=dt, n_ticks=n_ticks, channel_map=cmap, models=models,
        disturbances=tuple(dist.from_scenario(scenario.disturbances, scenario.feeders)))
