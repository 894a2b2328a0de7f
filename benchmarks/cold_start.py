"""Cold-start cost of ``cmsim run``: numba compilation in a fresh process with an empty cache.

Runs the CLI in a subprocess twice with the same, initially empty ``NUMBA_CACHE_DIR``: the first
(cold) run compiles every kernel it calls, the second (warm) run loads them from the cache. Each
run records numba's compile events, so the report says where the compile time goes: per kernel
(exclusive of the kernels it calls), per module, and how many specialisations were compiled.

Usage::

    python benchmarks/cold_start.py [SCENARIO] [--runs N] [--top K] [-- CLI OPTIONS ...]

The default scenario is the README's first command (``scenarios/api_feeder_stop.toml``); the
CLI options after ``--`` are passed to ``cmsim run`` (e.g. ``-- --no-figures``). This is a
measuring script, not a test: the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Runs inside the subprocess: records numba compile events around ``cmsim.cli.main``.
_CHILD = r"""
import json, sys, time
from collections import defaultdict
from numba.core import event

stack = []
excl = defaultdict(float)
count = defaultdict(int)


class _Listener(event.Listener):
    def on_start(self, ev):
        stack.append([ev.data["dispatcher"], time.perf_counter(), 0.0])

    def on_end(self, ev):
        disp, t0, child = stack.pop()
        dt = time.perf_counter() - t0
        key = f"{disp.py_func.__module__}.{disp.py_func.__qualname__}"
        excl[key] += dt - child
        count[key] += 1
        if stack:
            stack[-1][2] += dt


event.register("numba:compile", _Listener())
t0 = time.perf_counter()
import cmsim.cli
t_import = time.perf_counter() - t0
try:
    rc = cmsim.cli.main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
wall = time.perf_counter() - t0
print(json.dumps({"rc": rc, "wall": wall, "import": t_import,
                  "kernels": {k: [excl[k], count[k]] for k in excl}}))
"""


def _run_once(cache_dir: str, out_dir: str, scenario: str, extra: list[str]) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    cmd = [sys.executable, "-c", _CHILD, "run", scenario, "--out", out_dir, "--quiet", *extra]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"cmsim run failed (exit {proc.returncode}):\n{proc.stderr}")
    return json.loads(lines[-1])


def _report(label: str, rec: dict, top: int) -> None:
    kernels = rec["kernels"]
    total = sum(t for t, _ in kernels.values())
    n_spec = sum(n for _, n in kernels.values())
    print(f"{label}: wall {rec['wall']:.2f} s (import {rec['import']:.2f} s), "
          f"compile {total:.2f} s, {n_spec} specialisations of {len(kernels)} functions")
    if not kernels:
        return
    per_module: dict[str, float] = {}
    for key, (t, _) in kernels.items():
        module = key.rsplit(".", 1)[0] if key.startswith("cmsim.") else "numba internals"
        per_module[module] = per_module.get(module, 0.0) + t
    print("  per module [s]:")
    for module, t in sorted(per_module.items(), key=lambda kv: -kv[1]):
        print(f"    {t:6.2f}  {module}")
    print(f"  top {top} kernels [s, exclusive of callees] (specialisations):")
    for key, (t, n) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"    {t:6.2f}  {key} ({n})")


def main(argv: list[str] | None = None) -> int:
    """Measure and print cold and warm runs; return 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default="scenarios/api_feeder_stop.toml")
    parser.add_argument("--runs", type=int, default=1, help="cold/warm pairs (default 1)")
    parser.add_argument("--top", type=int, default=12, help="kernels to list (default 12)")
    args = parser.parse_args(argv)
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="cmsim-cold-") as tmp:
            cache = str(Path(tmp) / "numba-cache")
            cold = _run_once(cache, str(Path(tmp) / "cold"), args.scenario, extra)
            warm = _run_once(cache, str(Path(tmp) / "warm"), args.scenario, extra)
        _report(f"[{i + 1}] cold (empty NUMBA_CACHE_DIR)", cold, args.top)
        _report(f"[{i + 1}] warm (same cache, new process)", warm, args.top)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
