"""Measure the headline speed ratios of the RTD core; save them; compare with a saved run.

Usage::

    python benchmarks/report_ratios.py [--quick] [--rounds R] [--repeats M]
        [--save [DIR]] [--compare FILE|latest] [--k 3] [--noise-floor LOG]

Every ratio is measured interleaved with its baseline in this process, after the allocator policy
is set and the numba JIT is warm: each of ``R`` rounds alternates candidate and baselines ``M``
times and keeps the median per function, the ratio is formed within the round, and the table shows
the median and the best of the ``R`` per-round ratios (the best round is the least disturbed one
on a shared machine) together with the load average at the start and the end. ``--quick`` uses
smaller sizes (a smoke check only; the targets refer to the full sizes).

``--save`` writes the run (per-round ratios, absolute times, machine, commit, load average) as JSON
into ``DIR`` (default ``.benchmarks/ratios``); ``--compare`` compares this run's medians with a
saved run and flags every ratio that got worse by more than ``k`` times its noise (see
``ratio_history.py``). Exit status: 0 all targets met and no regression, 1 a target missed (best
round), 2 a regression against the saved run, 3 the saved run cannot be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cmsim._alloc import tune_allocator  # noqa: E402
from conftest import warm_numba  # noqa: E402
from ratio_history import (  # noqa: E402
    DEFAULT_DIR,
    DEFAULT_K,
    RunFileError,
    compare_runs,
    format_comparison,
    load_run,
    new_run,
    save_run,
)
from test_bench_rtd import (  # noqa: E402
    BATCH_FIR_TAPS,
    GRID_K,
    GRID_N,
    TARGET_APPLY_X_RTDPY,
    TARGET_BATCH_FIR_X_COPY,
    TARGET_DIRECT_SPEEDUP,
    TARGET_DISPATCH_X_BEST,
    TARGET_TIS_BATCH_X_COPY,
    TARGET_TIS_STREAM_X_COPY,
    measure_apply_vs_rtdpy,
    measure_batch_fir,
    measure_direct_vs_numpy,
    measure_dispatch,
    measure_tis_batch,
    measure_tis_stream,
)


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - platform without getloadavg
        return None


def _entry(label: str, median: float, best: float, rounds: list[float], target: float,
           lower_is_better: bool, info: str, detail: dict) -> dict:
    ok = best <= target if lower_is_better else best >= target
    return {"label": label, "median": median, "best": best, "rounds": rounds,
            "target": target, "lower_is_better": lower_is_better, "ok": ok, "info": info,
            "detail": detail}


def measure_all(quick: bool, rounds: int, repeats: int) -> tuple[dict, list[str]]:
    """Every headline ratio as saved-run entries, and the dispatcher grid detail lines."""
    rr = {"rounds": rounds, "repeats": repeats}
    n_stream, (b, n_batch) = (10**6, (100, 10**4)) if quick else (10**7, (1000, 10**5))
    out: dict[str, dict] = {}
    s = measure_tis_stream(n_stream, **rr)
    out["tis_stream_x_copy"] = _entry(
        f"TIS n=5 stream N={n_stream:.0e} / np.copyto", s["ratio"], s["ratio_best"],
        s["per_round"], TARGET_TIS_STREAM_X_COPY, True,
        f"{s['ns_per_sample']:.2f} vs {s['copy_ns_per_sample']:.2f} ns/sample",
        {"ns_per_sample": s["ns_per_sample"], "copy_ns_per_sample": s["copy_ns_per_sample"]})
    d = measure_direct_vs_numpy(**rr)
    out["direct_k50_speedup"] = _entry(
        "direct K=50 N=1e6 speed-up over np.convolve", d["speedup"], d["speedup_best"],
        d["per_round"], TARGET_DIRECT_SPEEDUP, False, f"{d['gfma_per_s']:.1f} GFMA/s",
        {"gfma_per_s": d["gfma_per_s"]})
    t = measure_tis_batch(b, n_batch, **rr)
    out["tis_batch_x_copy"] = _entry(
        f"TIS batch {b} x {n_batch:.0e} / batch copyto", t["ratio_copyto"],
        t["ratio_copyto_best"], t["per_round"], TARGET_TIS_BATCH_X_COPY, True,
        f"alloc. copy {t['ratio_copy']:.2f}x, {t['seconds'] * 1e3:.0f} ms",
        {"seconds": t["seconds"], "ratio_alloc_copy": t["ratio_copy"]})
    f = measure_batch_fir(b, n_batch, BATCH_FIR_TAPS, **rr)
    out["batch_fir_x_copy"] = _entry(
        f"generic FIR batch {b} x {n_batch:.0e}, K={BATCH_FIR_TAPS} / batch copyto",
        f["ratio"], f["ratio_best"], f["per_round"], TARGET_BATCH_FIR_X_COPY, True,
        f"{f['seconds'] * 1e3:.0f} ms vs copy {f['copy_seconds'] * 1e3:.0f} ms",
        {"seconds": f["seconds"], "copy_seconds": f["copy_seconds"]})
    a = measure_apply_vs_rtdpy(28_800 if quick else 288_000, **rr)
    if a is not None:
        out["apply_speedup_vs_rtdpy"] = _entry(
            "TanksInSeries(60, 5).apply vs rtdpy output, 8 h at 0.1 s", a["speedup"],
            a["speedup_best"], a["per_round"], TARGET_APPLY_X_RTDPY, False,
            f"{a['seconds'] * 1e3:.2f} vs {a['rtdpy_seconds'] * 1e3:.1f} ms; FIR path "
            f"{a['fir_speedup']:.2f}x; mass defect {a['mass_defect']:.0e} "
            f"(rtdpy {a['rtdpy_mass_defect']:.0e})",
            {k: float(a[k]) for k in ("seconds", "rtdpy_seconds", "fir_speedup", "mass_defect",
                                      "rtdpy_mass_defect")})
    worst_rounds = [0.0] * rounds
    detail, grid = [], {}
    for n in GRID_N:
        for k in GRID_K:
            n_run = n // 10 if quick else n
            r = measure_dispatch(n_run, k, **rr)
            worst_rounds = [max(w, v) for w, v in zip(worst_rounds, r["per_round"], strict=True)]
            grid[f"N={n_run} K={k}"] = {m: r[f"{m}_s"] for m in ("auto", "direct", "oa", "fft")}
            detail.append(f"  N={n_run:.0e} K={k}: auto/best median {r['ratio_vs_best']:.2f} "
                          f"best {r['ratio_vs_best_best']:.2f} (fastest {r['best']}: "
                          f"direct {r['direct_s'] * 1e3:.2f} ms, oa {r['oa_s'] * 1e3:.2f} ms, "
                          f"fft {r['fft_s'] * 1e3:.2f} ms, auto {r['auto_s'] * 1e3:.2f} ms)")
    ordered = sorted(worst_rounds)
    median = ordered[len(ordered) // 2] if rounds % 2 else 0.5 * (
        ordered[rounds // 2 - 1] + ordered[rounds // 2])
    out["dispatcher_worst_x_best"] = _entry(
        f"dispatcher / best method, worst of {len(detail)} (N, K) per round", median,
        min(worst_rounds), worst_rounds, TARGET_DISPATCH_X_BEST, True, "grid below",
        {"seconds": grid})
    return out, detail


def main(argv: list[str] | None = None) -> int:
    """Measure, print, optionally save and compare; return the exit status (see module doc)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke check)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per ratio (default 3)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="alternating repeats per round (default 5)")
    parser.add_argument("--save", nargs="?", const=str(DEFAULT_DIR), default=None,
                        metavar="DIR", help=f"save the run as JSON (default dir {DEFAULT_DIR})")
    parser.add_argument("--compare", metavar="FILE",
                        help="saved run to compare with ('latest' = newest in the save dir)")
    parser.add_argument("--k", type=float, default=DEFAULT_K,
                        help=f"flag changes beyond k x noise (default {DEFAULT_K})")
    parser.add_argument("--noise-floor", type=float, default=None,
                        help="smallest noise [log units] for every ratio (default: the "
                             "run-to-run spreads measured per ratio, ratio_history.NOISE_FLOORS)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.repeats < 1:
        parser.error("--rounds and --repeats must be >= 1")
    if not args.k > 0 or (args.noise_floor is not None and not args.noise_floor >= 0):
        parser.error("--k must be > 0 and --noise-floor >= 0")
    saved = None
    if args.compare:
        try:  # read it first: a bad file should not cost a whole measurement
            saved = load_run(args.compare, Path(args.save or DEFAULT_DIR))
        except RunFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
    load_start = _load()
    tuned = tune_allocator()
    warm_numba()
    ratios, detail = measure_all(args.quick, args.rounds, args.repeats)
    load_end = _load()
    settings = {"quick": args.quick, "rounds": args.rounds, "repeats": args.repeats}
    run = new_run(ratios, settings, load_start, load_end)
    width = max(len(e["label"]) for e in ratios.values())
    print(f"commit {run['commit'][:10]}{' (dirty)' if run['dirty'] else ''}; "
          f"cpu: {run['machine']['cpu']} x {run['machine']['cpus']}; allocator tuned: {tuned}; "
          f"quick: {args.quick}; rounds x repeats: {args.rounds} x {args.repeats}")
    print(f"load average (1, 5, 15 min): start {load_start}, end {load_end}")
    print(f"{'ratio'.ljust(width)} | target | median | best | detail | ok (best)")
    for e in ratios.values():
        sign = "<=" if e["lower_is_better"] else ">="
        print(f"{e['label'].ljust(width)} | {sign} {e['target']:g} | {e['median']:.2f}x | "
              f"{e['best']:.2f}x | {e['info']} | {'yes' if e['ok'] else 'NO'}")
    if "apply_speedup_vs_rtdpy" not in ratios:
        print("(rtdpy not installed: apply vs rtdpy skipped; pip install -e '.[bench]')")
    print("dispatcher grid:")
    print("\n".join(detail))
    if args.save:
        print(f"saved: {save_run(run, Path(args.save))}")
    status = 0 if all(e["ok"] for e in ratios.values()) else 1
    if saved is not None:
        if saved.get("settings", {}).get("quick") != args.quick:
            print("warning: the saved run used other sizes (--quick differs)")
        cpus = run["machine"]["cpus"] or 1
        for which, load in (("saved", saved.get("load_start")), ("current", load_start)):
            if load and load[0] > cpus:
                print(f"warning: the {which} run started at load {load[0]} on {cpus} cores: "
                      "batch ratios are then unreliable")
        findings = compare_runs(run, saved, args.k, args.noise_floor)
        print(f"\ncompared with {saved['path']} (commit {saved.get('commit', '?')[:10]}, "
              f"load {saved.get('load_start')}):")
        print(format_comparison(findings, args.k))
        if any(f.status == "regression" for f in findings):
            status = 2
    return status


if __name__ == "__main__":
    raise SystemExit(main())
