"""Shared fixtures."""

from __future__ import annotations

import pytest

import cmsim
from cmsim import api


@pytest.fixture(scope="module")
def rules_policy():
    """Run scenarios that divert with ``diversion.policy = "rules"``: the rule-based monitor of
    cmsim 0.1 (method A soft sensor, method B and PAT windows), whose semantics the tests
    using this fixture pin down."""
    real = api.run

    def run(scenario, *args, overrides=None, **kwargs):
        from cmsim.config import load_scenario

        extra = list(overrides or [])
        if isinstance(scenario, dict):
            if scenario.get("diversion") is not None:
                scenario = {**scenario, "diversion": {**scenario["diversion"],
                                                      "policy": "rules"}}
        elif load_scenario(scenario, overrides=extra or None).diversion is not None:
            extra.append("diversion.policy=rules")
        return real(scenario, *args, overrides=extra or None, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cmsim, "run", run)
        mp.setattr(api, "run", run)
        yield
