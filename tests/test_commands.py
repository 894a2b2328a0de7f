"""``cmsim schema``, ``cmsim init``, ``cmsim list`` and what the shipped files promise."""

from __future__ import annotations

import json
import os
import tomllib
from importlib import resources
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from pydantic import BaseModel

import cmsim
from cmsim.cli import main
from cmsim.commands.init import templates
from cmsim.config import load_scenario, shipped_scenarios
from cmsim.config.reference import json_schema
from cmsim.config.schema import Control

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted(templates())


def _data(kind: str) -> list[Path]:
    return sorted(Path(str(resources.files("cmsim.data") / kind)).glob("*.toml"))


# --------------------------------------------------------------------------- schema


def test_schema_prints_the_json_schema(capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(json_schema()))
    validator = jsonschema.Draft202012Validator(printed)
    raw = tomllib.loads((ROOT / "scenarios" / "baseline.toml").read_text(encoding="utf-8"))
    assert list(validator.iter_errors(raw)) == []
    assert list(validator.iter_errors({**raw, "feeders": [{**raw["feeders"][0], "rate": 1}]}))


# --------------------------------------------------------------------------- init


def test_templates_are_the_four_promised():
    assert set(TEMPLATES) == {"minimal", "disturbance", "monitor", "control"}


@pytest.mark.parametrize("name", TEMPLATES)
def test_init_writes_a_valid_commented_scenario(name, tmp_path, capsys):
    path = tmp_path / f"{name}.toml"
    assert main(["init", name, str(path)]) == 0
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#") and text.count("\n#") >= 3  # commented
    scenario = load_scenario(path)
    assert scenario.description
    validator = jsonschema.Draft202012Validator(json_schema())
    assert list(validator.iter_errors(tomllib.loads(text))) == []
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary left behind
    assert f"cmsim validate {path}" in capsys.readouterr().out


def test_init_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text("name = 'mine'\n", encoding="utf-8")
    assert main(["init", "control", str(path)]) == 2
    assert path.read_text(encoding="utf-8") == "name = 'mine'\n"
    assert "never overwrites" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["mine.toml"]


