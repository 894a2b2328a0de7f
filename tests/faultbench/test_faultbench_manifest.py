"""The fault manifest: the shipped one parses, labels hold against the simulator's ground truth,
bad manifests give one clear message per problem (file, field path, value, rule)."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import cmsim
from cmsim.config import load_scenario, read_toml
from cmsim.faultbench import KINDS, ManifestError, load_manifest

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "scenarios" / "faults"
MANIFEST = FOLDER / "manifest.toml"
FAULTS = load_manifest(MANIFEST)
BY_NAME = {f.name: f for f in FAULTS}

#: the issue's list: at least one case of each
ISSUE_KINDS = {"none", "feeder_stop", "partial_feed", "feeder_drift", "refill_surge",
               "lot_change", "blender_speed", "press_stop", "nir_bias", "nir_drift",
               "nir_dropout", "start_up", "shut_down", "overlap"}


def _nir_faults(raw: dict) -> list[dict]:
    return [d for d in raw.get("disturbances", []) if d.get("type") == "nir_fault"]


def _without_nir_faults(raw: dict) -> dict:
    """The scenario without its NIR sensor faults."""
    out = copy.deepcopy(raw)
    out["disturbances"] = [d for d in out.get("disturbances", []) if d.get("type") != "nir_fault"]
    return out


def test_manifest_lists_every_kind_of_the_issue_and_every_file_of_the_folder():
    assert len(FAULTS) >= 13
    assert ISSUE_KINDS <= {f.kind for f in FAULTS}
    assert sum(f.is_reference for f in FAULTS) == 1
    files = {p.name for p in FOLDER.glob("*.toml")} - {"manifest.toml"}
    assert {f.path.name for f in FAULTS} == files
    assert all(f.path.parent == FOLDER.resolve() for f in FAULTS)


def test_shipped_copy_is_identical():
    shipped = Path(str(resources.files("cmsim.data") / "scenarios" / "faults"))
    top = {p.name: p.read_bytes() for p in FOLDER.iterdir() if p.is_file()}
    assert top == {p.name: p.read_bytes() for p in shipped.iterdir() if p.is_file()}
    assert cmsim.faultbench.default_manifest().resolve() == (shipped / "manifest.toml").resolve()


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_scenario_validates(fault):
    sc = load_scenario(fault.path)
    assert sc.name == fault.name
    if fault.start_s is not None:
        assert fault.start_s < sc.simulation.duration
    if fault.end_s is not None:
        assert fault.end_s <= sc.simulation.duration


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_scenario_is_the_example_line_under_the_shared_noise(fault):
    sc = load_scenario(fault.path)
    assert sc.simulation.dt == 0.5
    assert [(f.name, f.role) for f in sc.feeders] == [("api", "api"), ("mcc", "excipient"),
                                                     ("mgst", "lubricant")]
    assert [f.mass_flow * 3600 for f in sc.feeders] == pytest.approx([2.0, 17.9, 0.1])
    assert [f.noise_rsd for f in sc.feeders] == pytest.approx([0.05, 0.02, 0.10])
    assert [f.noise_correlation_time for f in sc.feeders] == [2.0, 2.0, 2.0]
    assert sc.pat.noise_sd == pytest.approx(0.0025) and sc.pat.sample_period == 2.0
    assert (sc.pat.latency, sc.pat.integration_time) == (2.0, 1.0)
    assert sc.monitor.load_cell_period == 1.0
    assert sc.monitor.load_cell_noise == pytest.approx(2e-4)
    assert sc.diversion is not None
    assert sc.press.tablet_mass == pytest.approx(250e-6)
    assert sc.specification.api_content_limits == (0.95, 1.05)
    if fault.kind == "start_up":
        assert sc.simulation.initial_state == "empty"


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_label_holds_against_the_true_content(fault):
    """At the file's own seed the simulator's true content agrees with the manifest: a case
    labelled nonconforming makes nonconforming tablets, and only after the fault started; a
    case labelled conforming makes none."""
    res = cmsim.run(load_scenario(fault.path))
    nonconf = np.asarray(res.nonconforming, dtype=bool)
    tablets = res.tablets
    count = float(tablets[nonconf].sum())
    assert count == pytest.approx(res.summary()["tablets"]["nonconforming_produced"])
    if fault.nonconforming:
        assert count > 100
        assert res.time_s[nonconf].min() > fault.start_s
    else:
        assert count < 0.5


def test_sensor_faults_do_not_touch_the_process():
    # an NIR fault changes what the monitor sees, never the true content: the labels of the
    # NIR cases rest on this
    checked = 0
    for fault in FAULTS:
        raw = read_toml(fault.path)
        if not _nir_faults(raw):
            continue
        checked += 1
        with_fault = cmsim.run(load_scenario(fault.path))
        without = cmsim.run(load_scenario(_without_nir_faults(raw), source=fault.path))
        np.testing.assert_array_equal(with_fault.api_content, without.api_content)
    assert checked >= 4  # bias, drift, dropout, frozen (and the overlap with a dropout)


# --------------------------------------------------------------------------- bad manifests

GOOD = """
[[fault]]
name = "stop"
file = "s.toml"
kind = "feeder_stop"
start_s = 300.0
end_s = 310.0
nonconforming = true
description = "API stop."
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "s.toml").write_text("name = 's'\n")
    path = tmp_path / "manifest.toml"
    path.write_text(text)
    return path


