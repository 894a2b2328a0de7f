"""The feedforward's RTD soft sensor: the load-cell flows through the blender's stage filters
(a ``ContinuousBlender`` fed chunk by chunk) equal the convolution of the flows with the
blender's bin kernel, use only data of ticks before the action tick and do not depend on the
chunking."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

import cmsim
from cmsim.api import rng_streams
from cmsim.assembly import assemble
from cmsim.config import load_scenario
from cmsim.control import attach_control
from cmsim.engine import Engine
from cmsim.line import build_line, rng_source_names
from cmsim.rtd import CSTR
from cmsim.unitops import ContinuousBlender

FF = "scenarios/control_feedforward.toml"
SHORT = "simulation.duration=8 min"


def _run(rtd: dict | None = None, extra_sync_s=()):
    over = [SHORT] + ([f"blender.rtd={rtd}"] if rtd else [])
    sc = load_scenario(FF, overrides=over)
    asm = assemble(sc)
    gens, _ = rng_streams(sc.simulation.seed, rng_source_names(sc) + ["control.nir"])
    line = build_line(sc, gens, assembly=asm)
    sup = attach_control(line, sc, gens["control.nir"], models=asm.models)
    Engine(line, list(asm.disturbances), control_period_s=sup.period_s,
           extra_sync_s=extra_sync_s).run()
    flows = {n[len("feeder."):]: node.unit.measured_flow for n, node in line.nodes.items()
             if n.startswith("feeder.")}
    return sc, asm, sup, flows


def _api_and_total(sc, flows) -> tuple[np.ndarray, np.ndarray]:
    api = flows[sc.api_feeder.name]
    return api, np.sum([flows[f.name] for f in sc.feeders], axis=0)


def _convolved(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``y[k] = sum_j w[j] u[k - j]`` with ``u`` held at ``u[0]`` before tick 0 (a line that
    ran steadily), by an explicit sum over the taps."""
    padded = np.concatenate((np.full(w.size - 1, u[0]), u))
    return np.convolve(padded, w, mode="valid")


def _at_action_ticks(sup, y_api: np.ndarray, y_tot: np.ndarray) -> np.ndarray:
    """The prediction of each action tick ``kc``: the outlet after tick ``kc - 1``."""
    kc = np.rint(sup.history["time_s"] / sup.dt).astype(int)
    return y_api[kc - 1] / y_tot[kc - 1]


@pytest.mark.parametrize("rtd", [
    None,                                                              # TIS n = 5: cascade
    '{model = "tanks_in_series", mean_residence_time = "50 s", n_tanks = 4.5}',  # FIR
    '{model = "series", stages = [{model = "pfr", delay = "5 s"}, '
    '{model = "tanks_in_series", mean_residence_time = "40 s", n_tanks = 3}]}',  # shift + TIS
])
def test_prediction_equals_the_convolution_with_the_bin_kernel(rtd):
    """A recursive (or FIR) stage and the bin kernel realise the same impulse response: the
    only difference is the kernel's truncation at ``tail`` (here 1e-15), which moves the ratio
    by less than ``tail`` times its relative spread of the flows, far below 1e-12."""
    sc, asm, sup, flows = _run(rtd)
    w = asm.models.blender.kernel(sup.dt, tail=1e-15)
    api, tot = _api_and_total(sc, flows)
    expected = _at_action_ticks(sup, _convolved(api, w), _convolved(tot, w))
    got = sup.history["predicted_fraction"]
    assert got.size == sup.history["time_s"].size > 200
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert np.ptp(got) > 0.01 * np.mean(got)       # the drift moved the prediction


def test_cstr_prediction_equals_a_first_order_recursion():
    """For a CSTR the bin kernel is ``(1 - a) a^j`` with ``a = exp(-dt / tau)``: the
    prediction is the first-order recursion ``y_k = a y_{k-1} + (1 - a) u_k`` started at the
    steady state of the first estimate (scipy.signal.lfilter)."""
    tau = 45.0
    sc, _, sup, flows = _run(f'{{model = "cstr", mean_residence_time = "{tau} s"}}')
    a = np.exp(-sup.dt / tau)
    api, tot = _api_and_total(sc, flows)
    y_api, _ = lfilter([1 - a], [1, -a], api, zi=[a * api[0]])
    y_tot, _ = lfilter([1 - a], [1, -a], tot, zi=[a * tot[0]])
    np.testing.assert_allclose(sup.history["predicted_fraction"],
                               _at_action_ticks(sup, y_api, y_tot), rtol=1e-12, atol=0)
    assert CSTR(tau).kernel(sup.dt)[:3] == pytest.approx((1 - a) * a ** np.arange(3))


