import pickle

import pytest

from cmsim.errors import InputError, ParameterError, ScenarioError


def test_parameter_error_names_parameter_value_rule_and_pickles():
    err = ParameterError("mean_residence_time", -1.0, "must be > 0")
    assert str(err) == "mean_residence_time=-1.0: must be > 0"
    assert isinstance(err, ValueError) and isinstance(err, InputError)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ParameterError
    assert (back.name, back.value, back.rule) == (err.name, err.value, err.rule)
    assert str(back) == str(err)


def test_scenario_error_lists_every_problem_and_pickles():
    err = ScenarioError("s.toml", [("feeders[1].mass_flow", "2 kg", "expected a mass flow"),
                                   ("blender", None, "required key is missing")])
    text = str(err)
    assert text.startswith("s.toml: 2 problem(s)")
    assert "feeders[1].mass_flow = '2 kg': expected a mass flow" in text
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ScenarioError and back.problems == err.problems and str(back) == text
    with pytest.raises(ValueError):
        raise back
