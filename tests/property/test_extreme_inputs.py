"""Hypothesis: a scenario with extreme but valid numbers runs, or is refused with a cmsim error.

One to three numeric values of a shipped scenario are scaled far off (x 0 ... x 1e9) or set to
1e9 of their unit. Whatever the schema accepts must then either run (mass balance checked by
the run itself, no warning: the suite turns warnings into errors) or be refused before the run
with a :class:`cmsim.errors.CmsimError` naming a field. Never a traceback from inside numpy or
scipy, and never an out-of-memory end. A fuzz of this kind found a wrong RTD series, crashes of
long tank chains, and runs that asked numpy for hundreds of GiB (``cmsim.footprint``).
"""

from __future__ import annotations

import re
import tomllib
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cmsim
from cmsim.config import load_scenario
from cmsim.errors import CmsimError, ScenarioError, ScenarioWarning

SOURCES = ["scenarios/faults/feeder_stop.toml", "scenarios/blender_speed_step.toml",
           "scenarios/control_combined.toml", "scenarios/faults/lot_change_assay.toml"]
#: Short runs: the disturbances of these files start within this time.
DURATION = "12 min"
_QUANTITY = re.compile(r"^\s*([-+]?\d[0-9.eE+-]*)\s*(.*)$")


def _raw(path: str) -> dict:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


RAW = {p: _raw(p) for p in SOURCES}


def _leaves(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*prefix, k))
    elif isinstance(node, list) and node and isinstance(node[0], dict):
        for i, v in enumerate(node):
            yield from _leaves(v, (*prefix, i))
    elif isinstance(node, (int, float, str)) and not isinstance(node, bool):
        if prefix[0] not in ("name", "description", "simulation"):
            yield prefix


def _get(raw, leaf):
    node = raw
    for k in leaf:
        node = node[k]
    return node


def _number(value) -> tuple[float, str] | None:
    if isinstance(value, (int, float)):
        return float(value), ""
    m = _QUANTITY.match(value)
    if not m:
        return None
    try:
        return float(m.group(1)), m.group(2)
    except ValueError:
        return None


LEAVES = {p: [leaf for leaf in _leaves(raw) if _number(_get(raw, leaf)) is not None]
          for p, raw in RAW.items()}


@st.composite
def extreme_scenario(draw):
    path = draw(st.sampled_from(SOURCES))
    raw = _raw(path)
    for leaf in draw(st.lists(st.sampled_from(LEAVES[path]), min_size=1, max_size=3)):
        x, unit = _number(_get(raw, leaf))
        factor = draw(st.sampled_from([0.0, 1e-9, 1e-3, 1e3, 1e6, 1e9]))
        y = draw(st.sampled_from([x * factor, 1e9]))
        node = _get(raw, leaf[:-1])
        node[leaf[-1]] = f"{y:g} {unit}".strip() if unit or isinstance(node[leaf[-1]], str) \
            else y
    return path, raw


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=extreme_scenario())
def test_extreme_values_run_or_are_refused_with_a_cmsim_error(case):
    path, raw = case
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy or scipy warning fails the example
        warnings.simplefilter("ignore", ScenarioWarning)  # "implausible": the user is told
        try:
            sc = load_scenario(raw, source=path, overrides=[f"simulation.duration={DURATION}"])
        except ScenarioError as err:
            assert err.problems and all(isinstance(p, str) for p, _, _ in err.problems)
            return
        try:
            result = cmsim.run(sc, seed=1)
        except CmsimError as err:
            assert str(err).strip()
            return
    assert result.mass_balance_max_rel_error < 1e-9


def test_the_fuzz_reaches_every_kind_of_value():
    """The strategy changes set points, residence times, delays, noise, monitor and control
    settings and disturbance times alike (a guard against an empty or narrowed leaf list)."""
    paths = {".".join(map(str, leaf)) for leaves in LEAVES.values() for leaf in leaves}
    for expected in ("feeders.0.mass_flow", "blender.rtd.mean_residence_time",
                     "press.transfer_rtd.delay", "pat.noise_sd", "monitor.load_cell_noise",
                     "disturbances.0.start", "blender.speed_exponent"):
        assert expected in paths, expected
    assert any(p.startswith("control.") for p in paths)
