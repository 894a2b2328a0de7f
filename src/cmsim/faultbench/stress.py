"""Random disturbance campaigns on a user's line: what the labelled benchmark does not contain.

The labelled fault benchmark runs fixed cases on the example line. :func:`stress_monitor`
takes *your* scenario (its line, noise and monitor settings), replaces its disturbances by
one to ``max_disturbances`` drawn at random per run, and counts, against the simulator's true
content, the nonconforming tablets the monitor accepted. Every run is seeded from one root
seed, and a run with an escape can be written out as a scenario file that reproduces it.

What is drawn (times uniform over 20-80 % of the run, so the effect reaches the gate):

* ``feeder_stop`` (2-60 s) and ``feeder_step`` (0-200 % of the set point for 5-300 s) of the
  API feeder or an excipient feeder with at least 5 % of the flow;
* ``feeder_drift`` of the API feeder (+-20 or +-40 %/h, volumetric, for 1-15 min);
* ``press_stop`` (10-400 s); ``blender_speed`` (0.5-1.6 x the nominal speed; only when
  ``blender.speed`` is set and the blender RTDs can follow a speed change);
* ``lot_change``: an API refill with a new lot of 85-120 % assay (only when the API feeder
  has a hopper; at most one per run);
* ``nir_bias`` (+-3 or +-6 % of target), ``nir_drift`` (+-10 or +-20 % of target per hour),
  ``nir_dropout`` and ``nir_frozen`` (10-300 s; only with ``[pat]``; at most one per run).

A lot change and an NIR fault are not drawn into the same run unless
``allow_unobservable``: the NIR is the only signal that sees a lot's potency, and a faulty
NIR during a wrong lot cannot be caught from plant signals (docs/pat-monitor.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from cmsim.errors import ParameterError
from cmsim.faultbench.bench import override_list
from cmsim.faultbench.metrics import wilson_interval

__all__ = ["STRESS_KINDS", "draw_disturbances", "stress_monitor"]

#: disturbance kinds a campaign draws from
STRESS_KINDS = ("feeder_stop", "feeder_step", "feeder_drift", "press_stop", "blender_speed",
                "lot_change", "nir_bias", "nir_drift", "nir_dropout", "nir_frozen")
_NIR = ("nir_bias", "nir_drift", "nir_dropout", "nir_frozen")
#: what a kind needs from the scenario (when it does not apply)
_NEEDS = {"blender_speed": "needs blender.speed and blender RTDs that can follow a speed change",
          "lot_change": "needs a [feeders.hopper] table on the API feeder",
          **{k: "needs a [pat] table (an NIR)" for k in _NIR}}


def _available(scenario: Any, models: Any) -> list[str]:
    """The kinds that apply to ``scenario`` (see the module docstring)."""
    from cmsim.unitops.stage import speed_capable  # noqa: PLC0415

    kinds = ["feeder_stop", "feeder_step", "feeder_drift", "press_stop"]
    blenders = [models.blender, *([models.monitor["blender"]] if "blender" in models.monitor
                                  else [])]
    if scenario.blender.speed is not None and all(speed_capable(m) for m in blenders):
        kinds.append("blender_speed")
    if scenario.api_feeder.hopper is not None:
        kinds.append("lot_change")
    if scenario.pat is not None:
        kinds += list(_NIR)
    return kinds


def draw_disturbances(scenario: Any, rng: np.random.Generator, kinds: Sequence[str],
                      max_disturbances: int = 3, *, allow_unobservable: bool = False
                      ) -> list[tuple[str, dict[str, Any]]]:
    """One run's random disturbances (SI values, scenario ``[[disturbances]]`` tables).

    Parameters
    ----------
    scenario : cmsim.config.Scenario
        The validated base scenario (its feeders, duration and nominal blender speed).
    rng : numpy.random.Generator
        The run's generator.
    kinds : sequence of str
        Kinds to draw from (of :data:`STRESS_KINDS`).
    max_disturbances : int
        At most this many disturbances (at least one) [-].
    allow_unobservable : bool
        Allow a lot change and an NIR fault in the same run.

    Returns
    -------
    list of (str, dict)
        The campaign's kind and the disturbance table of each.
    """
    dur = float(scenario.simulation.duration)
    total = sum(float(f.mass_flow) for f in scenario.feeders)
    api = scenario.api_feeder
    watched = [f for f in scenario.feeders if f is api or float(f.mass_flow) / total >= 0.05]
    out: list[tuple[str, dict[str, Any]]] = []
    pool = list(kinds)
    for _ in range(int(rng.integers(1, max_disturbances + 1))):
        if not pool:
            break
        kind = pool[int(rng.integers(len(pool)))]
        start = round(float(rng.uniform(0.2, 0.8)) * dur, 1)
        feeder = watched[int(rng.integers(len(watched)))]
        if kind == "feeder_stop":
            d = {"type": kind, "feeder": feeder.name, "duration": _u(rng, 2.0, 60.0)}
        elif kind == "feeder_step":
            factor = float(rng.choice([0.0, 0.3, 0.8, 0.9, 0.93, 1.07, 1.1, 1.3, 2.0]))
            d = {"type": kind, "feeder": feeder.name, "duration": _u(rng, 5.0, 300.0),
                 "mass_flow": factor * float(feeder.mass_flow)}
        elif kind == "feeder_drift":
            d = {"type": kind, "feeder": api.name, "volumetric": True,
                 "rate_per_hour": float(rng.choice([-0.4, -0.2, 0.2, 0.4])),
                 "duration": _u(rng, 60.0, 900.0)}
        elif kind == "press_stop":
            d = {"type": kind, "duration": _u(rng, 10.0, 400.0)}
        elif kind == "blender_speed":
            d = {"type": kind, "speed": round(float(scenario.blender.speed)
                                              * float(rng.uniform(0.5, 1.6)), 1)}
        elif kind == "lot_change":
            d = {"type": "refill", "feeder": api.name, "lot": f"{api.lot}-STRESS",
                 "mass": 0.3 * float(api.hopper.capacity), "duration": 12.0,
                 "assay": float(rng.choice([0.85, 0.9, 0.93, 0.96, 1.04, 1.07, 1.1, 1.2]))}
        else:
            d = _nir_fault(kind, start, rng, float(scenario.target_api_fraction))
        out.append((kind, {**d, "start": start}))
        if kind == "lot_change" or kind in _NIR:  # at most one of each per run
            drop = {"lot_change"} if kind == "lot_change" else set(_NIR)
            if not allow_unobservable:
                drop |= set(_NIR) | {"lot_change"}
            pool = [k for k in pool if k not in drop]
    return out


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return round(float(rng.uniform(lo, hi)), 1)


def _nir_fault(kind: str, start: float, rng: np.random.Generator, target: float
               ) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "nir_fault", "kind": kind[4:]}
    if kind == "nir_bias":
        d["value"] = float(rng.choice([-0.06, -0.03, 0.03, 0.06])) * target
    elif kind == "nir_drift":  # per hour
        d["value"] = float(rng.choice([-0.2, -0.1, 0.1, 0.2])) * target
    if kind in ("nir_dropout", "nir_frozen") or rng.random() < 0.5:
        d["end"] = round(start + float(rng.uniform(10.0, 300.0)), 1)
    return d


def _run_case(args: tuple[dict[str, Any], int]) -> dict[str, float]:
    """Run one case (picklable: plain data in, numbers out)."""
    import cmsim  # noqa: PLC0415
    from cmsim.sweep.metrics import case_metrics  # noqa: PLC0415

    data, seed = args
    m = case_metrics(cmsim.run(data, seed=seed))
    return {"nonconforming": m["nonconforming_produced"], "escapes": m["escapes"],
            "waste": m["waste"], "diverted": m["tablets_diverted"],
            "expected_escapes": m["expected_escapes"]}


def stress_monitor(scenario: Any, *, runs: int = 200, seed: int = 0,
                   max_disturbances: int = 3, kinds: Sequence[str] | None = None,
                   allow_unobservable: bool = False, overrides: Sequence[str] = (),
                   executor: Executor | None = None, progress: bool = False
                   ) -> tuple[Any, Any]:
    """A random disturbance campaign of the PAT monitor on ``scenario``'s line.

    Parameters
    ----------
    scenario : str, path, dict or cmsim.config.Scenario
        The base scenario (its own disturbances are replaced by the drawn ones).
    runs : int
        Runs of the campaign [-].
    seed : int
        Root seed (>= 0): run ``i`` draws its disturbances and its simulation seed from child
        ``i`` of ``SeedSequence(seed)``.
    max_disturbances : int
        At most this many disturbances per run (1-5) [-].
    kinds : sequence of str, optional
        Kinds to draw from (default: every kind of :data:`STRESS_KINDS` that applies).
    allow_unobservable : bool
        Also draw a lot change and an NIR fault into the same run.
    overrides : sequence of str
        ``path=value`` items applied to the base scenario.
    executor : concurrent.futures.Executor, optional
        Where the runs go (default: here, one after another).
    progress : bool
        Show a progress bar of the runs.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        Per kind: ``kind``, ``runs``, ``runs_nonconforming`` (runs that made nonconforming
        tablets), ``runs_with_escape``, ``escape_rate_high`` (upper end of the 95 % Wilson
        interval of the share of runs with an escape), ``escapes`` (tablets),
        ``median_waste_ratio``
        (conforming diverted / nonconforming over the runs with at least 1 nonconforming
        tablet). Per run: ``run``, ``seed``, ``kinds``, ``disturbances`` (JSON, SI),
        ``nonconforming``, ``escapes``, ``waste``, ``diverted``, ``expected_escapes`` [-].

    Raises
    ------
    cmsim.errors.ParameterError
        Bad ``runs``, ``seed``, ``max_disturbances``, a kind that does not apply, or a
        scenario without a monitor.
    cmsim.errors.ScenarioError
        A bad base scenario.
    """
    import pandas as pd  # noqa: PLC0415

    from cmsim.assembly import build_models  # noqa: PLC0415
    from cmsim.config import load_scenario  # noqa: PLC0415

    for name, value, lo, hi in (("runs", runs, 1, None), ("seed", seed, 0, None),
                                ("max_disturbances", max_disturbances, 1, 5)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo \
                or (hi is not None and value > hi):
            raise ParameterError(name, value, f"must be an integer in [{lo}, {hi or 'inf'}]")
    sc = load_scenario(scenario, overrides=override_list(overrides) or None)
    if sc.pat is None and sc.diversion is None:
        raise ParameterError("scenario", str(sc.source or sc.name),
                             "has no PAT monitor to stress (no [pat] or [diversion] table)")
    able = _available(sc, build_models(sc))
    if isinstance(kinds, str):  # not iterated letter by letter
        raise ParameterError("kinds", kinds, f"must be a list of kind names, e.g. [{kinds!r}]")
    chosen = list(able) if kinds is None else list(kinds)
    bad = [k for k in chosen if k not in able]
    if bad or not chosen:
        why = "".join(f"; {k} {_NEEDS[k]}" for k in bad if k in _NEEDS)
        raise ParameterError("kinds", kinds, f"must be some of {able} for this scenario "
                             f"(kinds of the campaign: {list(STRESS_KINDS)}){why}")
    base = sc.portable_dict()
    cases, rows = [], []
    for i, child in enumerate(np.random.SeedSequence(int(seed)).spawn(int(runs))):
        rng = np.random.default_rng(child)
        drawn = draw_disturbances(sc, rng, chosen, int(max_disturbances),
                                  allow_unobservable=allow_unobservable)
        run_seed = int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))
        dist = [d for _, d in drawn]
        cases.append(({**base, "disturbances": dist}, run_seed))
        rows.append({"run": i, "seed": run_seed,
                     "kinds": "+".join(sorted({k for k, _ in drawn})),
                     "disturbances": json.dumps(dist)})
    done = executor.map(_run_case, cases) if executor is not None else map(_run_case, cases)
    if progress:
        from cmsim._progress import progress_bar  # noqa: PLC0415

        with progress_bar(total=len(cases), unit="run", desc="stress-monitor") as bar:
            results = []
            for r in done:
                results.append(r)
                bar.update(1)
    else:
        results = list(done)
    per_run = pd.DataFrame([{**r, **m} for r, m in zip(rows, results, strict=True)])
    summary = []
    for kind in chosen:
        mask = per_run["kinds"].str.split("+").apply(lambda ks, k=kind: k in ks)
        sub = per_run[mask]
        made = sub[sub["nonconforming"] >= 1.0]
        summary.append({
            "kind": kind, "runs": int(len(sub)), "runs_nonconforming": int(len(made)),
            "runs_with_escape": int((sub["escapes"] > 0.5).sum()),
            "escape_rate_high": wilson_interval(int((sub["escapes"] > 0.5).sum()),
                                                int(len(sub)))[1] if len(sub) else 1.0,
            "escapes": float(sub["escapes"].sum()),
            "median_waste_ratio": float((made["waste"] / made["nonconforming"]).median())
            if len(made) else float("nan")})
    return pd.DataFrame(summary), per_run
