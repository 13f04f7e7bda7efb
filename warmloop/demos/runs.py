"""What every demo does around its launch graph: run it, keep its log, read its outputs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from runtime.launch import RunDirBusy, claim_run_dir, load, report_lines, resolve
from runtime.supervisor import Supervisor

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
ECHOED = ("episode ", "restart", "exited", "ERROR", "Traceback")


class LogTee:
    """Writes every node line to the log file; echoes the few a person wants to see."""

    def __init__(self, log_file: TextIO, echo: TextIO):
        self.log_file, self.echo = log_file, echo

    def write(self, text: str) -> None:
        self.log_file.write(text)
        if any(marker in text for marker in ECHOED):
            self.echo.write(text)

    def flush(self) -> None:
        self.log_file.flush()
        self.echo.flush()


def run_exclusively(name: str, run_dir: Path, demo) -> dict[str, Any] | int:
    """`demo()` while holding the run directory; exit code 2, with one line, when another
    run holds it (it would delete that run's outputs and share its sockets)."""
    try:
        with claim_run_dir(run_dir):
            return demo()
    except RunDirBusy as exc:
        sys.stderr.write(f"warmloop demo {name}: {exc}\n")
        return 2


def fresh_run_dir(run_dir: Path, stale: tuple[str, ...]) -> Path:
    """The run directory, created, without the outputs a previous run left there."""
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (run_dir / name).unlink(missing_ok=True)
    return run_dir


def run_graph(graph: str, run_dir: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """Run launch graph `graph` to its end, logging to RUN_DIR/launch.log.

    Returns the report lines, the seconds it took and the log's path.
    """
    loaded = load(resolve(graph), run_dir, overrides)
    began = time.monotonic()
    with open(run_dir / "launch.log", "w", encoding="utf-8") as log_file:
        report = Supervisor(loaded, output=LogTee(log_file, sys.stdout)).run()
    return {
        "seconds": time.monotonic() - began,
        "report": report_lines(report),
        "exit_code": report.exit_code,
        "log": str(run_dir / "launch.log"),
    }


def read_json(path: Path) -> dict[str, Any]:
    """A node's summary, or {} when the node did not write one."""
    return json.loads(path.read_text()) if path.exists() else {}


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Records appended one per line (a process killed mid-line leaves a torn last one,
    which is skipped)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def write_result(run_dir: Path, result: dict[str, Any]) -> None:
    (run_dir / "demo.json").write_text(json.dumps(result, indent=2, default=str))
