"""Jupyter display (``_repr_html_``) of results, RTD models and RTD fits.

Each HTML string is parsed with :mod:`html.parser`: it must be well formed (every tag closed in
order) and its table cells must hold the numbers computed here independently (closed forms,
sums over the result's arrays).
"""

from __future__ import annotations

import dataclasses
import math
from html.parser import HTMLParser

import numpy as np
import pytest
from scipy import stats

import cmsim
from cmsim import rtd

_VOID = {"br", "hr", "img", "meta", "link", "input", "col", "wbr"}


class _TableParser(HTMLParser):
    """Checks nesting and collects ``{row header: [cell, ...]}`` of all tables."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.rows: dict[str, list[str]] = {}
        self.captions: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag not in _VOID:
            self.stack.append(tag)
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "caption":
            self._caption = []

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack}"
        self.stack.pop()
        if tag in ("td", "th") and self._row is not None:
            self._row.append("".join(self._cell or []).strip())
            self._cell = None
        elif tag == "tr" and self._row:
            self.rows[self._row[0]] = self._row[1:]
            self._row = None
        elif tag == "caption":
            self.captions.append("".join(self._caption or []))
            self._caption = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._caption is not None:
            self._caption.append(data)


def parse(html: str) -> _TableParser:
    p = _TableParser()
    p.feed(html)
    p.close()
    assert p.stack == [], f"unclosed tags: {p.stack}"
    assert p.rows, "no table rows"
    return p


def num(p: _TableParser, key: str, col: int = 0) -> float:
    return float(p.rows[key][col])


# ------------------------------------------------------------------------------ RTD models
@pytest.mark.parametrize("model, mean, var, ppf", [
    (rtd.CSTR(30.0), 30.0, 900.0, lambda q: -30.0 * math.log1p(-q)),
    (rtd.TanksInSeries(60.0, n_tanks=5), 60.0, 720.0,
     lambda q: stats.gamma.ppf(q, 5, scale=12.0)),
    (rtd.PFR(10.0), 10.0, 0.0, lambda q: 10.0),
])
def test_model_html_holds_closed_form_moments_and_quantiles(model, mean, var, ppf):
    p = parse(model._repr_html_())
    assert p.captions == [f"RTD model: {type(model).__name__}"]
    assert num(p, "mean [s]") == pytest.approx(mean, rel=1e-5)
    assert num(p, "variance [s^2]") == pytest.approx(var, rel=1e-5, abs=1e-12)
    assert num(p, "standard deviation [s]") == pytest.approx(math.sqrt(var), rel=1e-5)
    for q, label in ((0.005, "t_0.5% [s]"), (0.5, "t_50% [s]"), (0.995, "t_99.5% [s]")):
        assert num(p, label) == pytest.approx(ppf(q), rel=1e-5)
    for name, value in model.params.items():
        unit = {"mean_residence_time": "s", "delay": "s", "n_tanks": "-"}[name]
        assert num(p, f"{name} [{unit}]") == pytest.approx(value, rel=1e-5)


def test_series_html_lists_stages_and_worked_example_quantiles():
    line = rtd.Series(rtd.PFR(10.0), rtd.TanksInSeries(60.0, n_tanks=5), rtd.CSTR(30.0))
    p = parse(line._repr_html_())
    assert p.rows["stage 1"] == ["PFR(delay=10.0)"]
    assert p.rows["stage 3"] == ["CSTR(mean_residence_time=30.0)"]
    assert num(p, "mean [s]") == pytest.approx(10.0 + 60.0 + 30.0, rel=1e-6)
    assert num(p, "variance [s^2]") == pytest.approx(60.0**2 / 5 + 30.0**2, rel=1e-6)
    # published reference values of the ICH Q13-style worked example line
    assert num(p, "t_0.5% [s]") == pytest.approx(31.732, abs=1e-3)
    assert num(p, "t_99.5% [s]") == pytest.approx(245.444, abs=1e-3)


def test_empirical_html_summarises_the_curve():
    t = np.linspace(0.0, 300.0, 151)
    e = stats.gamma.pdf(t, 5, scale=12.0)
    p = parse(rtd.Empirical(t, e)._repr_html_())
    assert p.rows["t"] == ["151 values, 0 to 300"]
    # trapezoid mean of the piecewise-linear curve, computed here
    def trapz(y):
        return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(t)))

    assert num(p, "mean [s]") == pytest.approx(trapz(t * e) / trapz(e), rel=1e-4)


# -------------------------------------------------------------------------------- RTD fits
def test_fit_html_holds_parameters_intervals_and_r_squared():
    t = np.arange(0.0, 400.0, 2.0)
    clean = stats.gamma.pdf(t, 5, scale=12.0)
    y = clean + np.random.default_rng(3).normal(0.0, 2e-4, t.size)
    f = rtd.fit(t, y, "tanks_in_series")
    p = parse(f._repr_html_())
    assert p.captions[0] == "RTD fit: tanks_in_series (pulse data)"
    q = stats.t.ppf(0.975, t.size - 3)
    for name, unit in (("mean_residence_time", "s"), ("n_tanks", "-")):
        value, se = f.params[name], f.stderr[name]
        row = p.rows[f"{name} [{unit}]"]
        got = [float(x) for x in row]
        assert got == pytest.approx([value, se, value - q * se, value + q * se], rel=1e-5)
    # R^2 from the data and the fitted curve, computed here
    resid = y - f.predict(t)
    r2 = 1.0 - np.sum(resid**2) / np.sum((y - y.mean()) ** 2)
    assert num(p, "R^2") == pytest.approx(r2, rel=1e-5)
    assert num(p, "residual RMS") == pytest.approx(np.sqrt(np.mean(resid**2)), rel=1e-5)
    tau, n = f.params["mean_residence_time"], f.params["n_tanks"]
    assert num(p, "fitted variance [s^2]") == pytest.approx(tau**2 / n, rel=1e-5)
    assert p.rows["points used / dof"] == [f"{t.size} / {t.size - 3}"]


# ----------------------------------------------------------------------- simulation results
@pytest.fixture(scope="module")
def stop_run():
    return cmsim.run("api_feeder_stop", seed=4, overrides=["simulation.duration=10 min"])


def test_result_html_holds_independent_key_figures(stop_run):
    r = stop_run
    p = parse(r._repr_html_())
    tablets = r.gate_flow.sum(axis=0) * r.dt / r.tablet_mass
    api = r.gate_flow[[i for i, (m, _) in enumerate(r.channels) if m == "API"]].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        content = api / r.gate_flow.sum(axis=0) / r.target_api_fraction
    lo, hi = r.api_content_limits
    bad = (content < lo) | (content > hi)
    div = np.asarray(r.diverted, dtype=bool)
    assert div.any() and bad.any()  # the stop is diverted: the figures are not all zero
    expected = {
        "tablets produced": tablets.sum(),
        "tablets accepted": tablets[~div].sum(),
        "tablets diverted": tablets[div].sum(),
        "escapes (nonconforming accepted)": tablets[bad & ~div].sum(),
        "waste (conforming diverted)": tablets[~bad & div].sum(),
    }
    for key, value in expected.items():
        assert num(p, key) == pytest.approx(value, abs=0.051), key
    assert num(p, "duration [s]") == pytest.approx(600.0)
    m_in = sum(r.mass["fed"].values()) + sum(r.mass["initial_holdup"].values())
    m_out = sum(sum(r.mass[k].values()) for k in ("accepted", "diverted", "holdup"))
    assert num(p, "mass in: fed + initial hold-up [kg]") == pytest.approx(m_in, rel=1e-5)
    assert num(p, "mass out: accepted + diverted + hold-up [kg]") == pytest.approx(m_in,
                                                                                rel=1e-5)
    assert m_out == pytest.approx(m_in, rel=1e-9)
    assert num(p, "mass balance error (max relative)") < 1e-9
    assert num(p, "diversion events") == len(r.diversion_events)
    assert p.rows["lots"] == ["API: L0; MCC: L0; MgSt: L0"]
    assert p.rows["seed"] == ["4"]
    assert p.rows["scenario SHA-256"][0].rstrip(".") == r.metadata["scenario_sha256"][:16]
    assert len(p.rows) <= 15  # compact: a table of key figures, not a wall of text


def test_result_html_escapes_names(stop_run):
    md = {**stop_run.metadata, "scenario": "<b>line & co</b>"}
    odd = dataclasses.replace(stop_run, metadata=md,
                              channels=(("API", "<lot>"),) + stop_run.channels[1:])
    p = parse(odd._repr_html_())
    assert p.captions == ["cmsim run: <b>line & co</b>"]  # shown as text, not markup
    assert p.rows["lots"][0].startswith("API: <lot>; ")
