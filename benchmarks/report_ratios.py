"""Print the four headline speed ratios of the RTD core as a table.

Usage: ``python benchmarks/report_ratios.py [--quick]``. Every ratio is measured interleaved with
its baseline in this process (median of repeated alternating runs), after the allocator policy is
set and the numba JIT is warm. ``--quick`` uses smaller sizes (for a smoke check only; the
targets refer to the full sizes). Absolute times on shared machines drift: read the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cmsim._alloc import tune_allocator  # noqa: E402
from conftest import warm_numba  # noqa: E402
from test_bench_rtd import (  # noqa: E402
    GRID_K,
    GRID_N,
    TARGET_DIRECT_SPEEDUP,
    TARGET_DISPATCH_X_BEST,
    TARGET_TIS_BATCH_X_COPY,
    TARGET_TIS_STREAM_X_COPY,
    measure_direct_vs_numpy,
    measure_dispatch,
    measure_tis_batch,
    measure_tis_stream,
)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table; return 0 if every target is met, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke check)")
    args = parser.parse_args(argv)
    tuned = tune_allocator()
    warm_numba()
    n_stream, (b, n_batch) = (10**6, (100, 10**4)) if args.quick else (10**7, (1000, 10**5))
    rows = []
    s = measure_tis_stream(n_stream)
    rows.append((f"TIS n=5 stream N={n_stream:.0e} / np.copyto", f"<= {TARGET_TIS_STREAM_X_COPY}",
                 f"{s['ratio']:.2f}x ({s['ns_per_sample']:.2f} vs "
                 f"{s['copy_ns_per_sample']:.2f} ns/sample)",
                 s["ratio"] <= TARGET_TIS_STREAM_X_COPY))
    d = measure_direct_vs_numpy()
    rows.append(("direct K=50 N=1e6 speed-up over np.convolve", f">= {TARGET_DIRECT_SPEEDUP}",
                 f"{d['speedup']:.2f}x ({d['gfma_per_s']:.1f} GFMA/s)",
                 d["speedup"] >= TARGET_DIRECT_SPEEDUP))
    t = measure_tis_batch(b, n_batch)
    rows.append((f"TIS batch {b} x {n_batch:.0e} / batch copyto", f"<= {TARGET_TIS_BATCH_X_COPY}",
                 f"{t['ratio_copyto']:.2f}x (alloc. copy {t['ratio_copy']:.2f}x, "
                 f"{t['seconds'] * 1e3:.0f} ms)",
                 t["ratio_copyto"] <= TARGET_TIS_BATCH_X_COPY))
    worst, worst_at, detail = 0.0, None, []
    for n in GRID_N:
        for k in GRID_K:
            r = measure_dispatch(n // 10 if args.quick else n, k)
            detail.append(f"  N={n:.0e} K={k}: auto/best {r['ratio_vs_best']:.2f} "
                          f"(best {r['best']}: direct {r['direct_s'] * 1e3:.2f} ms, "
                          f"oa {r['oa_s'] * 1e3:.2f} ms, fft {r['fft_s'] * 1e3:.2f} ms)")
            if r["ratio_vs_best"] > worst:
                worst, worst_at = r["ratio_vs_best"], (n, k)
    rows.append((f"dispatcher / best method, worst of {len(detail)} (N, K)",
                 f"<= {TARGET_DISPATCH_X_BEST}", f"{worst:.2f}x at N={worst_at[0]:.0e} "
                 f"K={worst_at[1]}", worst <= TARGET_DISPATCH_X_BEST))
    width = max(len(r[0]) for r in rows)
    print(f"allocator tuned: {tuned}; cpus: {os.cpu_count()}; quick: {args.quick}")
    print(f"{'ratio'.ljust(width)} | target | measured | ok")
    for name, target, measured, ok in rows:
        print(f"{name.ljust(width)} | {target} | {measured} | {'yes' if ok else 'NO'}")
    print("dispatcher grid:")
    print("\n".join(detail))
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
