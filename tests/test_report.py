"""cmsim.report: a self-contained report.html, checked by parsing and in a headless browser."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

import cmsim
from cmsim import report, rtd
from cmsim.errors import ParameterError

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "api_feeder_stop.toml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Collect(HTMLParser):
    """Every start tag with its attributes, and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(text: str) -> _Collect:
    p = _Collect()
    p.feed(text)
    p.close()
    return p


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    result = cmsim.run(SCENARIO, out=out)
    return result, out


def with_monitoring(result):
    """The run plus diversion windows, a diverted mask and NIR readings (as the PAT integration
    will provide them), and text that must be escaped."""
    r = cmsim.results.SimulationResult(**{
        k: getattr(result, k) for k in (
            "dt", "materials", "channels", "api_material", "gate_flow", "tablet_mass",
            "target_api_fraction", "api_content_limits", "mass", "channel_mass",
            "mass_balance_max_rel_error", "metadata")},
        diverted=np.zeros(result.n_ticks, bool),
        event_log=[*result.event_log,
                   {"time_s": 400.0, "type": "<script>alert(1)</script>", "source": "a&b",
                    "data": {"note": "</td><b>x"}}],
        diversion_events=[
            {"start_s": 350.0, "end_s": 445.5, "trigger": "pat_oos<b>", "tablets": 1234.5},
            {"start_s": 600.0, "end_s": 610.0, "trigger": "feeder_fault:api", "tablets": 10.0,
             "mass_kg": 0.0025}])
    r.diverted[700:891] = True
    t = np.arange(0.0, 900.0, 2.0)
    r.nir_readings = {"time_s": t, "api_fraction": np.interp(t, r.time_s, r.fraction("API"))}
    return r


