import pickle

import pytest

from cmsim import errors
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


def _every_cmsim_error():
    from cmsim.eventlog import LogVerificationError, VerifyResult
    from cmsim.units import UnitError

    verify = VerifyResult(ok=False, n_records=3, first_bad_seq=2, message="hash mismatch")
    return [
        errors.CmsimError("plain"),
        errors.InputError("bad input"),
        errors.ParameterError("mass_flow", 1e308, "must be <= 1e4 kg/h"),
        errors.ScenarioError("line.toml", [("feeders[0].mass_flow", "1e300 kg/h", "too big"),
                                           ("", {"a": 1}, "unknown key")]),
        errors.SimulationError("mass balance broken"),
        LogVerificationError("events.jsonl", verify),
        UnitError("3 parsecs", "must be a mass flow (kg/h, kg/s, g/min)"),
    ]


@pytest.mark.parametrize("exc", _every_cmsim_error(), ids=lambda e: type(e).__name__)
def test_errors_survive_pickling_and_rebuilding_from_args(exc):
    # SimPy re-raises a process's exception as type(e)(*e.args); sweeps pickle them
    for again in (type(exc)(*exc.args), pickle.loads(pickle.dumps(exc))):
        assert type(again) is type(exc)
        assert str(again) == str(exc)
        assert again.args == exc.args
        assert vars(again) == vars(exc)
