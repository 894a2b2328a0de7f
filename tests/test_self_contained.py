"""The project stands on its own: no file refers to documents outside the repository, and every
relative link in the Markdown documentation points to a file and heading that exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

#: Names of documents that are not part of the repository (a briefing the project was started
#: from) and the ways they were cited. Spelled in pieces so that this file does not match.
OUTSIDE = re.compile("|".join([
    r"domain" r"\.md", r"domain" r" brief", r"domain" r" [0-9]", r"architecture" r"\.md",
    r"performance" r"\.md", r"style-and" r"-ecosystem", r"shared/" r"docs",
    r"anchors-" r"mission",
]), re.IGNORECASE)

TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".ini", ".yml", ".yaml", ".json",
                 ".csv", ".html", ".rst", ""}


def _tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):  # not a git checkout: walk the tree
        skip = {".git", ".venv", ".ci-venv", "build", "dist", "runs", "__pycache__"}
        return [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                if p.is_file() and not skip.intersection(p.relative_to(ROOT).parts)]
    return [line for line in out.splitlines() if line]


def _text_files() -> list[str]:
    return [f for f in _tracked_files()
            if Path(f).suffix in TEXT_SUFFIXES and (ROOT / f).is_file() and f != THIS]


def _citations(rel: str) -> list[str]:
    text = (ROOT / rel).read_text(encoding="utf-8", errors="replace")
    return [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1)
            if OUTSIDE.search(line)]


def test_no_file_refers_to_documents_outside_the_repository():
    found = [c for f in _text_files() for c in _citations(f)]
    assert found == [], "point these to the pages in docs/ instead:\n" + "\n".join(found)


def test_the_pattern_catches_the_old_citations():
    for text in ("see domain" ".md 7.3", "Expected (domain" " brief 7.3)", "(domain" " 8.2)",
                 "architecture" ".md section 5", "docs/perf" "ormance.md"):
        assert OUTSIDE.search(text), text
    for text in ("docs/monitor.md#worked-example", "docs/benchmarks.md", "domain objects"):
        assert not OUTSIDE.search(text), text


# --------------------------------------------------------------------------- links

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _anchors(md: Path) -> set[str]:
    """GitHub heading anchors of a Markdown file."""
    text = _FENCE.sub("", md.read_text(encoding="utf-8"))
    out = set()
    for line in text.splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            title = m.group(1).strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


MARKDOWN = sorted({"README.md", *(f for f in _tracked_files() if f.startswith("docs/")
                                  and f.endswith(".md"))}
                  | {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")})


@pytest.mark.parametrize("doc", MARKDOWN)
def test_relative_links_resolve(doc):
    path = ROOT / doc
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT)}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert broken == []


def test_docs_index_lists_every_page():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "index.md")
    assert [p for p in pages if f"({p})" not in index] == []
