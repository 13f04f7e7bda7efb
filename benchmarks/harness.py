"""`warmloop bench NAME`: the harness around every benchmark.

A benchmark is a module with `run(size, checkpoints) -> BenchResult` (the registry is in
`benchmarks/__init__.py`). The harness adds the machine and the provenance of the
figures (benchmarks/provenance.py), prints a table, writes `NAME.json` (a flat object of
named figures) and the benchmark's section of `benchmarks.md`, and saves its plots.

Where: a full run writes into the checkout (benchmarks/results/, docs/); `--quick`
into runs/bench/ and `--smoke` into a new temporary directory, so neither ever touches
tracked files. `--root DIR` chooses another place. `--smoke` also runs on tiny
random-weight checkpoints made on the spot (benchmarks/smoke.py): seconds, not minutes,
on the same code path.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import BENCHMARKS, Benchmark
from benchmarks.machine import describe
from benchmarks.provenance import dependencies, fingerprint, git_state, staleness, tracked_paths

log = logging.getLogger(__name__)

Figure = float | int | str | bool | None


@dataclass
class BenchResult:
    """Named figures, a human table (header row first), notes for the docs, and files
    to write: a path relative to the output root -> a function that writes it there."""

    figures: dict[str, Figure]
    table: list[list[str]]
    notes: list[str] = field(default_factory=list)
    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    more_tables: list[list[list[str]]] = field(default_factory=list)  # after the first


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


def save_figure(figure) -> Callable[[Path], None]:
    """A BenchResult file writer for a matplotlib figure."""

    def write(path: Path) -> None:
        import matplotlib.pyplot as plt

        figure.savefig(path, dpi=110)
        plt.close(figure)

    return write


def _finite_json(value: Figure) -> Figure:
    # JSON has no NaN or Infinity; a figure that could not be measured is null.
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_results(
    bench: Benchmark | str,
    result: BenchResult,
    root: Path,
    size: str = "full",
    provenance: dict[str, Figure] | None = None,
) -> Path:
    """NAME.json, the docs section and the files under `root`; the JSON's path."""
    name = bench if isinstance(bench, str) else bench.name
    figures = {k: _finite_json(v) for k, v in result.figures.items()}
    figures.update(provenance or {})
    figures.update(
        machine=describe(),
        size=size,
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    path = root / "benchmarks" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _update_docs(root / "docs" / "benchmarks.md", name, result, figures)
    for relative, write in result.files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        write(root / relative)
    return path


def _update_docs(doc: Path, name: str, result: BenchResult, figures: dict[str, Figure]) -> None:
    """Replace the text between this benchmark's markers, or append a new section."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    commit = figures.get("commit")
    made = f", commit {str(commit)[:10]}" if commit else ""
    body = [
        begin,
        f"## {name}",
        "",
        f"Machine: {figures['machine']}. Run: {figures['date']}{made}"
        + ("." if figures["size"] == "full" else f" ({figures['size']} run)."),
        f"Reproduce: `warmloop bench {name}`.",
        "",
        format_table(result.table),
        "",
        *[line for rows in result.more_tables for line in (format_table(rows), "")],
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
    parser.add_argument("name", nargs="?", choices=sorted(BENCHMARKS), help="which benchmark")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--quick", action="store_true", help="fewer repetitions; writes to runs/bench/"
    )
    sizes.add_argument(
        "--smoke",
        action="store_true",
        help="seconds, tiny models, the same code path; writes to a temporary directory",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="list every recorded result and whether it is current (no NAME)",
    )
    parser.add_argument("--root", type=Path, default=None, help="where results and docs go")


def output_root(size: str, root: Path | None) -> Path:
    if root is not None:
        return root
    if size == "full":
        return project_root()
    if size == "quick":
        return project_root() / "runs" / "bench"
    return Path(tempfile.mkdtemp(prefix="warmloop-smoke-"))


def run_benchmark(
    bench: Benchmark, size: str, root: Path, command: str = ""
) -> tuple[BenchResult, Path]:
    """Run one benchmark at `size` and record it under `root`: the result, its path."""
    checkout = project_root()
    provenance = {**fingerprint(bench, checkout, checkout / "checkpoints"), "command": command}
    provenance["commit"], provenance["dirty"] = git_state(checkout, tracked_paths(bench))
    if size == "smoke":
        from benchmarks.smoke import SMOKE_EPISODE_STEPS, tiny_checkpoints
        from sim.envs import SMOKE_EPISODE_STEPS as CAP_VARIABLE

        os.environ[CAP_VARIABLE] = str(SMOKE_EPISODE_STEPS)  # inherited by nodes it starts
        checkpoints = tiny_checkpoints(
            checkout / "checkpoints", root / "checkpoints", bench.checkpoints
        )
    else:
        checkpoints = checkout / "checkpoints"
    log.info("running benchmark %s (%s): %s", bench.name, size, bench.summary)
    result = importlib.import_module(bench.module).run(size, checkpoints)
    if size == "smoke":  # the hashes describe the shipped checkpoints, not the tiny ones
        provenance.update(fingerprint(bench, checkout, checkpoints))
    return result, write_results(bench, result, root, size, provenance)


def status(root: Path) -> int:
    """A line per benchmark: its result's size, date, commit and whether it is current."""
    rows, stale = [["benchmark", "size", "date", "commit", "status"]], 0
    for name, bench in sorted(BENCHMARKS.items()):
        path = root / "benchmarks" / "results" / f"{name}.json"
        if not path.exists():
            rows.append([name, "-", "-", "-", "no result"])
            stale += 1
            continue
        recorded = json.loads(path.read_text(encoding="utf-8"))
        reasons = staleness(bench, recorded, root)
        stale += bool(reasons)
        rows.append(
            [
                name,
                str(recorded.get("size", "quick" if recorded.get("quick") else "full")),
                str(recorded.get("date", "-")),
                str(recorded.get("commit") or "-")[:10],
                "current" if not reasons else "stale: " + "; ".join(reasons),
            ]
        )
    sys.stdout.write(format_table(rows) + "\n")
    sys.stdout.write(
        f"{len(BENCHMARKS) - stale} of {len(BENCHMARKS)} current; what each depends on: "
        + "; ".join(f"{n}: {', '.join(dependencies(b))}" for n, b in sorted(BENCHMARKS.items()))
        + "\n"
    )
    return 0 if not stale else 1


def main_from_args(args: argparse.Namespace) -> int:
    if args.status:
        return status(args.root or project_root())
    if args.name is None:
        sys.stderr.write("warmloop bench: name a benchmark, or ask for --status\n")
        return 2
    size = "smoke" if args.smoke else "quick" if args.quick else "full"
    root = output_root(size, args.root)
    command = getattr(args, "command_line", "")
    result, path = run_benchmark(BENCHMARKS[args.name], size, root, command)
    sys.stdout.write(format_table(result.table) + "\n")
    for rows in result.more_tables:
        sys.stdout.write("\n" + format_table(rows) + "\n")
    for note in result.notes:
        sys.stdout.write(f"- {note}\n")
    sys.stdout.write(f"wrote {path}\n")
    return 0
