"""The notebooks in ``notebooks/``: committed without outputs, and executed top to bottom.

Execution starts a real Jupyter kernel (ipykernel) for each notebook through nbclient, with a
kernel spec written here that points at this interpreter, so the notebooks run against the
cmsim under test. Deselect with ``-m "not notebooks"``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL = "cmsim-test"


def test_the_six_notebooks_are_there():
    stems = [p.stem for p in NOTEBOOKS]
    assert stems == ["01_quick_start", "02_rtd_toolbox", "03_control_strategies",
                     "04_worked_diversion", "05_monitor_tuning", "06_monitor_robustness"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_stripped(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} have outputs or execution counts; "
                       f"run `python tools/strip_notebooks.py {path.relative_to(ROOT)}`")
    assert "widgets" not in nb.metadata, f"{path.name}: widget state in the metadata"


@pytest.fixture(scope="module")
def kernel_spec(tmp_path_factory, monkeypatch_module):
    """A kernel spec named ``cmsim-test`` that runs ipykernel in this interpreter."""
    path = tmp_path_factory.mktemp("jupyter")
    spec = path / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cmsim test", "language": "python"}))
    monkeypatch_module.setenv("JUPYTER_PATH", str(path))
    return KERNEL


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


_OWN_WARNING = re.compile(r"IProgress|TqdmWarning|cmsim[/\\].*Warning")


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, kernel_spec):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name=kernel_spec, timeout=300,
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError with the traceback of a failing cell
    stderr = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.outputs
                     if out.output_type == "stream" and out.name == "stderr")
    found = _OWN_WARNING.findall(stderr)
    assert not found, f"{path.name} printed warnings: {stderr[-2000:]}"
