"""Assemble the PAT monitor from a validated scenario (settings are read from it, once).

:func:`monitor_parts` reads the ``[pat]``, ``[diversion]``, ``[monitor]``, feeder and
equipment sections of a scenario (duck-typed: any object with those attributes) and returns
the line characterisation, the estimator, the phase rules and the policy;
:func:`build_line_monitor` adds the plant's instruments and attaches the monitor to a line;
``cmsim replay`` uses :func:`monitor_parts` alone on a recorded signals table.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cmsim.errors import ParameterError
from cmsim.monitor.estimator import (
    EstimatorSettings,
    LineSpec,
    LineStateEstimator,
    input_responses,
    model_error_sd,
)
from cmsim.monitor.line_monitor import LineMonitor
from cmsim.monitor.phases import PhaseRules
from cmsim.monitor.plant import PlantRecorder, nir_start_time
from cmsim.monitor.policies import (
    AlarmWindows,
    QuantilePolicy,
    QuantileSettings,
    RiskPolicy,
    WindowSettings,
)
from cmsim.monitor.rules import build_rules
from cmsim.monitor.sensors import LoadCellBank, NIRSensor
from cmsim.monitor.windows import cached_quantile, cached_series
from cmsim.rtd import Series, full_convolve
from cmsim.unitops.stage import chain_shift

__all__ = ["assemble_monitor", "build_line_monitor", "lot_potency", "monitor_parts", "nir_faults",
           "nir_instrument", "probe_stages"]

#: smallest NIR standard deviation the estimator assumes, fraction of target [-]
NIR_SD_FLOOR = 0.005
#: smallest model-error standard deviation, fraction of target [-]
MODEL_SD_FLOOR = 0.002


def lot_potency(scenario: Any, channels: Any) -> np.ndarray:
    """Active content per kg of each channel [-] from the refills' ``assay`` (default 1)."""
    pot = np.ones(len(channels))
    api = next(f for f in scenario.feeders if f.role == "api")
    for d in scenario.disturbances:
        if getattr(d, "type", None) == "refill" and getattr(d, "assay", None) is not None \
                and d.feeder == api.name:
            pot[list(channels).index((api.material, d.lot))] = float(d.assay)
    return pot


def nir_faults(scenario: Any) -> list[dict[str, Any]]:
    """The scenario's ``nir_fault`` disturbances as NIRSensor faults (drift: per second)."""
    out = []
    for d in scenario.disturbances:
        if getattr(d, "type", None) != "nir_fault":
            continue
        end = None if d.end is None else float(d.end)
        value = float(d.value) / 3600.0 if d.kind == "drift" else float(d.value)
        out.append({"kind": d.kind, "start": float(d.start), "end": end, "value": value})
    return out


def _monitor_rtds(scenario: Any, models: Any) -> tuple[tuple[Any, Any, Any], bool]:
    """The monitor's blender, transfer and feed-frame RTDs (its ``[monitor.rtd]``
    characterisation where given, else the line's; the prebuilt ``models`` or built here)
    and whether any differs from the line's."""
    keys = ("blender", "transfer", "feed_frame")
    if models is not None:
        line = (models.blender, models.transfer, models.feed_frame)
        own = dict(models.monitor)
    else:
        p = scenario.press
        line = (scenario.blender.rtd.build(), p.transfer_rtd.build(), p.feed_frame_rtd.build())
        mon = getattr(getattr(scenario, "monitor", None), "rtd", None)
        own = {} if mon is None else {k: getattr(mon, k).build() for k in keys
                                      if getattr(mon, k) is not None}
    rtds = tuple(own.get(k, m) for k, m in zip(keys, line, strict=True))
    return rtds, bool(own)


def _line_spec(scenario: Any, shift: int, n_api_lots: int, models: Any = None) -> LineSpec:
    b, p = scenario.blender, scenario.press
    (blender_rtd, transfer_rtd, feed_frame_rtd), own = _monitor_rtds(scenario, models)
    if own:  # the estimator aligns its own stages' output as the line aligns the line's
        shift = chain_shift((blender_rtd, transfer_rtd, feed_frame_rtd),
                            float(scenario.simulation.dt))
    feeders = list(scenario.feeders)
    api = next(i for i, f in enumerate(feeders) if f.role == "api")
    pat = getattr(scenario, "pat", None)
    return LineSpec(
        dt=float(scenario.simulation.dt), blender_rtd=blender_rtd, blender_speed=b.speed,
        speed_exponent=float(b.speed_exponent), transfer_rtd=transfer_rtd,
        feed_frame_rtd=feed_frame_rtd, tablet_mass=float(p.tablet_mass),
        probe=pat.location if pat is not None else "blender_outlet", shift=int(shift),
        target=float(scenario.target_api_fraction), api_feeder=api,
        nominal_flows=tuple(float(f.mass_flow) for f in feeders),
        steady_start=scenario.simulation.initial_state == "steady",
        n_api_lots=int(n_api_lots))


