"""Progress bars that suit where cmsim runs: a widget in Jupyter, text on a terminal.

``tqdm.auto`` picks the Jupyter widget bar in a notebook kernel and, when ipywidgets is not
installed, warns ("IProgress not found", a ``TqdmWarning``) before falling back to text. cmsim
never imports ``tqdm.auto``: :func:`progress_bar` takes the widget bar only when the widget
library is there and otherwise the text bar, quietly.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["in_notebook", "progress_bar"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (notebook, JupyterLab, VS Code), False elsewhere.

    Qt consoles and plain IPython terminals count as terminals.
    """
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _widget_tqdm() -> Any:
    """``tqdm.notebook.tqdm`` when the widget library is importable, else None."""
    try:
        notebook = importlib.import_module("tqdm.notebook")
    except Exception:  # noqa: BLE001 - any import problem means: no widget bar
        return None
    return notebook.tqdm if getattr(notebook, "IProgress", None) is not None else None


def progress_bar(*, total: int, unit: str, desc: str, initial: int = 0,
                 terminal_only: bool = False) -> Any:
    """A tqdm progress bar (``leave=False``) for the current front end.

    Parameters
    ----------
    total : int
        Number of steps.
    initial : int
        Steps already done (a resumed job).
    unit, desc : str
        tqdm's unit label and description.
    terminal_only : bool
        Outside Jupyter, show the bar only when stderr is a terminal (tqdm's ``disable=None``).

    Returns
    -------
    tqdm.std.tqdm or tqdm.notebook.tqdm
        Widget bar in Jupyter with ipywidgets; text bar otherwise (in Jupyter without ipywidgets
        too, written to the cell's stderr). Never emits a warning.
    """
    if in_notebook():
        widget = _widget_tqdm()
        if widget is not None:
            return widget(total=total, initial=initial, unit=unit, desc=desc, leave=False)
        from tqdm.std import tqdm  # noqa: PLC0415

        # the kernel's stderr is no tty, so the text bar is enabled explicitly
        return tqdm(total=total, initial=initial, unit=unit, desc=desc, leave=False,
                    disable=False, file=sys.stderr)
    from tqdm.std import tqdm  # noqa: PLC0415

    return tqdm(total=total, initial=initial, unit=unit, desc=desc, leave=False,
                disable=None if terminal_only else False)
