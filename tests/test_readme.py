"""The README's code works as written: Python blocks run, cmsim command lines parse (the cheap
ones run), and arguments that a shell would glob or split are quoted (bash and zsh)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cmsim.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(lang: str) -> list[str]:
    return [body for kind, body in BLOCK.findall(README) if kind == lang]


def _cmsim_lines() -> list[str]:
    """Every cmsim invocation in the README's bash blocks (comments and redirections cut)."""
    out = []
    for body in _blocks("bash"):
        for raw in body.splitlines():
            for part in re.split(r"\s&&\s", raw):
                part = re.sub(r"\s+#\s.*$", "", part).strip()
                part = re.sub(r"\s*>\s*\S+$", "", part)  # "cmsim schema > FILE"
                if part.startswith(("cmsim ", "python -m cmsim ")):
                    out.append(part)
    return out


def _argv(line: str) -> list[str]:
    words = shlex.split(line)
    return words[3:] if words[:3] == ["python", "-m", "cmsim"] else words[1:]


CMSIM_LINES = _cmsim_lines()


def test_readme_has_examples():
    assert _blocks("python") and len(CMSIM_LINES) >= 8


def test_python_blocks_run_as_written(tmp_path):
    """Each python block runs in a fresh interpreter from the repository root."""
    for code in _blocks("python"):
        env = {**os.environ, "MPLBACKEND": "Agg"}
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600, check=False)
        assert res.returncode == 0, f"README python block failed:\n{code}\n{res.stderr}"


@pytest.mark.parametrize("line", CMSIM_LINES)
def test_command_lines_parse(line):
    args = build_parser().parse_args(_argv(line)) if "--help" not in line else None
    if args is not None:
        assert args.command is not None, line


@pytest.mark.parametrize("line", CMSIM_LINES)
def test_command_lines_are_shell_safe(line):
    """Unquoted ``[``, ``*``, ``?`` would be glob patterns (zsh stops with "no matches")."""
    for token in shlex.split(line, posix=False):
        if token[0] not in "'\"":
            assert not re.search(r"[\[\]*?]", token), f"quote {token!r} in: {line}"


def test_cheap_commands_run(tmp_path, monkeypatch, capsys):
    """validate, list, schema and init run as written; run/sweep lines are validated with
    the same scenario and --set overrides instead of being simulated."""
    monkeypatch.chdir(ROOT)
    for line in CMSIM_LINES:
        argv = _argv(line)
        if argv[0] in ("validate", "list", "schema"):
            assert main(argv) == 0, line
        elif argv[0] == "init":
            target = tmp_path / Path(argv[-1]).name
            assert main([*argv[:-1], str(target)]) == 0, line
        elif argv[0] in ("run", "sweep"):
            args = build_parser().parse_args(argv)
            sets = [x for s in args.set for x in ("--set", s)]
            assert main(["validate", args.scenario, *sets]) == 0, line
    capsys.readouterr()


def test_zsh_accepts_the_set_example():
    """Where zsh is installed, the documented ``--set`` line survives zsh's parsing intact."""
    zsh = next((p for p in ("/bin/zsh", "/usr/bin/zsh") if Path(p).exists()), None)
    line = next(x for x in CMSIM_LINES if "--set" in x)
    if zsh is None:
        # no zsh: check the quoting rule zsh needs (no unquoted glob characters) instead
        assert all(t[0] in "'\"" or not re.search(r"[\[\]*?]", t)
                   for t in shlex.split(line, posix=False))
        return
    script = "print -rl -- " + line.split(" ", 1)[1]
    res = subprocess.run([zsh, "-c", script], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == _argv(line)
