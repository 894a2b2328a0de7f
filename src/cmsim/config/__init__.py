"""Scenario files: TOML reading, ``--set`` overrides and validation (pydantic).

>>> from cmsim.config import load_scenario
>>> scenario = load_scenario("scenarios/baseline.toml")          # doctest: +SKIP
>>> scenario.simulation.duration, scenario.target_api_fraction   # doctest: +SKIP
(28800.0, 0.1)

Every problem in a file becomes one entry of a :class:`cmsim.errors.ScenarioError` with the
file, the field path (``feeders[1].mass_flow``), the value and the rule.
"""

from cmsim.config.files import find_parameter_set
from cmsim.config.loader import (
    apply_overrides,
    load_scenario,
    parse_field_path,
    read_toml,
    resolve_scenario_path,
    shipped_scenarios,
    validate_dict,
)
from cmsim.config.schema import (
    ParameterSet,
    RTDTable,
    Scenario,
    cross_field_problems,
)

__all__ = [
    "ParameterSet",
    "RTDTable",
    "Scenario",
    "apply_overrides",
    "cross_field_problems",
    "find_parameter_set",
    "load_scenario",
    "parse_field_path",
    "read_toml",
    "resolve_scenario_path",
    "shipped_scenarios",
    "validate_dict",
]