def test_prediction_uses_no_data_of_the_action_tick_or_later():
    sc, asm, sup, flows = _run()
    w = asm.models.blender.kernel(sup.dt, tail=1e-15)
    api, tot = _api_and_total(sc, flows)
    kc = np.rint(sup.history["time_s"] / sup.dt).astype(int)
    got = sup.history["predicted_fraction"]
    for i in (10, 150, kc.size - 1):
        # the data of ticks < kc alone give the prediction
        k = kc[i]
        y = _convolved(api[:k], w)[-1] / _convolved(tot[:k], w)[-1]
        assert got[i] == pytest.approx(y, rel=1e-12)


def test_old_truncated_kernel_agrees_within_its_tail():
    """The former implementation convolved with ``kernel(dt)`` (tail 1e-9) at every action
    tick: the ratio it gave differs from the untruncated filter by < tail x spread."""
    sc, asm, sup, flows = _run()
    w = asm.models.blender.kernel(sup.dt)           # default tail 1e-9
    assert w.truncated_mass < 1e-9
    api, tot = _api_and_total(sc, flows)
    old = _at_action_ticks(sup, _convolved(api, w), _convolved(tot, w))
    got = sup.history["predicted_fraction"]
    spread = max(np.ptp(api) / api.min(), np.ptp(tot) / tot.min())
    assert np.max(np.abs(got / old - 1)) <= 2e-9 * spread


def test_feedforward_is_chunk_invariant():
    a = cmsim.run(FF, overrides=[SHORT])
    b = cmsim.run(FF, overrides=[SHORT], extra_sync_s=[0.5, 1.5, 33.25, 100.0, 301.5, 302.0])
    np.testing.assert_allclose(a.control_history["predicted_fraction"],
                               b.control_history["predicted_fraction"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(a.gate_flow, b.gate_flow, rtol=1e-12, atol=1e-18)



def test_prediction_follows_a_blender_speed_change():
    """After the impeller slows from 250 to 150 rpm at 120 s the soft sensor's blender runs
    at the new residence time with the tank masses kept, as the line's blender does (its
    mass-state semantics are tested in tests/unitops): equal to a blender of the scenario's
    RTD fed the same flows in one pass and slowed at the same tick, and far from one that
    stayed at the nominal residence time."""
    raw = load_scenario(FF, overrides=[SHORT]).to_dict()
    raw["disturbances"].append({"type": "blender_speed", "start": "120 s", "speed": "150 rpm"})
    sc = load_scenario(raw)
    asm = assemble(sc)
    gens, _ = rng_streams(sc.simulation.seed, rng_source_names(sc) + ["control.nir"])
    line = build_line(sc, gens, assembly=asm)
    sup = attach_control(line, sc, gens["control.nir"], models=asm.models)
    Engine(line, list(asm.disturbances), control_period_s=sup.period_s).run()
    flows = {n[len("feeder."):]: node.unit.measured_flow for n, node in line.nodes.items()
             if n.startswith("feeder.")}
    api, tot = _api_and_total(sc, flows)
    u = np.vstack((api, tot))
    ks = int(round(120.0 / sup.dt))

    def outlet(slow: bool) -> np.ndarray:
        b = ContinuousBlender(asm.models.blender, sup.dt, 2, speed=250.0,
                              speed_exponent=sc.blender.speed_exponent)
        b.reset(u[:, 0])
        head = b.step(u[:, :ks]).copy()
        if slow:
            b.set_speed(150.0)
        return np.hstack((head, b.step(u[:, ks:])))

    got = sup.history["predicted_fraction"]
    y = outlet(slow=True)
    np.testing.assert_allclose(got, _at_action_ticks(sup, y[0], y[1]), rtol=1e-12, atol=0)
    y = outlet(slow=False)
    assert np.max(np.abs(_at_action_ticks(sup, y[0], y[1]) / got - 1)) > 1e-4
