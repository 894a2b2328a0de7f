"""Strip outputs, execution counts and run metadata from Jupyter notebooks (in place).

The notebooks in ``notebooks/`` are committed without outputs (tests/test_notebooks.py checks
it); run this before committing a notebook you executed::

    python tools/strip_notebooks.py notebooks/*.ipynb
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

#: Cell metadata written by a run (timings, scroll state), not by the author.
RUN_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip(path: Path) -> bool:
    """Strip one notebook in place; return True if it changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after, encoding="utf-8")
    return after != before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if strip(path):
            print(f"stripped {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
