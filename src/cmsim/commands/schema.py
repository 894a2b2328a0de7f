"""``cmsim schema``: print the JSON Schema of a scenario file.

Editors that check TOML against a JSON Schema (Taplo / Even Better TOML, for instance) then
complete keys, show each key's meaning, default and unit, and flag unknown keys::

    cmsim schema > cmsim-scenario.schema.json
    # first line of a scenario file:
    #:schema ./cmsim-scenario.schema.json
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``cmsim schema`` on the subparsers ``sub``."""
    p = sub.add_parser("schema", parents=[common], help="print the JSON Schema of a scenario",
                       description="Print the JSON Schema (draft 2020-12) of a scenario file, "
                       "with every key's meaning, default and unit, for editors that check "
                       "TOML against a schema: cmsim schema > cmsim-scenario.schema.json, then "
                       "'#:schema ./cmsim-scenario.schema.json' as the scenario's first line.")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the schema to stdout; return 0."""
    from cmsim.config.reference import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return 0