def test_good_manifest_parses(tmp_path):
    (fault,) = load_manifest(_write(tmp_path, GOOD))
    assert (fault.name, fault.kind, fault.start_s, fault.end_s, fault.nonconforming) == \
        ("stop", "feeder_stop", 300.0, 310.0, True)
    assert fault.path == (tmp_path / "s.toml").resolve()
    assert set(KINDS) >= ISSUE_KINDS


@pytest.mark.parametrize(("edit", "field", "rule"), [
    (("kind = \"feeder_stop\"", "kind = \"stall\""), "fault[0].kind", "must be one of"),
    (("end_s = 310.0", "end_s = 290.0"), "fault[0].end_s", "must be > start_s (300 s)"),
    (("start_s = 300.0", "start_s = -1.0"), "fault[0].start_s", "must be a number of seconds"),
    (("start_s = 300.0", "start_s = \"300 s\""), "fault[0].start_s", "number of seconds"),
    (("start_s = 300.0\n", ""), "fault[0].start_s", "required unless kind"),
    (("file = \"s.toml\"", "file = \"t.toml\""), "fault[0].file", "file not found"),
    (("file = \"s.toml\"", "file = \"s.csv\""), "fault[0].file", "ending in .toml"),
    (("nonconforming = true", "nonconforming = 1"), "fault[0].nonconforming",
     "must be true or false"),
    (("nonconforming = true", "nonconfirming = true"), "fault[0].nonconfirming",
     "unknown key"),
    (("name = \"stop\"", "name = \"Stop Case\""), "fault[0].name", "lower-case"),
    (("description = \"API stop.\"", "description = \" \""), "fault[0].description",
     "non-empty"),
    (("description = \"API stop.\"\n", ""), "fault[0].description", "required"),
])
def test_bad_field_names_file_path_value_and_rule(tmp_path, edit, field, rule):
    path = _write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    text = str(err.value)
    assert text.startswith(f"{path}: {len(err.value.problems)} problem(s)")
    lines = [ln.strip() for ln in text.splitlines()[1:]]
    assert any(ln.startswith(f"{field} = ") and rule in ln for ln in lines), text


def test_every_problem_is_reported_at_once(tmp_path):
    text = "extra = 1\n" + GOOD + GOOD.replace('kind = "feeder_stop"', 'kind = "none"')
    with pytest.raises(ManifestError) as err:
        load_manifest(_write(tmp_path, text))
    fields = [p for p, _, _ in err.value.problems]
    assert fields == ["extra", "fault[1].name", "fault[1].start_s", "fault[1].end_s",
                      "fault[1].nonconforming"]
    assert "duplicate name (also fault[0])" in err.value.problems[1][2]


def test_only_one_reference_case(tmp_path):
    ref = ('[[fault]]\nname = "{n}"\nfile = "s.toml"\nkind = "none"\nnonconforming = false\n'
           'description = "no fault"\n')
    with pytest.raises(ManifestError, match=r"fault\[1\]\.kind = 'none': at most one"):
        load_manifest(_write(tmp_path, ref.format(n="a") + ref.format(n="b")))


@pytest.mark.parametrize(("text", "rule"), [
    ("[[fault]\n", "not valid TOML"),
    ("", "must be a non-empty list of [[fault]] tables"),
    ("fault = 3\n", "must be a non-empty list"),
    ("fault = [3]\n", "must be a table [[fault]]"),
])
def test_unreadable_manifests(tmp_path, text, rule):
    with pytest.raises(ManifestError) as err:
        load_manifest(_write(tmp_path, text))
    assert rule in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="cannot read the file"):
        load_manifest(tmp_path / "nope.toml")


def test_manifest_error_pickles():
    import pickle

    err = ManifestError("m.toml", [("fault[0].kind", "x", "bad")])
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.problems == err.problems


def test_docs_table_agrees_with_the_manifest():
    doc = (ROOT / "docs" / "fault-benchmark.md").read_text(encoding="utf-8")
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[1:4]
    assert set(rows) == set(BY_NAME)
    for name, (kind, label, nonconf) in rows.items():
        f = BY_NAME[name]
        want = "-" if f.start_s is None else \
            f"{f.start_s:g}-{'end' if f.end_s is None else format(f.end_s, 'g')}"
        assert (kind, label, nonconf) == (f.kind, want, "yes" if f.nonconforming else "no"), name
