"""The saved-run comparison of ``report_ratios.py --compare`` on synthetic runs (no timing)."""

from __future__ import annotations

import json
import math

import pytest

from ratio_history import (
    NOISE_FLOORS,
    RunFileError,
    compare_runs,
    format_comparison,
    load_run,
    robust_spread,
    save_run,
)


def _run(ratios: dict[str, tuple[list[float], bool]], created: str = "2026-01-01T00:00:00+00:00",
         commit: str = "a" * 40) -> dict:
    """A run with per-round ratios ``{name: (rounds, lower_is_better)}``; median = middle."""
    out = {}
    for name, (rounds, lower) in ratios.items():
        ordered = sorted(rounds)
        out[name] = {"median": ordered[len(ordered) // 2], "best": min(rounds) if lower
                     else max(rounds), "rounds": rounds, "lower_is_better": lower}
    return {"schema": 1, "created": created, "commit": commit, "dirty": False, "machine": {},
            "load_start": [0.1, 0.1, 0.1], "load_end": [0.1, 0.1, 0.1],
            "settings": {"quick": False, "rounds": 3, "repeats": 5}, "ratios": out}


def test_robust_spread_of_known_values() -> None:
    # logs 0, ln 2, -ln 2: median 0, |dev| = 0, ln2, ln2 -> MAD = ln 2
    assert robust_spread([1.0, 2.0, 0.5]) == pytest.approx(1.4826 * math.log(2.0))
    assert robust_spread([3.0]) == 0.0
    assert robust_spread([2.0, 2.0, 2.0]) == 0.0
    # one wild round does not move the robust spread much
    assert robust_spread([1.0, 1.01, 0.99, 1.0, 50.0]) < 0.02


def test_regression_flagged_only_beyond_k_times_noise() -> None:
    saved = _run({"x_copy": ([2.0, 2.0, 2.0], True), "speedup": ([10.0, 10.0, 10.0], False)})
    # 20 % worse with a floor of 5 %: 0.18 > 3 x 0.05 -> regression; speed-up 5 % lower: same
    current = _run({"x_copy": ([2.4, 2.4, 2.4], True), "speedup": ([9.5, 9.5, 9.5], False)})
    f = {x.name: x for x in compare_runs(current, saved, k=3.0, floor=0.05)}
    assert f["x_copy"].status == "regression"
    assert f["x_copy"].change == pytest.approx(math.log(1.2))
    assert f["speedup"].status == "same"
    assert f["speedup"].change == pytest.approx(-math.log(0.95))


def test_direction_of_better_is_respected() -> None:
    saved = _run({"x_copy": ([2.0] * 3, True), "speedup": ([10.0] * 3, False)})
    # lower x_copy and higher speed-up are both improvements, never regressions
    current = _run({"x_copy": ([1.0] * 3, True), "speedup": ([20.0] * 3, False)})
    statuses = {x.name: x.status for x in compare_runs(current, saved, floor=0.05)}
    assert statuses == {"x_copy": "improvement", "speedup": "improvement"}
    # the same numbers the other way round are regressions
    statuses = {x.name: x.status for x in compare_runs(saved, current, floor=0.05)}
    assert statuses == {"x_copy": "regression", "speedup": "regression"}


def test_noisy_runs_widen_the_threshold() -> None:
    """A change within 3x the spread of the rounds is not flagged, even above the floor."""
    saved = _run({"r": ([1.0, 1.3, 0.77], True)})  # spread about 0.39 in log units
    current = _run({"r": ([1.5, 1.9, 1.2], True)})  # median 1.5: +41 %, i.e. about 1 spread
    (f,) = compare_runs(current, saved, k=3.0, floor=0.01)
    assert f.noise == pytest.approx(robust_spread([1.0, 1.3, 0.77]))
    assert f.status == "same"
    (f,) = compare_runs(current, saved, k=0.5, floor=0.01)
    assert f.status == "regression"


def test_floor_applies_when_rounds_agree_perfectly() -> None:
    saved = _run({"r": ([1.0] * 3, True)})
    current = _run({"r": ([1.1] * 3, True)})
    (f,) = compare_runs(current, saved, k=3.0, floor=0.08)
    assert f.noise == 0.08 and f.status == "same"  # 10 % < 24 %
    (f,) = compare_runs(current, saved, k=3.0, floor=0.02)
    assert f.status == "regression"  # 10 % > 6 %


def test_missing_ratio_is_reported_not_flagged() -> None:
    saved = _run({"old": ([1.0] * 3, True), "kept": ([1.0] * 3, True)})
    current = _run({"kept": ([1.0] * 3, True), "new": ([5.0] * 3, True)})
    f = {x.name: x.status for x in compare_runs(current, saved)}
    assert f == {"old": "missing", "kept": "same"}
    text = format_comparison(compare_runs(current, saved))
    assert "missing" in text and "kept" in text


def test_bad_parameters_are_refused() -> None:
    run = _run({"r": ([1.0], True)})
    with pytest.raises(ValueError, match="k must be"):
        compare_runs(run, run, k=0.0)


def test_save_then_load_latest_round_trip(tmp_path) -> None:
    first = _run({"r": ([1.0, 1.1, 0.9], True)}, created="2026-01-01T00:00:00+00:00")
    second = _run({"r": ([2.0, 2.1, 1.9], True)}, created="2026-01-02T00:00:00+00:00",
                  commit="b" * 40)
    p1 = save_run(first, tmp_path)
    p2 = save_run(second, tmp_path)
    assert p1 != p2 and p2.name.endswith("_bbbbbbbbbb.json")
    assert not list(tmp_path.glob("*.tmp"))
    latest = load_run("latest", tmp_path)
    assert latest["ratios"]["r"]["rounds"] == [2.0, 2.1, 1.9]
    assert latest["path"] == str(p2)
    assert load_run(p1)["ratios"] == first["ratios"]


@pytest.mark.parametrize("content, match", [
    ("{not json", "not JSON"),
    (json.dumps({"schema": 1}), "field 'ratios' missing"),
    (json.dumps({"ratios": {"r": {"median": -1.0}}}), r"ratios.r.median = -1.0"),
    (json.dumps({"ratios": {"r": {"median": 1.0, "rounds": [1.0, "x"]}}}), r"ratios.r.rounds"),
])
def test_unreadable_runs_name_the_file_and_the_field(tmp_path, content, match) -> None:
    path = tmp_path / "run.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RunFileError, match=match) as info:
        load_run(path)
    assert str(path) in str(info.value)


def test_missing_file_and_empty_directory(tmp_path) -> None:
    with pytest.raises(RunFileError, match="cannot read"):
        load_run(tmp_path / "nope.json")
    with pytest.raises(RunFileError, match="no saved run"):
        load_run("latest", tmp_path)


def test_report_exits_3_on_unreadable_saved_run(tmp_path) -> None:
    """The command refuses a bad saved run before measuring anything."""
    import report_ratios

    bad = tmp_path / "bad.json"
    bad.write_text("[]", encoding="utf-8")
    assert report_ratios.main(["--compare", str(bad)]) == 3


def test_default_floors_are_the_measured_per_ratio_spreads() -> None:
    saved = _run({"tis_stream_x_copy": ([1.0] * 3, True), "batch_fir_x_copy": ([8.0] * 3, True)})
    current = _run({"tis_stream_x_copy": ([1.15] * 3, True),
                    "batch_fir_x_copy": ([9.6] * 3, True)})
    f = {x.name: x for x in compare_runs(current, saved)}
    assert f["tis_stream_x_copy"].noise == NOISE_FLOORS["tis_stream_x_copy"]
    assert f["tis_stream_x_copy"].status == "regression"  # +15 % on a 3 % single-thread floor
    assert f["batch_fir_x_copy"].status == "same"  # +20 % within the noise of a 2-thread batch
