"""Subcommands of ``cmsim`` that live outside :mod:`cmsim.cli` (one module each).

:func:`register` adds them to the CLI's subparsers; each module's ``add_parser`` sets
``handler`` to a function ``(args) -> exit code``.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``schema``, ``init`` and ``list`` to the subparsers ``sub`` of the ``cmsim`` parser.

    Parameters
    ----------
    sub : argparse subparsers action
        From ``parser.add_subparsers()``.
    common : argparse.ArgumentParser
        Parent parser with the options every subcommand shares (``--debug``, ``--quiet``).
    """
    from cmsim.commands import init, listing, schema

    schema.add_parser(sub, common)
    init.add_parser(sub, common)
    listing.add_parser(sub, common)