def _model_sd(probe_rtd: Any, dt: float, rsd: tuple[float, ...], corr: tuple[float, ...],
              flows: tuple[float, ...], api: int, lc: tuple[float, float]) -> float:
    """Model-error standard deviation at the probe [-] (cached per parameter set)."""
    key = (type(probe_rtd).__name__, repr(probe_rtd.params), dt, rsd, corr, flows, api, lc)
    hit = _MODEL_SD.get(key)
    if hit is not None:
        return hit
    period, noise = lc
    f = np.array(flows)
    shares = f / f.sum()
    # the feeder-to-probe response of the line's chain of discrete stages: the stages' bin
    # kernels convolved (a series kernel from its continuous CDF needs a numerical
    # convolution integral per bin, about a minute for an axial-dispersion blender at 0.5 s)
    stages = probe_rtd.stages if isinstance(probe_rtd, Series) else (probe_rtd,)
    kernel = functools.reduce(full_convolve, [np.asarray(m.kernel(dt, tail=1e-9))
                                              for m in stages])
    seen, weighing = input_responses(period, dt) if period > 0 else (None, None)
    var = model_error_sd(np.array(rsd), shares, api, np.array(corr), kernel, dt, seen) ** 2
    if period > 0 and noise > 0:
        # independent weighings every period: sum of the squared content responses, averaged
        # over the phase of the weighing clock
        g = full_convolve(kernel, weighing)
        per_kg = float(np.sum(g * g)) / max(1.0, round(period / dt))
        sens = np.where(np.arange(f.size) == api, 1.0 - shares[api], shares)
        var += float(np.sum((sens / f) ** 2)) * noise ** 2 * per_kg
    sd = max(math.sqrt(var), MODEL_SD_FLOOR)
    if len(_MODEL_SD) < 256:
        _MODEL_SD[key] = sd
    return sd


_MODEL_SD: dict[tuple, float] = {}


def _estimator_settings(scenario: Any, mon: Any, spec: LineSpec,
                        gate_ticks: int) -> EstimatorSettings:
    pat, div = getattr(scenario, "pat", None), scenario.diversion
    feeders = list(scenario.feeders)
    dt = spec.dt
    to_probe = [spec.blender_rtd] if spec.probe == "blender_outlet" else \
        [spec.blender_rtd, spec.transfer_rtd, spec.feed_frame_rtd]
    probe_rtd = to_probe[0] if len(to_probe) == 1 else cached_series(*to_probe)
    model_sd = mon.model_sd
    if model_sd is None:
        model_sd = _model_sd(probe_rtd, dt, tuple(float(f.noise_rsd) for f in feeders),
                             tuple(max(float(f.noise_correlation_time), dt) for f in feeders),
                             spec.nominal_flows, spec.api_feeder,
                             (float(mon.load_cell_period),
                              float(mon.load_cell_noise)))
    nir_sd = NIR_SD_FLOOR
    if pat is not None:
        nir_sd = max(float(pat.noise_sd) / spec.target, NIR_SD_FLOOR)
    return EstimatorSettings(
        nir_sd=nir_sd, model_sd=float(model_sd),
        model_tau=max(math.sqrt(float(probe_rtd.variance)), dt),
        lot_sd=float(mon.lot_assay_sd), fault_sd=float(mon.fault_sd),
        cusum_k=float(mon.innovation_cusum_k), cusum_h=float(mon.innovation_cusum_h),
        shewhart_L=float(mon.innovation_shewhart_L), gate_ticks=gate_ticks,
        lc_period=float(mon.load_cell_period),
        rtd_uncertainty=float(div.rtd_uncertainty) if div is not None else 0.0)


