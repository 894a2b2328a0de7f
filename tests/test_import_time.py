"""Start-up checks: importing cmsim stays light (no scipy.signal, numba kernels compile lazily)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_import_cmsim_does_not_import_scipy_signal() -> None:
    out = _run("import sys, cmsim, cmsim.rtd; print('scipy.signal' in sys.modules)")
    assert out == "False"


def test_convolve_imports_scipy_signal_only_when_an_fft_path_runs() -> None:
    code = (
        "import sys, numpy as np\n"
        "from cmsim.rtd import convolve\n"
        "convolve(np.ones(50), np.ones(5), method='direct')\n"
        "a = 'scipy.signal' in sys.modules\n"
        "convolve(np.ones(50), np.ones(5), method='fft')\n"
        "print(a, 'scipy.signal' in sys.modules)\n"
    )
    assert _run(code) == "False True"


@pytest.mark.parametrize("module", ["cmsim.rtd.convolution", "cmsim.rtd.filters"])
def test_rtd_streaming_modules_do_not_import_heavy_layers(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "print(sorted(m for m in ('simpy', 'pandas', 'pydantic', 'matplotlib') "
        "if m in sys.modules))\n"
    )
    assert _run(code) == "[]"


def test_import_and_help_do_not_import_scipy_optimize_or_stats() -> None:
    # scipy.optimize and scipy.stats cost ~0.3 s at start-up; they load where they are used
    code = (
        "import sys, contextlib, io, cmsim, cmsim.cli\n"
        "a = sorted(m for m in ('scipy.optimize', 'scipy.stats') if m in sys.modules)\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    rc = cmsim.cli.main(['--help'])\n"
        "b = sorted(m for m in ('scipy.optimize', 'scipy.stats') if m in sys.modules)\n"
        "print(rc, a, b)\n"
    )
    assert _run(code) == "0 [] []"

