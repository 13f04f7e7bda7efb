"""`warmloop launch NAME_OR_PATH`: validate a launch graph, then run it (runtime/supervisor.py).

NAME is a file of launch/ (`manipulation` is launch/manipulation.yaml); a path is read
as given. `--set node.param=value` overrides a node's parameter, `--check` validates
only.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import fcntl
import json
import logging
import os
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import yaml

from runtime.launch_file import LaunchError, LaunchGraph, load
from runtime.supervisor import (
    EXIT_FAULTS,
    EXIT_GAVE_UP,
    EXIT_INTERRUPTED,
    EXIT_NODE_FAILED,
    EXIT_OK,
    LaunchReport,
    Supervisor,
)

EXIT_MEANINGS = {
    EXIT_OK: "completed, no faults",
    EXIT_NODE_FAILED: "the node that ends the run failed",
    EXIT_GAVE_UP: "a required node failed for good",
    EXIT_FAULTS: "completed, but nodes failed on the way",
    EXIT_INTERRUPTED: "interrupted by a signal",
}

log = logging.getLogger(__name__)


def _shipped() -> dict[str, Path]:
    """The graphs that come with warmloop: launch/*.yaml of a checkout, else the package's."""
    local = Path(__file__).resolve().parents[1] / "launch"
    folder = local if local.is_dir() else Path(str(resources.files("warmloop_launch")))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def resolve(name_or_path: str) -> Path:
    """A path as given when it exists or looks like one; else the shipped graph NAME."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return path
    graphs = _shipped()
    if name_or_path in graphs:
        return graphs[name_or_path]
    close = difflib.get_close_matches(name_or_path, list(graphs), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise LaunchError(
        f"no launch graph {name_or_path!r}: {hint}the graphs are {', '.join(graphs)}, or "
        "give a path to a YAML file"
    )


class RunDirBusy(LaunchError):
    """Another launch is running in this run directory."""


@contextlib.contextmanager
def claim_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold RUN_DIR/.lock for the run: a second launch into the same directory (its ipc
    sockets, its recording) refuses in one line instead of breaking the first."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = open(run_dir / ".lock", "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            raise RunDirBusy(
                f"{run_dir} is in use by another run (pid {holder}); wait for it, or give "
                "this one its own --run-dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield
    finally:
        lock.close()  # releases the lock


def parse_overrides(items: list[str]) -> dict[str, object]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise LaunchError(f"--set {item!r}: expected NODE.PARAM=VALUE")
        overrides[key] = yaml.safe_load(value)  # "3" -> 3, "[a, b]" -> a list
    return overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("graph", help="a launch graph name (see launch/) or a YAML path")
    parser.add_argument("--run-dir", type=Path, default=None, help="default: runs/NAME")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE")
    parser.add_argument("--check", action="store_true", help="validate the file and exit")
    parser.add_argument(
        "--summary", type=Path, help="write the run's report here as JSON (every exit)"
    )


def prepare(args: argparse.Namespace) -> LaunchGraph:
    path = resolve(args.graph)
    run_dir = args.run_dir or Path("runs") / path.stem
    graph = load(path, run_dir, parse_overrides(args.set))
    run_dir.mkdir(parents=True, exist_ok=True)
    return graph


def output_lines(run_dir: Path) -> str:
    """Where the run's outputs went: the files its nodes wrote into the run directory."""
    files = sorted(p for p in run_dir.iterdir() if not p.name.startswith(".") and not p.is_socket())
    if not files:
        return f"outputs: none in {run_dir}\n"
    named = ", ".join(p.name + ("/" if p.is_dir() else "") for p in files)
    return f"outputs in {run_dir}: {named}\n"


def report_lines(report: LaunchReport) -> list[str]:
    lines = [f"launch ended by {report.ended_by}"]
    lines += report.gave_up
    lines += [f"fault: {fault}" for fault in report.faults]
    return lines


def main_from_args(args: argparse.Namespace) -> int:
    try:
        graph = prepare(args)
    except LaunchError as exc:
        sys.stderr.write(f"warmloop launch: {exc}\n")
        return 2
    if args.check:
        names = ", ".join(f"{n.name} ({n.module})" for n in graph.nodes)
        sys.stdout.write(f"{graph.path}: valid; nodes: {names}\n")
        return 0
    try:
        with claim_run_dir(args.run_dir or Path("runs") / graph.path.stem):
            report = Supervisor(graph).run()
    except RunDirBusy as exc:
        sys.stderr.write(f"warmloop launch: {exc}\n")
        return 2
    for line in report_lines(report):
        sys.stdout.write(line + "\n")
    run_dir = args.run_dir or Path("runs") / graph.path.stem
    sys.stdout.write(output_lines(run_dir))
    if args.summary is not None:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(f"exit code {report.exit_code} ({EXIT_MEANINGS[report.exit_code]})\n")
    return report.exit_code
