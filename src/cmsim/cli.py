"""The ``cmsim`` command line (argparse; thin over the Python API)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cmsim._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cmsim",
        description="Continuous direct-compression line simulator (RTD tracing, PAT, diversion).",
    )
    parser.add_argument("--version", action="version", version=f"cmsim {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 runtime failure, 2 invalid input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