def test_init_defaults_and_path_only(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert (tmp_path / "scenario.toml").read_text(encoding="utf-8") == \
        (resources.files("cmsim.data") / "templates" / "minimal.toml").read_text(
            encoding="utf-8")
    assert main(["init", "other.toml"]) == 0  # a .toml name is the PATH, template minimal
    assert load_scenario(tmp_path / "other.toml").name == "my_line"


def test_init_unknown_template_names_the_templates(tmp_path, capsys):
    assert main(["init", "fancy", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err
    assert "'fancy'" in err and all(t in err for t in TEMPLATES)
    assert not (tmp_path / "x.toml").exists()


def _run_template(name: str):
    text = (resources.files("cmsim.data") / "templates" / f"{name}.toml").read_text(
        encoding="utf-8")
    return cmsim.run(load_scenario(tomllib.loads(text)))


def test_minimal_template_runs_undisturbed():
    s = _run_template("minimal").summary()
    assert s["tablets"]["diverted"] == 0 and s["tablets"]["nonconforming_produced"] == 0
    assert s["tablets"]["produced"] == pytest.approx(20.0 / 3600 * 1800 / 250e-6, rel=1e-9)


def test_disturbance_template_diverts_the_feeder_stop():
    s = _run_template("disturbance").summary()
    t = s["tablets"]
    assert t["nonconforming_produced"] > 0 and t["nonconforming_accepted"] == 0
    assert len(s["diversion_events"]) >= 1


def test_monitor_template_charts_signal_before_the_content_leaves_the_limits():
    r = _run_template("monitor")
    ev = r.events
    first_signal = ev.loc[ev["type"] == "spc_signal", "time_s"].min()
    ts = r.timeseries
    out = ts["time_s"][(ts["api_content"] > 1.05) | (ts["api_content"] < 0.95)]
    assert len(out) and first_signal < out.min()
    assert r.summary()["tablets"]["nonconforming_accepted"] == 0


def test_control_template_keeps_the_content_in_limits():
    s = _run_template("control").summary()
    assert s["tablets"]["nonconforming_produced"] == 0


# --------------------------------------------------------------------------- list


def test_list_shows_every_shipped_file_with_its_description(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in ("scenarios", "models"):
        for path in _data(kind):
            desc = tomllib.loads(path.read_text(encoding="utf-8"))["description"]
            assert desc.strip(), f"{path.name} needs a description"
            assert f"{path.stem}  " in out and desc in out
    for name in TEMPLATES:
        assert name in out


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    cat = json.loads(capsys.readouterr().out)
    assert set(cat["scenarios"]) == set(shipped_scenarios())
    assert set(cat["models"]) == {p.stem for p in _data("models")}
    assert set(cat["templates"]) == set(TEMPLATES)


# --------------------------------------------------------------------------- shipped scenarios


def test_shipped_scenarios_use_monitor_and_every_control_table():
    raws = {p.stem: tomllib.loads(p.read_text(encoding="utf-8")) for p in _data("scenarios")}
    assert any("monitor" in r for r in raws.values())
    tables = [k for k, f in Control.model_fields.items()
              if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)]
    assert set(tables) == {"feeder_pi", "ratio", "nir_feedback", "feedforward"}
    for key in tables:
        users = [n for n, r in raws.items() if key in r.get("control", {})]
        assert users, f"no shipped scenario has a [control.{key}] table"


def test_control_combined_as_its_comment_says():
    r = cmsim.run("scenarios/control_combined.toml")
    t = r.summary()["tablets"]
    assert t["nonconforming_produced"] == 0 and t["diverted"] == 0
    ts = r.timeseries
    c = ts["api_content"][ts["time_s"] >= 300].to_numpy()
    assert 0.994 <= c.min() and c.max() <= 1.008
    ref = cmsim.run("scenarios/control_none.toml").summary()["tablets"]
    assert ref["nonconforming_produced"] > 10_000


def test_api_feeder_stop_as_its_comment_and_the_readme_say():
    r = cmsim.run("scenarios/api_feeder_stop.toml")
    s = r.summary()
    assert [(d["start_s"], d["end_s"]) for d in s["diversion_events"]] == [(351.5, 441.0)]
    t = s["tablets"]
    assert t["nonconforming_accepted"] == 0 and round(t["nonconforming_produced"]) == 1806
    assert round(t["conforming_diverted"]) == 166
    assert r.metadata["monitor"]["expected_escapes"] == pytest.approx(0.015, abs=5e-4)
    with open("README.md", encoding="utf-8") as fh:
        readme = " ".join(fh.read().split())
    assert ("diverts 351.5-441.0 s with 0 of 1,806 nonconforming tablets accepted and 166 "
            "conforming ones diverted") in readme


def test_monitor_charts_as_its_comment_says():
    r = cmsim.run("scenarios/monitor_charts.toml")
    ev, ts = r.events, r.timeseries
    signals = ev[ev["type"] == "spc_signal"]
    first = {rule: signals.loc[[d["rule"] == rule for d in signals["data"]], "time_s"].min()
             for rule in ("cusum", "ewma")}
    assert first == {"cusum": 488.0, "ewma": 492.0}
    t, c = ts["time_s"].to_numpy(), ts["api_content"].to_numpy()
    assert c[t == 488.0][0] == pytest.approx(1.004, abs=5e-4)
    assert t[np.argmax(c > 1.05)] == 1339.0
    s = r.summary()
    assert [(d["start_s"], d["end_s"]) for d in s["diversion_events"]] == [
        (1160.0, 1170.0), (1219.0, 1800.0)]
    assert s["tablets"]["nonconforming_accepted"] == 0
    assert s["tablets"]["conforming_diverted"] == pytest.approx(2760, rel=0.02)
    # each signal takes the line out of the state of control for 3 readings (6 s)
    assert r.metadata["monitor"]["state_changes"][:2] == [[488.0, False], [498.0, True]]
    q = cmsim.run("scenarios/monitor_charts.toml", overrides=["diversion.policy=quantile"])
    qs = q.summary()
    assert [(d["start_s"], d["end_s"]) for d in qs["diversion_events"]] == [(1145.0, 1800.0)]
    assert qs["tablets"]["conforming_diverted"] == pytest.approx(4130, rel=0.02)


def test_init_into_a_place_that_cannot_be_written_is_invalid_input(tmp_path, capsys,
                                                                  monkeypatch):
    """A write the operating system refuses (read-only directory, /proc) used to end in
    'error: FileNotFoundError' with exit 1."""
    from cmsim.cli import main  # noqa: PLC0415
    from cmsim.commands import init  # noqa: PLC0415

    def refused(path, write, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(init, "atomic_write", refused)
    target = tmp_path / "s.toml"
    assert main(["init", str(target)]) == 2
    assert f"{target}: cannot write it (Permission denied)" in capsys.readouterr().err
    assert not target.exists()