# ------------------------------------------------------------------------------ output dir
def test_output_dir_has_report_and_new_figures(run_dir):
    _, out = run_dir
    for name in ("report.html", "funnel.png", "api_trace.png", "lots_gantt.png"):
        assert (out / name).is_file(), name
    for name in ("funnel.png", "api_trace.png", "lots_gantt.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
        img = mpimg.imread(out / name)
        assert img.shape[0] > 200 and img.shape[1] > 600


def test_report_is_self_contained_and_valid(run_dir):
    _, out = run_dir
    text = (out / "report.html").read_text(encoding="utf-8")
    p = parse(text)
    tags = [t for t, _ in p.tags]
    assert tags[0] == "html" and "body" in tags and "style" in tags
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for tag, attrs in p.tags:
        for key in ("src", "href", "srcset", "data", "action"):
            val = attrs.get(key)
            if val is not None:
                assert val.startswith("data:image/png;base64,"), (tag, key, val[:60])
    assert "http://" not in text and "https://" not in text and "url(" not in text
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == 4  # api trace, mass flow, funnel (RTD recorded by cmsim.run), lots
    for a in imgs:
        png = base64.b64decode(a["src"].split(",", 1)[1], validate=True)
        assert png[:8] == PNG_MAGIC
        assert mpimg.imread(io.BytesIO(png)).ndim == 3
        assert a.get("alt")


def test_report_contains_the_summary_numbers(run_dir):
    result, out = run_dir
    text = " ".join(parse((out / "report.html").read_text(encoding="utf-8")).text)
    s = json.loads((out / "summary.json").read_text())
    assert s["scenario"] in text and s["scenario_sha256"] in text and str(s["seed"]) in text
    assert s["cmsim_version"] in text
    assert "API feeder stops for 10 s at 300 s." in text  # scenario description
    for value in s["tablets"].values():
        assert f"{value:,.1f}" in text
    assert f"{s['mass_balance_max_rel_error']:.3e}" in text
    for key in ("fed", "accepted", "holdup"):
        for v in s["mass_kg"][key].values():
            assert f"{v:.6f}" in text
    # lot genealogy: one row per lot with lot_forward's numbers
    for m, lot in result.channels:
        f = result.lot_forward(m, lot)
        assert f"{f['accepted_kg']:.5f}" in text and f"{f['accepted_tablets']:,.1f}" in text
    for ev in result.event_log:
        assert ev["type"] in text
    if not s["diversion_events"]:
        assert "No diversion window was opened" in text
    for d in s["diversion_events"]:  # one row per window of the diversion manager
        assert d["trigger"] in text and f"{d['tablets']:,.1f}" in text
        assert f"{d['start_s']:,.2f}" in text and f"{d['end_s']:,.2f}" in text
        mass = d.get("mass_kg", d["tablets"] * result.tablet_mass)
        assert f"{mass:.4f}" in text


def test_diversions_readings_and_escaping(run_dir, tmp_path):
    result, _ = run_dir
    r = with_monitoring(result)
    path = report.write_report(r, tmp_path / "r.html")
    raw = path.read_text(encoding="utf-8")
    p = parse(raw)
    assert "<script" not in raw and "<b>x" not in raw and "pat_oos<b>" not in raw
    assert html.escape("<script>alert(1)</script>") in raw and "pat_oos&lt;b&gt;" in raw
    text = " ".join(p.text)
    # diversion table: both windows, their durations and masses (tablets x tablet mass)
    assert "95.50" in text and "1,234.5" in text and f"{1234.5 * 250e-6:.4f}" in text
    assert "feeder_fault:api" in text and "0.0025" in text
    tables = [i for i, (t, _) in enumerate(p.tags) if t == "table"]
    # provenance, tablets, mass, diversions, genealogy, events + the inputs section's tables
    # (feeders, RTDs, disturbances and one per scenario section present)
    sc = r.metadata["scenario_data"]
    sections = [k for k in ("specification", "pat", "diversion", "monitor", "control")
                if sc.get(k)]
    assert len(tables) == 6 + 3 + len(sections)
    assert "2" in text.split("diversion windows")[0]  # the KPI count precedes its label


def test_no_rtd_means_no_funnel_but_a_note(run_dir, tmp_path):
    result, _ = run_dir
    r = with_monitoring(result)
    r.metadata = {k: v for k, v in r.metadata.items() if k != "line_rtd"}
    raw = report.write_report(r, tmp_path / "r.html").read_text(encoding="utf-8")
    p = parse(raw)
    assert len([a for t, a in p.tags if t == "img"]) == 3
    assert 'id="fig-funnel"' not in raw and "funnel plot is not drawn" in raw
    # an explicit model brings it back
    raw = report.write_report(r, tmp_path / "r2.html", model=rtd.CSTR(60.0)).read_text()
    assert 'id="fig-funnel"' in raw


@pytest.mark.parametrize("name", ["blender_gericke_like_axial", "blender_empirical_example"])
def test_report_of_a_line_with_a_numerically_integrated_rtd(name, tmp_path):
    """A shipped dispersion or tracer-curve blender: the report draws the funnel of the line's
    series (integrated numerically; this took minutes before the batched quadrature), and its
    boundary at the figure's durations is the model's own."""
    out = tmp_path / "run"
    result = cmsim.run(SCENARIO, out=out, overrides=[
        f'blender.rtd={{model="model", name="{name}"}}', "simulation.duration=6 min"])
    raw = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="fig-funnel"' in raw and (out / "funnel.png").stat().st_size > 0
    stages = result.metadata["line_rtd"]["stages"]
    assert stages[0]["model"] in ("AxialDispersion", "Empirical")
    model = report.rtd_from_params(result.metadata["line_rtd"])
    g = rtd.peak_response(model, [1.0, 10.0, 100.0])
    assert np.all(np.diff(g) > 0) and 0 < g[0] < g[-1] <= 1


def test_no_funnel_when_no_overfeed_can_leave_the_limits(run_dir):
    result, _ = run_dir
    r = with_monitoring(result)
    r.target_api_fraction = 0.96  # w0 (1 + 0.05) >= 1: the overfeed boundary does not exist
    figs = report.render_figures(r, model=rtd.CSTR(60.0))
    assert "funnel" not in figs and {"api_trace", "lots_gantt", "mass_flow"} <= set(figs)


def test_events_list_is_capped(run_dir, tmp_path, monkeypatch):
    result, _ = run_dir
    r = with_monitoring(result)
    r.event_log = [{"time_s": float(i), "type": f"tick{i}", "source": "x", "data": {}}
                   for i in range(30)]
    monkeypatch.setattr(report, "EVENTS_SHOWN", 10)
    raw = report.render_html(r, figures={})
    assert "tick9<" in raw and "tick10<" not in raw and "First 10 of 30 events" in raw


def test_rtd_from_params_round_trip_and_errors():
    m = rtd.Series(rtd.TanksInSeries(60.0, 5), rtd.PFR(10.0), rtd.CSTR(30.0))
    p = {"model": "Series", "stages": [{"model": type(s).__name__, **s.params}
                                       for s in (rtd.TanksInSeries(60.0, 5), rtd.PFR(10.0),
                                                 rtd.CSTR(30.0))]}
    back = report.rtd_from_params(json.loads(json.dumps(p)))
    assert back == m
    assert back.mean == pytest.approx(100.0)
    with pytest.raises(ParameterError) as exc:
        report.rtd_from_params({"model": "os.system"})
    assert exc.value.name == "params.model"
    with pytest.raises(ParameterError):
        report.rtd_from_params({"model": "CSTR", "tau": 3.0})
    with pytest.raises(ParameterError):
        report.rtd_from_params({"model": "CSTR", "mean_residence_time": -3.0})


def test_write_report_is_atomic(run_dir, tmp_path, monkeypatch):
    result, _ = run_dir
    target = tmp_path / "report.html"
    target.write_text("old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        report.write_report(result, target, figures={})
    assert target.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["report.html"]  # no temp file left
    monkeypatch.undo()
    report.write_report(result, target, figures={})
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert oct(target.stat().st_mode & 0o777) == "0o644"


# ------------------------------------------------------------------------------ browser
def _chromium() -> str | None:
    for c in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if c and os.access(c, os.X_OK):
            return c
    return None


def _screenshot(url: str, png: Path, tmp: Path, size: str = "1280,2000") -> list[str]:
    """Headless screenshot of ``url``; return the page's console lines (chromium's log)."""
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium); the real-browser "
                    "check of report.html is skipped")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-extensions", "--mute-audio",
           f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
           f"--screenshot={png}", f"--window-size={size}", url]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "HOME": str(tmp)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"headless chromium did not finish within 60 s: {' '.join(cmd)}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert png.is_file(), proc.stderr[-2000:]
    # chromium logs every console message and uncaught exception of the page as
    # "...:INFO:CONSOLE:<line>] "<message>", source: <url> (<line>)"
    return [ln for ln in (proc.stdout + proc.stderr).splitlines()
            if ":CONSOLE" in ln or "Uncaught" in ln]


def test_console_capture_detects_page_errors(tmp_path):
    """Negative control: the capture used below does see console errors and exceptions."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><p>x</p><script>console.error("probe-error");'
                    'throw new Error("probe-uncaught");</script></body></html>')
    lines = _screenshot(page.as_uri(), tmp_path / "bad.png", tmp_path, size="400,300")
    assert any("probe-error" in ln for ln in lines), lines
    assert any("Uncaught" in ln and "probe-uncaught" in ln for ln in lines), lines


def test_report_renders_in_headless_chromium_without_console_errors(run_dir, tmp_path):
    _, out = run_dir
    shot = tmp_path / "shot.png"
    console = _screenshot((out / "report.html").as_uri(), shot, tmp_path)
    assert console == []
    assert shot.stat().st_size > 20_000
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (2000, 1280)
    assert float(img.std()) > 0.05  # not a single colour
    non_white = (img < 0.9).any(axis=2).mean()
    assert 0.02 < non_white < 0.9
    # the embedded API trace PNG was decoded and drawn: its tab:blue line is on screen
    blue = np.abs(img - np.array([31, 119, 180]) / 255.0).max(axis=2) < 0.08
    assert blue.sum() > 300
