"""Scheduled disturbances: scenario entries turned into timed actions on the units of a line.

Each :class:`Disturbance` has a start time, an optional end time and two actions, ``apply`` (at
the start) and ``revert`` (at the end), that call the public event methods of the unit
operations (``LossInWeightFeeder.stop/start/set_mass_flow/set_noise/set_drift/refill``,
``ContinuousBlender.set_speed``, ``TabletPress.stop/start``). The engine schedules them as SimPy
processes and syncs the line to the event tick before each action.

Types (docs/scenario-reference.md, "Disturbances"; fields of :mod:`cmsim.config`):

=================  ===========================================  ==============================
type               apply                                        revert (if ``duration``)
=================  ===========================================  ==============================
``feeder_stop``    ``feeder.stop()``                            ``feeder.start()``
``feeder_step``    ``feeder.set_mass_flow(mass_flow)``          set point before the step
``feeder_noise``   ``feeder.set_noise(noise_rsd)``              the feeder's nominal noise_rsd
``feeder_drift``   ``feeder.set_drift(rate_per_hour / 3600)``   drift 0 (and gravimetric again)
``refill``         ``feeder.refill(lot, mass, duration)``       (the feeder ends it itself)
``blender_speed``  ``blender.set_speed(speed)``                 -
``press_stop``     ``press.stop()``                             ``press.start()``
=================  ===========================================  ==============================

This module imports neither simpy nor pandas nor pydantic: it duck-types the scenario entries
and the units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cmsim.errors import ParameterError

__all__ = ["Disturbance", "from_scenario", "scenario_field"]

_TYPES = ("feeder_stop", "feeder_step", "feeder_noise", "feeder_drift", "refill",
          "blender_speed", "press_stop")


@dataclass
class Disturbance:
    """A timed disturbance.

    Parameters
    ----------
    type : str
        One of ``feeder_stop``, ``feeder_step``, ``feeder_noise``, ``feeder_drift``, ``refill``,
        ``blender_speed``, ``press_stop``.
    start_s : float
        Start time [s].
    target : str
        Unit affected: ``"feeder.<name>"``, ``"blender"`` or ``"press"``.
    params : dict
        Type-specific values in SI (``mass_flow`` [kg/s], ``noise_rsd`` [-], ``rate_per_s``
        [1/s], ``volumetric``, ``lot``, ``mass`` [kg], ``refill_duration`` [s], ``speed``
        [rpm], ``nominal_noise_rsd`` [-]).
    duration_s : float or None
        Length [s]; None for a permanent change.
    index : int
        Position in the scenario's list (stable tie-break and audit reference).
    """

    type: str
    start_s: float
    target: str
    params: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None
    index: int = 0
    _saved: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ParameterError("type", self.type, f"must be one of {_TYPES}")
        if not self.start_s >= 0.0:
            raise ParameterError("start_s", self.start_s, "must be >= 0")
        if self.duration_s is not None and not self.duration_s > 0.0:
            raise ParameterError("duration_s", self.duration_s, "must be > 0 or None")

    @property
    def end_s(self) -> float | None:
        """End time [s] (None for a permanent change or a refill, which ends by itself)."""
        if self.duration_s is None or self.type == "refill":
            return None
        return self.start_s + self.duration_s

    @property
    def logs_itself(self) -> bool:
        """True when the unit writes its own event for the action (refills)."""
        return self.type == "refill"

    # ------------------------------------------------------------------ actions
    def apply(self, units: Mapping[str, Any]) -> dict[str, Any]:
        """Apply the start action to ``units[self.target]``; return event data."""
        unit = _unit(units, self.target)
        p = self.params
        data: dict[str, Any] = {"disturbance": self.index, "target": self.target}
        t = self.type
        if t == "feeder_stop":
            unit.stop()
        elif t == "feeder_step":
            self._saved["mass_flow"] = float(unit.mass_flow)
            unit.set_mass_flow(p["mass_flow"])
            data.update(mass_flow_kg_s=p["mass_flow"], previous_kg_s=self._saved["mass_flow"])
        elif t == "feeder_noise":
            unit.set_noise(p["noise_rsd"])
            data.update(noise_rsd=p["noise_rsd"])
        elif t == "feeder_drift":
            unit.set_drift(p["rate_per_s"], volumetric=bool(p.get("volumetric", False)))
            data.update(rate_per_s=p["rate_per_s"], volumetric=bool(p.get("volumetric", False)))
        elif t == "refill":
            unit.refill(p["lot"], mass=p.get("mass"), duration=p.get("refill_duration"))
            data.update(lot=p["lot"])
        elif t == "blender_speed":
            unit.set_speed(p["speed"])
            data.update(speed_rpm=p["speed"])
        elif t == "press_stop":
            unit.stop()
        if self.duration_s is not None and self.type != "refill":
            data["duration_s"] = self.duration_s
        return data

    def revert(self, units: Mapping[str, Any]) -> dict[str, Any]:
        """Apply the end action (only for disturbances with an end); return event data."""
        unit = _unit(units, self.target)
        p = self.params
        data: dict[str, Any] = {"disturbance": self.index, "target": self.target}
        t = self.type
        if t in ("feeder_stop", "press_stop"):
            unit.start()
        elif t == "feeder_step":
            unit.set_mass_flow(self._saved["mass_flow"])
            data.update(mass_flow_kg_s=self._saved["mass_flow"])
        elif t == "feeder_noise":
            unit.set_noise(p.get("nominal_noise_rsd", 0.0))
            data.update(noise_rsd=p.get("nominal_noise_rsd", 0.0))
        elif t == "feeder_drift":
            unit.set_drift(0.0)
            if p.get("volumetric", False):
                unit.set_gravimetric()
        return data

    @property
    def end_type(self) -> str:
        """Event type logged at the end: ``feeder_start``, ``press_start`` or ``<type>_end``."""
        return {"feeder_stop": "feeder_start", "press_stop": "press_start"}.get(
            self.type, f"{self.type}_end")


def _unit(units: Mapping[str, Any], target: str) -> Any:
    try:
        return units[target]
    except KeyError:
        raise ParameterError("target", target, f"must be one of {sorted(units)}") from None


def scenario_field(obj: Any, name: str, default: Any = None) -> Any:
    """Field ``name`` of a scenario entry given as a mapping (raw TOML data) or as a validated
    object (``default`` where absent)."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def from_scenario(entries: Sequence[Any], feeders: Sequence[Any] = ()) -> list[Disturbance]:
    """Turn the scenario's ``[[disturbances]]`` into :class:`Disturbance` objects.

    Parameters
    ----------
    entries : sequence
        Validated scenario disturbances (attribute or mapping access; SI values).
    feeders : sequence
        The scenario's feeders (``name``, ``noise_rsd``), for nominal values to revert to.

    Returns
    -------
    list of Disturbance
        In scenario order.
    """
    nominal_rsd = {str(scenario_field(f, "name")): float(scenario_field(f, "noise_rsd", 0.0) or 0.0)
                   for f in feeders}
    out = []
    for i, e in enumerate(entries):
        t = str(scenario_field(e, "type"))
        start = float(scenario_field(e, "start"))
        dur = scenario_field(e, "duration")
        dur = None if dur is None else float(dur)
        params: dict[str, Any] = {}
        if t in ("feeder_stop", "feeder_step", "feeder_noise", "feeder_drift", "refill"):
            name = str(scenario_field(e, "feeder"))
            target = f"feeder.{name}"
            if t == "feeder_step":
                params["mass_flow"] = float(scenario_field(e, "mass_flow"))
            elif t == "feeder_noise":
                params["noise_rsd"] = float(scenario_field(e, "noise_rsd"))
                params["nominal_noise_rsd"] = nominal_rsd.get(name, 0.0)
            elif t == "feeder_drift":
                params["rate_per_s"] = float(scenario_field(e, "rate_per_hour")) / 3600.0
                params["volumetric"] = bool(scenario_field(e, "volumetric", False))
            elif t == "refill":
                params["lot"] = str(scenario_field(e, "lot"))
                mass = scenario_field(e, "mass")
                params["mass"] = None if mass is None else float(mass)
                params["refill_duration"] = dur
        elif t == "blender_speed":
            target = "blender"
            params["speed"] = float(scenario_field(e, "speed"))
        elif t == "press_stop":
            target = "press"
        elif t == "nir_fault":
            continue  # a fault of the NIR instrument: scheduled on the sensor itself
        else:
            raise ParameterError(f"disturbances[{i}].type", t, f"must be one of {_TYPES}")
        out.append(Disturbance(type=t, start_s=start, target=target, params=params,
                               duration_s=dur, index=i))
    return out