def monitor_parts(scenario: Any, mon: Any, shift: int, n_api_lots: int,
                  models: Any = None) -> dict[str, Any]:
    """Line characterisation, estimator, phase rules and policy of a scenario.

    Parameters
    ----------
    scenario : cmsim.config.Scenario
        Validated scenario (SI).
    mon : object
        Its ``[monitor]`` table (the defaults when the scenario has none).
    shift : int
        Alignment shift of the gate [ticks] (the line's).
    n_api_lots : int
        API lots the run can see.
    models : object, optional
        The scenario's residence-time models already built (attributes ``blender``,
        ``transfer``, ``feed_frame``; e.g. :class:`cmsim.assembly.LineModels`); built from the
        scenario when not given.

    Returns
    -------
    dict
        ``spec``, ``estimator``, ``phases``, ``policy``, ``gate_ticks``, ``limits``,
        ``rules`` (the control charts on the innovations, None when none is on),
        ``sample_period`` [s], ``pat_grace`` [s] (infinite without NIR) and
        ``frozen_check`` (whether an exact repeat of an NIR reading is a frozen signal:
        only an instrument specified with noise, ``pat.noise_sd > 0``, never repeats).
    """
    dt = float(scenario.simulation.dt)
    gd = float(scenario.press.gate_delay)
    g = 1 + int(math.ceil(gd / dt - 1e-9))
    spec = _line_spec(scenario, shift, n_api_lots, models)
    settings = _estimator_settings(scenario, mon, spec, g)
    pat, div = getattr(scenario, "pat", None), scenario.diversion
    timing = None if pat is None else (float(pat.latency), float(pat.integration_time))
    estimator = LineStateEstimator(spec, settings, timing)
    line_rtd = cached_series(spec.blender_rtd, spec.transfer_rtd, spec.feed_frame_rtd)
    alpha = float(div.quantile) if div is not None else 0.005
    start_up = (div.start_up if div is not None and div.start_up is not None
                else scenario.simulation.initial_state == "empty")
    limits = tuple(float(x) for x in (mon.action_limits or
                                      scenario.specification.api_content_limits))
    phases = PhaseRules(dt, g, cached_quantile(line_rtd, float(
        div.start_up_quantile) if div is not None else 0.999),
        cached_quantile(line_rtd, alpha), int(mon.clear_readings) if pat is not None else 0,
        limits, spec.target, bool(start_up))
    policy_name = div.policy if div is not None else "risk"
    flows = np.array(spec.nominal_flows)
    ws = WindowSettings(
        alpha=alpha, margin=float(div.margin) if div is not None else 0.0,
        clear_readings=int(mon.clear_readings),
        sample_period=float(pat.sample_period) if pat is not None else 1.0,
        lag=float(pat.latency + pat.integration_time) if pat is not None else 0.0)
    rules = build_rules(mon, [f.name for f in scenario.feeders], flows, dt) \
        if pat is not None else None
    if policy_name == "quantile":
        half = min(1.0 - limits[0], limits[1] - 1.0)
        watched = tuple(i for i, f in enumerate(flows)
                        if i == spec.api_feeder or f / flows.sum() >= half) \
            if mon.feeder_trigger else ()
        qs = QuantileSettings(
            windows=ws, feeder_deviation=float(mon.feeder_deviation),
            feeder_persistence=float(mon.feeder_persistence), monitored=watched,
            persistence=int(mon.persistence), feeder_reference=str(mon.feeder_reference))
        policy: Any = QuantilePolicy(qs, int(scenario.n_ticks), dt, gd, flows, limits,
                                     spec.target)
    else:
        windows = AlarmWindows(ws, int(scenario.n_ticks), dt, gd) \
            if rules is not None and rules.divert else None
        policy = RiskPolicy(float(div.max_risk) if div is not None else 1e-3, windows)
    return {"spec": spec, "estimator": estimator, "phases": phases, "policy": policy,
            "gate_ticks": g, "limits": limits, "rules": rules,
            "sample_period": float(pat.sample_period) if pat is not None else 2.0,
            "pat_grace": float(mon.pat_grace) if pat is not None else math.inf,
            "frozen_check": pat is not None and float(pat.noise_sd) > 0.0}


def assemble_monitor(parts: Mapping[str, Any], n_ticks: int, *, drive_gate: bool,
                     plant: PlantRecorder | None = None) -> LineMonitor:
    """A :class:`LineMonitor` from :func:`monitor_parts` (``plant``: the instruments of a
    simulated line; None when recorded chunks are fed to :meth:`LineMonitor.process`)."""
    return LineMonitor(parts["estimator"], parts["phases"], parts["policy"], int(n_ticks),
                       parts["limits"], plant=plant, drive_gate=drive_gate,
                       sample_period=parts["sample_period"], rules=parts["rules"],
                       pat_grace=parts["pat_grace"], frozen_check=parts["frozen_check"])


