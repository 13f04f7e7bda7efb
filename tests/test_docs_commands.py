"""Every `warmloop ...` command line shown in the README and docs parses as written.

Each line (joined over backslash continuations, comments and `[optional]` parts left
out) goes through the real command-line parser of the subcommand it names, without
running it: a renamed or removed flag, or a command the docs still show after it was
dropped, fails here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from warmloop.cli import _choose, build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    ROOT / "checkpoints" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]


def _code_lines(path: Path) -> list[str]:
    """Lines of fenced code blocks, with backslash continuations joined."""
    lines, inside, pending = [], False, ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.strip().startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        lines.append(line)
    return lines


def _commands() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for line in _code_lines(path):
            line = line.split("  #", 1)[0].split(" # ", 1)[0].strip()
            if line.startswith("warmloop ") and "$(" not in line:
                found.append((path.name, re.sub(r"\s*\[[^\]]*\]", "", line)))
    return found


COMMANDS = _commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) > 40


@pytest.mark.parametrize(("doc", "line"), COMMANDS, ids=[c[1][:60] for c in COMMANDS])
def test_documented_command_parses(doc: str, line: str) -> None:
    argv = shlex.split(line)[1:]
    chosen = _choose(argv)
    assert not isinstance(chosen, int), f"{doc}: {line}"
    name, command, argv = chosen
    assert command is not None or "--status" in argv or "--help" in argv, f"{doc}: {line}"
    try:
        build_parser(name, command).parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{doc}: `{line}` does not parse (exit {exc.code})")


DEPLOYMENT = [line for doc, line in COMMANDS if doc == "deployment.md"]


@pytest.mark.parametrize("line", DEPLOYMENT, ids=[line[:60] for line in DEPLOYMENT])
def test_deployment_commands_run_with_help_appended(line: str) -> None:
    """In a real process: the command's module imports and its parser builds."""
    argv = [*shlex.split(line)[1:], "--help"]
    done = subprocess.run(
        [sys.executable, "-m", "warmloop.cli", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, f"`{line} --help`: {done.stderr[-1000:]}"
    assert done.stdout.startswith("usage: warmloop")


def test_the_deployment_doc_shows_each_journeys_commands() -> None:
    shown = {shlex.split(line)[1] for line in DEPLOYMENT}
    assert {"export", "eval", "deploy", "serve"} <= shown
