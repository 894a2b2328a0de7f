"""Settings that are valid but implausible: warnings, not errors.

A physically impossible value is refused by the schema (e.g. a mass flow above
:data:`cmsim.config.schema.MAX_MASS_FLOW`); a value that is possible but almost certainly not
meant (a tablet line of 5 t/h, an NIR noise wider than the specification) is let through with a
:class:`cmsim.errors.ScenarioWarning` naming the field, the value and why it looks wrong.
"""

from __future__ import annotations

from typing import Any

__all__ = ["INERT_MONITOR_KEYS", "MAX_PLAUSIBLE_MASS_FLOW", "TABLET_MASS_RANGE",
           "plausibility_notes"]

#: ``[monitor]`` keys that still load (files written for the rule-based monitor of cmsim 0.1)
#: but no longer change anything, and why.
INERT_MONITOR_KEYS = {
    "chart_sigma": "the control charts run on the estimator's standardised innovations "
                   "(sigma 1), so the sigma of a reading no longer enters them",
    "soft_sensor": "the line-state estimator is the soft sensor and always runs",
    "tablet_weight_period": "the monitor does not read tablet weights",
    "tablet_weight_rsd": "the monitor does not read tablet weights",
}

#: Mass flow above which a feeder looks like a unit mistake [kg/s] (1000 kg/h; continuous
#: direct-compression lines run at about 5-500 kg/h).
MAX_PLAUSIBLE_MASS_FLOW = 1000.0 / 3600.0

#: Tablet masses outside this range look like a unit mistake [kg] (20 mg .. 3 g).
TABLET_MASS_RANGE = (20e-6, 3e-3)


def plausibility_notes(scenario: Any) -> list[tuple[str, str, str]]:
    """Implausible settings of a validated scenario as ``(field path, value, why)``.

    Parameters
    ----------
    scenario : cmsim.config.Scenario
        A validated scenario (SI values).

    Returns
    -------
    list of (str, str, str)
        Empty for a plausible scenario.
    """
    notes: list[tuple[str, str, str]] = []
    for i, f in enumerate(scenario.feeders):
        if f.mass_flow > MAX_PLAUSIBLE_MASS_FLOW:
            notes.append((f"feeders[{i}].mass_flow", f"{f.mass_flow * 3600.0:g} kg/h",
                          "more than 1000 kg/h is implausible for a continuous tablet line "
                          "(typically 5-500 kg/h)"))
    lo_m, hi_m = TABLET_MASS_RANGE
    tm = scenario.press.tablet_mass
    if not lo_m <= tm <= hi_m:
        notes.append(("press.tablet_mass", f"{tm * 1e6:g} mg",
                      "tablets outside 20 mg - 3 g are implausible (a unit typed wrong?)"))
    pat = scenario.pat
    if pat is not None and pat.noise_sd > 0.0:
        lo, hi = scenario.specification.api_content_limits
        half = 0.5 * (hi - lo) * scenario.target_api_fraction  # absolute w/w
        if pat.noise_sd > half:
            notes.append(("pat.noise_sd", f"{100.0 * pat.noise_sd:g} % w/w",
                          f"larger than the half-width of the specification "
                          f"({100.0 * half:.3g} % w/w at the target API content): single "
                          "readings of a conforming blend will often fall outside the limits"))
    mon = scenario.monitor
    if mon is not None:  # a value other than the default was asked for (a dump has defaults)
        for key in sorted(INERT_MONITOR_KEYS):
            if getattr(mon, key) != type(mon).model_fields[key].default:
                notes.append((f"monitor.{key}", repr(getattr(mon, key)),
                              f"has no effect: {INERT_MONITOR_KEYS[key]}"))
    return notes
