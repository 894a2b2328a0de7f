"""Progress bars: no ``IProgress`` / ``TqdmWarning`` in Jupyter without ipywidgets.

A Jupyter kernel is imitated by the two things :func:`cmsim._progress.in_notebook` looks at
(``ipykernel.zmqshell`` imported, ``get_ipython()`` a ``ZMQInteractiveShell``); ipywidgets is
made unimportable with ``sys.modules["ipywidgets"] = None``. The notebook tests execute real
kernels (tests/test_notebooks.py).
"""

from __future__ import annotations

import sys
import types
import warnings

import pytest
import tqdm
from tqdm import std

import cmsim
from cmsim import _progress

SHORT = ["simulation.duration=6 min"]


class ZMQInteractiveShell:  # the class name is what matters
    pass


@pytest.fixture
def fake_kernel(monkeypatch):
    """A Jupyter kernel without ipywidgets; tqdm's notebook modules re-imported fresh."""
    ipython = types.ModuleType("IPython")
    shell = ZMQInteractiveShell()
    ipython.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("zmqshell"))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    for name in ("notebook", "autonotebook", "auto"):
        monkeypatch.delitem(sys.modules, f"tqdm.{name}", raising=False)
        monkeypatch.delattr(tqdm, name, raising=False)
    return shell


def _progress_warnings(caught):
    return [w for w in caught if issubclass(w.category, std.TqdmWarning)
            or "IProgress" in str(w.message)]


def test_imitated_kernel_reproduces_tqdm_auto_warning(fake_kernel):
    """Guard on the set-up: in this imitation, plain ``tqdm.auto`` does warn."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import tqdm.auto  # noqa: F401
    assert _progress_warnings(caught)


def test_run_and_sweep_progress_warn_nothing_without_ipywidgets(fake_kernel, capsys):
    assert _progress.in_notebook()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = cmsim.run("api_feeder_stop", overrides=SHORT, progress=True)
        df = cmsim.sweep("api_feeder_stop", replicates=2, progress=True,
                         grid={"simulation.duration": ["6 min"]})
    assert _progress_warnings(caught) == []
    assert r.n_ticks == 720 and len(df) == 2
    err = capsys.readouterr().err
    assert "IProgress" not in err
    # the quiet fallback is tqdm's text bar, written to the cell's stderr
    assert "cmsim sweep" in err and "simulating:" in err


def test_text_bar_in_kernel_without_widgets(fake_kernel):
    bar = _progress.progress_bar(total=3, unit="x", desc="d")
    try:
        assert type(bar) is std.tqdm and not bar.disable
    finally:
        bar.close()


def test_widget_bar_chosen_when_ipywidgets_is_there(fake_kernel, monkeypatch):
    widgets = types.ModuleType("ipywidgets")
    for name in ("FloatProgress", "HTML", "HBox"):
        setattr(widgets, name, type(name, (), {}))
    monkeypatch.setitem(sys.modules, "ipywidgets", widgets)
    chosen = _progress._widget_tqdm()
    assert chosen is sys.modules["tqdm.notebook"].tqdm


def test_terminal_only_bar_is_off_when_stderr_is_no_tty(capsys):
    assert not _progress.in_notebook()
    bar = _progress.progress_bar(total=3, unit="x", desc="d", terminal_only=True)
    try:
        assert type(bar) is std.tqdm and bar.disable  # pytest's captured stderr is no tty
    finally:
        bar.close()
