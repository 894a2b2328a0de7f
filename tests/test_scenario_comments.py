"""Every shipped scenario's "Monitor (..., measured ...)" comment is what a run gives.

The comments state what the monitor does on the scenario at its seed: the diverted
intervals, the nonconforming tablets made and accepted, the conforming tablets diverted, the
monitor's expected escapes or the content range. They are parsed here and checked against a
run, so a change of the monitor that moves them fails until the comment is updated.
"""

from __future__ import annotations

import glob
import re

import numpy as np
import pytest

import cmsim

NUM = r"[\d,]+(?:\.\d+)?"


def _comment(path: str) -> str | None:
    text = open(path, encoding="utf-8").read()
    m = re.search(r"# Monitor \(default risk policy, seed \d+, measured;.*?(?=\n[^#])", text,
                  re.S)
    return " ".join(m.group(0).replace("#", " ").split()) if m else None


def _n(text: str) -> float:
    return float(text.replace(",", ""))


SCENARIOS = [p for p in sorted(glob.glob("scenarios/*.toml")) if _comment(p)]


def test_the_comments_are_found():
    assert len(SCENARIOS) >= 12


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.split("/")[-1])
def test_the_monitor_comment_is_what_a_run_gives(path):
    note = _comment(path).split("target):", 1)[1]  # after the conditions of the run
    r = cmsim.run(path)
    s = r.summary()
    t = s["tablets"]
    events = [(e["start_s"], e["end_s"]) for e in s["diversion_events"]]
    assert t["nonconforming_accepted"] == 0.0
    if "no diversion" in note:
        assert events == [] and t["diverted"] == 0.0
    else:
        where = note.split(";")[0] if "diverts" in note else \
            note.split(";", 1)[1].split("conforming tablets of")[0]
        said = re.findall(rf"({NUM})-({NUM}) s", where)
        assert events == [(_n(a), _n(b)) for a, b in said]
    m = re.search(rf"0 of ({NUM}) nonconforming tablets accepted, ({NUM}) conforming "
                  rf"tablets diverted \(expected escapes ({NUM})\)", note)
    if m:
        assert round(t["nonconforming_produced"]) == _n(m.group(1))
        assert round(t["conforming_diverted"]) == _n(m.group(2))
        expected = r.metadata["monitor"]["expected_escapes"]
        assert float(f"{expected:.2g}") == pytest.approx(_n(m.group(3)))
    else:
        assert "no nonconforming tablet" in note and t["nonconforming_produced"] == 0.0
        m = re.search(rf": ({NUM}) conforming tablets of ({NUM})", note)
        if m:
            assert round(t["conforming_diverted"]) == _n(m.group(1))
            assert round(t["produced"]) == _n(m.group(2))
    m = re.search(rf"content ({NUM})-({NUM}) % of target", note)
    if m:
        c = r.api_content[r.tablets > 0]
        assert (round(100 * np.nanmin(c), 1), round(100 * np.nanmax(c), 1)) == (
            _n(m.group(1)), _n(m.group(2)))
