"""``cmsim list``: the shipped scenarios, RTD parameter sets and ``init`` templates."""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "catalogue", "run"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``cmsim list`` on the subparsers ``sub``."""
    p = sub.add_parser("list", parents=[common], help="list shipped scenarios and models",
                       description="List the scenarios and RTD parameter sets (models) shipped "
                       "with cmsim and the templates of cmsim init, each with its one-line "
                       "description.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run)


def catalogue() -> dict[str, dict[str, str]]:
    """``{"scenarios": {name: description}, "models": {...}, "templates": {...}}``."""
    from cmsim.commands.init import describe_file, templates

    base = Path(str(resources.files("cmsim.data")))
    out: dict[str, Any] = {}
    for kind in ("scenarios", "models"):
        files = sorted((base / kind).glob("*.toml"))
        out[kind] = {p.stem: describe_file(p.read_text(encoding="utf-8")) for p in files}
    out["templates"] = templates()
    return out


def run(args: argparse.Namespace) -> int:
    """Print the catalogue; return 0."""
    cat = catalogue()
    if args.json:
        print(json.dumps(cat, indent=2))
        return 0
    heads = {
        "scenarios": "Scenarios (cmsim run NAME --out DIR; copies in scenarios/ of the repository)",
        "models": 'RTD parameter sets (rtd = { model = "model", name = "NAME" })',
        "templates": "Templates (cmsim init NAME [PATH])",
    }
    blocks = []
    for kind, head in heads.items():
        width = max((len(n) for n in cat[kind]), default=0)
        lines = [head] + [f"  {n:<{width}}  {d}" for n, d in cat[kind].items()]
        blocks.append("\n".join(lines))
    print("\n\n".join(blocks))
    return 0
