"""`warmloop bench NAME`: the harness around every benchmark.

A benchmark is a module with `run(quick) -> BenchResult` (the registry is in
`benchmarks/__init__.py`). The harness adds the machine, prints a table, writes
`benchmarks/results/NAME.json` (a flat object of named figures) and rewrites the
benchmark's section of `docs/benchmarks.md`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import BENCHMARKS
from benchmarks.machine import describe

log = logging.getLogger(__name__)

Figure = float | int | str | bool | None


@dataclass
class BenchResult:
    """Named figures plus a human table (header row first) and notes for the docs."""

    figures: dict[str, Figure]
    table: list[list[str]]
    notes: list[str] = field(default_factory=list)


def project_root(start: Path | None = None) -> Path:
    """The warmloop checkout containing `start` (default: cwd), else `start` itself."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and 'name = "warmloop"' in pyproject.read_text(encoding="utf-8"):
            return candidate
    return here


def format_table(rows: list[list[str]]) -> str:
    """A Markdown table; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(map(str.ljust, row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _finite_json(value: Figure) -> Figure:
    # JSON has no NaN or Infinity; a figure that could not be measured is null.
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_results(name: str, result: BenchResult, root: Path, quick: bool) -> Path:
    figures = {k: _finite_json(v) for k, v in result.figures.items()}
    figures.update(
        machine=describe(),
        quick=quick,
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    path = root / "benchmarks" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _update_docs(root / "docs" / "benchmarks.md", name, result, figures)
    return path


def _update_docs(doc: Path, name: str, result: BenchResult, figures: dict[str, Figure]) -> None:
    """Replace the text between this benchmark's markers, or append a new section."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    body = [
        begin,
        f"## {name}",
        "",
        f"Machine: {figures['machine']}. Run: {figures['date']}"
        + (" (quick run)." if figures["quick"] else "."),
        f"Reproduce: `warmloop bench {name}`.",
        "",
        format_table(result.table),
        "",
        *[f"- {note}" for note in result.notes],
        end,
    ]
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    section = "\n".join(body)
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, a fast check")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="project root for results and docs (default: the checkout around cwd)",
    )


def main_from_args(args: argparse.Namespace) -> int:
    bench = BENCHMARKS[args.name]
    log.info("running benchmark %s: %s", bench.name, bench.summary)
    result = importlib.import_module(bench.module).run(args.quick)
    path = write_results(bench.name, result, args.root or project_root(), args.quick)
    sys.stdout.write(format_table(result.table) + "\n")
    for note in result.notes:
        sys.stdout.write(f"- {note}\n")
    sys.stdout.write(f"wrote {path}\n")
    return 0
