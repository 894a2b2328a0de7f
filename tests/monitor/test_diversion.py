"""Diversion manager (tick mapping, causality, never shorten, counting), alarm run tracker,
and escapes/waste counted on hand-built gate masks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsim.errors import ParameterError
from cmsim.monitor.diversion import DiversionManager, window_ticks
from cmsim.monitor.state import StartupQualifier
from cmsim.monitor.tracker import RunTracker
from cmsim.monitor.windows import DiversionWindow
from cmsim.results import SimulationResult


def test_window_ticks_cover_the_window():
    assert window_ticks(358.65, 440.89, 0.5) == (717, 882)
    assert window_ticks(10.0, 20.0, 1.0) == (10, 20)
    assert window_ticks(10.0, 10.0, 1.0) == (10, 11)
    with pytest.raises(ParameterError, match="dt"):
        window_ticks(0.0, 1.0, 0.0)


def test_causality_clip_and_escaped_time():
    m = DiversionManager(100, 1.0, gate_delay=0.5)
    r = m.request(DiversionWindow(20.0, 30.0, "late", "PAT"), decision_s=24.2)
    # the gate can act from ceil(24.2 + 0.5) = 25 on; [20, 25) escaped
    assert (r.k_lo, r.k_hi) == (25, 30)
    assert r.escaped_s == pytest.approx(5.0)
    assert np.flatnonzero(m.plan).tolist() == list(range(25, 30))


def test_never_shorten_and_merge_events():
    m = DiversionManager(200, 1.0)
    m.request(DiversionWindow(10.0, 50.0, "a", "B"), 0.0, key="a")
    m.request(DiversionWindow(10.0, 30.0, "a", "B"), 5.0, key="a")  # shorter: ignored
    assert m.plan[10:50].all() and not m.plan[50:].any()
    m.request(DiversionWindow(45.0, 80.0, "b", "A"), 1.0)
    m.request(DiversionWindow(120.0, 130.0, "c", "PAT"), 1.0)
    flow = np.full((2, 200), 0.5)
    ev = m.events(flow, tablet_mass=0.25)
    assert [(e["start_s"], e["end_s"], e["trigger"]) for e in ev] == [
        (10.0, 80.0, "a+b"), (120.0, 130.0, "c")]
    assert ev[0]["mass_kg"] == pytest.approx(70.0) and ev[0]["tablets"] == pytest.approx(280.0)
    assert len(ev[0]["windows"]) == 2


def test_changed_range_reported_once():
    m = DiversionManager(50, 1.0)
    m.request(DiversionWindow(5.0, 9.0, "a", "B"), 0.0)
    m.request(DiversionWindow(20.0, 22.0, "b", "B"), 0.0)
    assert m.pop_changed() == (5, 22) and m.pop_changed() is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=60), st.integers(1, 4), st.integers(1, 4),
       st.lists(st.integers(1, 59), max_size=5))
def test_run_tracker_is_chunk_invariant_and_matches_a_loop(bad, k_on, k_off, cuts):
    bad = np.array(bad)
    t = np.arange(bad.size, dtype=float)
    one = RunTracker(k_on, k_off).update(t, bad)
    tr = RunTracker(k_on, k_off)
    got = []
    edges = [0, *sorted(c for c in set(cuts) if c < bad.size), bad.size]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        got += [(k, i + a, tf) for k, i, tf in tr.update(t[a:b], bad[a:b])]
    assert got == one
    # reference: per-sample loop
    ref, is_open, nb, ng, first = [], False, 0, 0, None
    for i, x in enumerate(bad):
        if x:
            first = i if nb == 0 else first
            nb += 1
            ng = 0
            if not is_open and nb >= k_on:
                is_open = True
                ref.append(("open", i, float(first)))
        else:
            nb = 0
            if is_open:
                ng += 1
                if ng >= k_off:
                    is_open = False
                    ng = 0
                    last = max(j for j in range(i) if bad[j])
                    ref.append(("close", i, float(last)))
    assert one == ref


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40), st.integers(0, 4),
       st.integers(0, 20), st.lists(st.integers(1, 39), max_size=4))
def test_startup_qualifier_is_chunk_invariant_and_matches_a_loop(ok, k, settle, cuts):
    ok = np.array(ok)
    t = np.arange(ok.size, dtype=float)
    # reference: count in-limit readings taken at or after settling
    ref, run = (float(settle) if k == 0 else np.inf), 0
    for ti, o in zip(t, ok, strict=True):
        if k == 0 or ti < settle:
            continue
        run = run + 1 if o else 0
        if run >= k:
            ref = ti
            break
    q = StartupQualifier(float(settle), k)
    edges = [0, *sorted(c for c in set(cuts) if c < ok.size), ok.size]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        got = q.update(t[a:b], ok[a:b])
    assert got == ref


def _result(content, diverted, dt=1.0):
    api = 0.1 * np.asarray(content, dtype=float)
    flow = np.vstack([api, 1.0 - api]) * 0.25  # 1 tablet of 0.25 kg per tick
    return SimulationResult(
        dt=dt, materials=("API", "MCC"), channels=(("API", "A"), ("MCC", "M")),
        api_material="API", gate_flow=flow, diverted=np.asarray(diverted, dtype=bool),
        tablet_mass=0.25, target_api_fraction=0.1, api_content_limits=(0.95, 1.05),
        mass={k: {"API": 0.0, "MCC": 0.0} for k in ("fed", "accepted", "diverted",
                                                         "holdup")},
        channel_mass={}, mass_balance_max_rel_error=0.0, event_log=[],
        metadata={})


def test_escapes_and_waste_counted_on_constructed_cases():
    content = [1.0, 0.9, 0.9, 1.0, 1.2, 1.0, 1.0, 0.96]
    #          ok   NC   NC   ok   NC   ok   ok   ok
    diverted = [False, True, False, True, False, False, True, False]
    s = _result(content, diverted).summary()["tablets"]
    assert s["produced"] == pytest.approx(8.0)
    assert s["nonconforming_produced"] == pytest.approx(3.0)
    assert s["nonconforming_accepted"] == pytest.approx(2.0)   # ticks 2 and 4
    assert s["conforming_diverted"] == pytest.approx(2.0)      # ticks 3 and 6
    assert s["diverted"] == pytest.approx(3.0)
    assert s["accepted"] + s["diverted"] == pytest.approx(s["produced"])


def _tracker_loop(bad, k_on, k_off):
    """Reference alarm state machine (one Python step per sample): (kind, index, t_ref)."""
    out, is_open, nb, ng, first, last = [], False, 0, 0, 0, 0
    for i, x in enumerate(bad):
        if x:
            first = i if nb == 0 else first
            last = i
            nb, ng = nb + 1, 0
            if not is_open and nb >= k_on:
                is_open = True
                out.append(("open", i, float(first)))
        else:
            nb = 0
            if is_open:
                ng += 1
                if ng >= k_off:
                    is_open, ng = False, 0
                    out.append(("close", i, float(last)))
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 700), st.lists(st.integers(0, 699), max_size=12),
       st.integers(1, 3), st.integers(1, 3), st.lists(st.integers(1, 699), max_size=5),
       st.integers(0, 7))
def test_run_tracker_long_good_runs(n, bad_at, k_on, k_off, cuts, offset):
    """Sparse bad samples with long good runs between them (skipped eight at a time by the
    compiled loop), in chunks that start anywhere, also as views at odd byte offsets: the
    same events as a per-sample loop, on sample times and on the tick grid."""
    base = np.zeros(n + offset, dtype=bool)
    bad = base[offset:]  # a view starting at an arbitrary byte
    for j in bad_at:
        if j < n:
            bad[j] = True
            if j + 1 < n and j % 3 == 0:
                bad[j + 1] = True  # some runs of two
    t = np.arange(n, dtype=float)
    ref = _tracker_loop(bad.tolist(), k_on, k_off)
    edges = [0, *sorted(c for c in set(cuts) if c < n), n]
    on_times, on_grid = RunTracker(k_on, k_off), RunTracker(k_on, k_off)
    got_t, got_g = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        got_t += [(k, i + a, tf) for k, i, tf in on_times.update(t[a:b], bad[a:b])]
        got_g += [(k, i + a, tf) for k, i, tf in on_grid.update_grid(a, 1.0, bad[a:b])]
    assert got_t == ref
    assert got_g == ref
