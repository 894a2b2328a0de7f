"""``cmsim init [TEMPLATE] [PATH]``: write a commented starting scenario.

Templates are shipped in ``cmsim/data/templates/`` (``minimal``, ``disturbance``, ``monitor``,
``control``); the ``description`` key of each says what it is. An existing file is never
overwritten: the file appears complete (written to a temporary sibling and linked into place,
which fails if the name exists) or not at all.
"""

from __future__ import annotations

import argparse
import tomllib
from importlib import resources
from pathlib import Path

from cmsim._fs import atomic_write
from cmsim.errors import InputError

__all__ = [
    "DEFAULT_TEMPLATE",
    "add_parser",
    "describe_file",
    "run",
    "template_text",
    "templates",
    "write_new",
]

DEFAULT_TEMPLATE = "minimal"


class InitError(InputError):
    """``cmsim init`` cannot write the file (unknown template, existing file): exit code 2."""


def describe_file(text: str) -> str:
    """One-line description of a TOML file: its ``description`` key, else its first comment."""
    try:
        desc = tomllib.loads(text).get("description")
    except tomllib.TOMLDecodeError:
        desc = None
    if isinstance(desc, str) and desc.strip():
        return desc.strip()
    first = next((ln for ln in text.splitlines() if ln.startswith("#")), "")
    return first.lstrip("# ").strip()


def templates() -> dict[str, str]:
    """Shipped templates: name -> one-line description."""
    base = resources.files("cmsim.data") / "templates"
    return {e.name[:-5]: describe_file(e.read_text(encoding="utf-8"))
            for e in sorted(base.iterdir(), key=lambda e: e.name) if e.name.endswith(".toml")}


def template_text(name: str) -> str:
    """The text of template ``name`` (InitError naming the templates if there is none)."""
    if name not in templates():
        raise InitError(f"template={name!r}: no such template (templates: "
                        f"{', '.join(templates())})")
    return (resources.files("cmsim.data") / "templates" / f"{name}.toml").read_text(
        encoding="utf-8")


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``cmsim init`` on the subparsers ``sub``."""
    names = ", ".join(templates())
    p = sub.add_parser("init", parents=[common], help="write a commented starting scenario",
                       description="Write a commented starting scenario from a template "
                       f"({names}). Never overwrites an existing file.")
    p.add_argument("template", metavar="TEMPLATE", nargs="?", default=None,
                   help=f"template name (default {DEFAULT_TEMPLATE}); a name ending in .toml "
                   "is taken as PATH")
    p.add_argument("path", metavar="PATH", nargs="?", type=Path, default=None,
                   help="file to write (default: scenario.toml)")
    p.set_defaults(handler=run)


def write_new(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; refuse (InitError) if ``path`` exists."""
    if path.exists() or path.is_symlink():
        raise InitError(f"{path}: exists; cmsim init never overwrites a file (choose another "
                        "PATH or remove it)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InitError(f"{path}: directory {parent} does not exist")
    try:
        atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"), overwrite=False)
    except FileExistsError:  # the name appeared while writing
        raise InitError(f"{path}: exists; cmsim init never overwrites a file") from None
    except OSError as exc:  # a read-only or special directory
        raise InitError(f"{path}: cannot write it ({exc.strerror or type(exc).__name__})"
                        ) from None


def run(args: argparse.Namespace) -> int:
    """Write the template; return 0."""
    name, path = args.template, args.path
    if name is not None and path is None and name.endswith(".toml") and name not in templates():
        name, path = None, Path(name)
    name = name or DEFAULT_TEMPLATE
    path = path or Path("scenario.toml")
    text = template_text(name)
    write_new(path, text)
    if not args.quiet:
        print(f"wrote {path} (template {name}); check it with: cmsim validate {path}")
    return 0