def probe_stages(line: Any, location: str) -> int:
    """Dispersive stages of ``line`` upstream of an NIR probe at ``location``
    (``"blender_outlet"`` or ``"feed_frame"``) [-]."""
    stages = line.nodes["blender"].unit.n_dispersive
    if location == "feed_frame":
        stages += line.nodes["press"].unit.n_dispersive
    return int(stages)


def nir_instrument(scenario: Any, line: Any, rng: np.random.Generator | None, location: str,
                   sample_period: float, noise_sd: float, latency: float,
                   integration_time: float, *, bias: float = 0.0, drift_per_s: float = 0.0,
                   dropout: float = 0.0) -> NIRSensor:
    """The plant's NIR probe at ``location`` on ``line``, with the scenario's ``nir_fault``
    disturbances.

    Parameters
    ----------
    scenario : cmsim.config.Scenario
        Validated scenario (its ``nir_fault`` disturbances).
    line : cmsim.line.Line
        The line (its stages place the first reading, :func:`nir_start_time`).
    rng : numpy.random.Generator, optional
        Source of the reading noise and dropouts (required when either is on).
    location : {"blender_outlet", "feed_frame"}
        Probe position.
    sample_period, latency, integration_time : float
        Reading clock, delay and averaging window [s].
    noise_sd, bias : float
        Reading noise (1-sigma) and calibration offset, absolute mass fraction [-].
    drift_per_s : float
        Drift of the offset [1/s].
    dropout : float
        Probability that a reading is missing [-].
    """
    if rng is None and (noise_sd > 0 or dropout > 0):
        raise ParameterError("rng", None, "a numpy Generator is required for a noisy NIR "
                             "instrument (noise_sd > 0 or dropouts)")
    stages = probe_stages(line, location)
    start = nir_start_time(sample_period, latency, integration_time,
                           (0.5 + 0.5 * stages) * line.dt)
    sensor = NIRSensor(sample_period, noise_sd, latency, integration_time, bias, drift_per_s,
                       dropout, rng=rng, start=start)
    for fault in nir_faults(scenario):
        sensor.add_fault(**fault)
    return sensor


def build_line_monitor(scenario: Any, mon: Any, line: Any,
                       rng: Mapping[str, np.random.Generator],
                       models: Any = None) -> LineMonitor:
    """Attach a :class:`LineMonitor` (with the plant's instruments) to ``line`` and return it.

    ``mon`` is the scenario's ``[monitor]`` table (its defaults when absent). The monitor
    drives the gate only when the scenario has a ``[diversion]`` table. ``models``: the
    prebuilt residence-time models (see :func:`monitor_parts`), built when not given.
    """
    cmap = line.channel_map
    n_lots = len(cmap.lots(cmap.api_material))
    parts = monitor_parts(scenario, mon, line.shift, n_lots, models)
    pat = getattr(scenario, "pat", None)
    feeders = [f.name for f in scenario.feeders]
    nir = None
    stages = probe_stages(line, "blender_outlet")
    if pat is not None:
        nir = nir_instrument(scenario, line, rng["pat.nir"], pat.location, pat.sample_period,
                             pat.noise_sd, pat.latency, pat.integration_time, bias=pat.bias,
                             drift_per_s=pat.drift_per_h / 3600.0,
                             dropout=pat.dropout_probability)
        stages = probe_stages(line, pat.location)
    cells = None
    if mon.load_cell_period > 0:
        cells = LoadCellBank(mon.load_cell_period, mon.load_cell_noise,
                             max(mon.load_cell_window, 2 * mon.load_cell_period), line.dt,
                             [rng[f"pat.load_cell.{n}"] for n in feeders])
    api = next(f.name for f in scenario.feeders if f.role == "api")
    slopes = getattr(parts["policy"], "needs_flows", False) or \
        getattr(parts["rules"], "needs_flows", False)
    plant = PlantRecorder(line, feeders, api, lot_potency(scenario, cmap.channels), nir,
                          pat.location if pat is not None else "blender_outlet", stages, cells,
                          slopes=slopes)
    monitor = assemble_monitor(parts, int(scenario.n_ticks), plant=plant,
                               drive_gate=scenario.diversion is not None)
    line.observers.append(monitor)
    return monitor
