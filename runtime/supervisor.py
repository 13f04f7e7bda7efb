"""`warmloop launch`: one process per node, logs forwarded, restarts, clean shutdown.

Each node runs as `python -m MODULE ARGS` in its own process group, with its output
forwarded line by line as `[name] line`. A node that fails (non-zero exit, a signal) is
restarted if its policy allows, after a back-off that doubles each time up to a ceiling,
and never more than a few times a minute. A node that fails for good is given up on:
when it is `required` (the default) the run ends, saying why. When a node marked
`ends_run` exits, or on SIGINT/SIGTERM, every node gets SIGTERM, then SIGKILL after its
grace period, and whatever is left of its process group SIGKILL; the ipc socket files
of the graph are removed. Children also get SIGTERM if the launcher itself dies (Linux
PR_SET_PDEATHSIG), so none is orphaned.

Every exit is recorded (code or signal, time, restarts before it), and the run's exit
code says how it went: EXIT_OK, EXIT_NODE_FAILED, EXIT_GAVE_UP, EXIT_FAULTS (it
completed, but nodes failed on the way) or EXIT_INTERRUPTED.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from runtime.launch_file import WINDOW, WINDOW_RESTARTS, LaunchGraph, NodeSpec

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # Not Linux: no prctl; the launcher's own shutdown still covers its normal exits.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


EXIT_OK = 0  # the run completed and nothing failed
EXIT_NODE_FAILED = 1  # the node that ends the run failed
EXIT_GAVE_UP = 3  # a required node failed for good
EXIT_FAULTS = 4  # the run completed, but nodes failed on the way (and were restarted)
EXIT_INTERRUPTED = 130  # SIGINT or SIGTERM ended the run (128 + SIGINT, by convention)
SHUTDOWN_CODES = (0, -signal.SIGTERM)  # how a node answers our SIGTERM when all is well


@dataclass
class Exit:
    """One exit of a node's process."""

    code: int  # negative: the signal that ended it
    at: float  # seconds since the launch started
    restarts: int  # restarts of the node before this run of it
    at_shutdown: bool = False  # while the launcher was stopping every node

    @property
    def failed(self) -> bool:
        return self.code not in (SHUTDOWN_CODES if self.at_shutdown else (0,))

    def describe(self) -> str:
        return f"{_describe(self.code)} at {self.at:.1f} s"

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "signal": signal.Signals(-self.code).name if self.code < 0 else None,
            "at_s": round(self.at, 3),
            "restarts": self.restarts,
            "at_shutdown": self.at_shutdown,
            "failed": self.failed,
        }


@dataclass
class NodeRecord:
    spec: NodeSpec
    process: subprocess.Popen | None = None
    restarts: int = 0
    exits: list[Exit] = field(default_factory=list)
    restart_at: float | None = None
    restarted_at: list[float] = field(default_factory=list)  # monotonic, for the window
    finished: bool = False
    gave_up: bool = False
    last_line: str = ""

    @property
    def exit_codes(self) -> list[int]:
        return [e.code for e in self.exits]


@dataclass
class LaunchReport:
    exits: dict[str, list[Exit]]
    restarts: dict[str, int]
    ended_by: str  # "node NAME", "signal", "gave up on NAME" or "all nodes exited"
    gave_up: list[str] = field(default_factory=list)  # one line per node given up on
    ends_run: str | None = None  # the node whose exit ends the run

    @property
    def exit_codes(self) -> dict[str, list[int]]:
        return {name: [e.code for e in exits] for name, exits in self.exits.items()}

    @property
    def faults(self) -> list[str]:
        """A line per node that failed: every failure, with its code or signal and time."""
        lines = []
        for name, exits in self.exits.items():
            failures = [e for e in exits if e.failed]
            if failures:
                restarted = self.restarts[name]
                lines.append(
                    f"{name} failed {len(failures)} time(s): "
                    + ", ".join(e.describe() for e in failures)
                    + f"; restarted {restarted} time(s)"
                )
        return lines

    @property
    def exit_code(self) -> int:
        if self.ended_by.startswith("gave up on"):  # a required node; others are faults
            return EXIT_GAVE_UP
        last = self.exits.get(self.ends_run or "", [])
        if last and last[-1].failed and not last[-1].at_shutdown:
            return EXIT_NODE_FAILED
        if self.ended_by == "signal":
            return EXIT_INTERRUPTED
        return EXIT_FAULTS if self.faults else EXIT_OK

    def to_dict(self) -> dict:
        return {
            "ended_by": self.ended_by,
            "exit_code": self.exit_code,
            "gave_up": self.gave_up,
            "faults": self.faults,
            "nodes": {
                name: {"restarts": self.restarts[name], "exits": [e.to_dict() for e in exits]}
                for name, exits in self.exits.items()
            },
        }


class Supervisor:
    def __init__(
        self,
        graph: LaunchGraph,
        output: TextIO | None = None,
        env: dict | None = None,
        handle_signals: bool = True,  # False when run outside the main thread (tests)
    ):
        self.graph = graph
        self.handle_signals = handle_signals
        self.output = output or sys.stdout
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.records = {spec.name: NodeRecord(spec) for spec in graph.nodes}
        self._print_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._began = time.monotonic()
        self.ended_by = "all nodes exited"
        self.gave_up: list[str] = []

    def stop(self) -> None:
        if not self._stop.is_set():
            self.ended_by = "signal"
        self._stop.set()

    def run(self) -> LaunchReport:
        previous = {}
        if self.handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, lambda *_: self.stop())
        try:
            for record in self.records.values():
                self._start(record)
            while not self._stop.is_set() and not all(r.finished for r in self.records.values()):
                self._poll()
                self._stop.wait(0.05)
        finally:
            self._shutdown()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.report()

    def report(self) -> LaunchReport:
        ends_run = next((s.name for s in self.graph.nodes if s.ends_run), None)
        return LaunchReport(
            {n: list(r.exits) for n, r in self.records.items()},
            {n: r.restarts for n, r in self.records.items()},
            self.ended_by,
            list(self.gave_up),
            ends_run,
        )

    def pid(self, name: str) -> int | None:
        process = self.records[name].process
        return process.pid if process is not None and process.poll() is None else None

    # ---- processes -------------------------------------------------------------------
    def _start(self, record: NodeRecord) -> None:
        spec = record.spec
        record.process = subprocess.Popen(
            [sys.executable, "-m", spec.module, *spec.argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,  # its own process group: signals reach all it spawns
            preexec_fn=_die_with_parent,
        )
        record.restart_at = None
        thread = threading.Thread(
            target=self._forward, args=(spec.name, record.process), daemon=True
        )
        thread.start()
        self._threads.append(thread)
        self._say(spec.name, f"started (pid {record.process.pid})")

    def _forward(self, name: str, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            text = line.rstrip("\n")
            if text.strip():
                self.records[name].last_line = text
            self._say(name, text)

    def _say(self, name: str, text: str) -> None:
        with self._print_lock:
            self.output.write(f"[{name}] {text}\n")
            self.output.flush()

    def _poll(self) -> None:
        now = time.monotonic()
        for record in self.records.values():
            if record.finished:
                continue
            if record.restart_at is not None:
                if now >= record.restart_at:
                    record.restarted_at.append(now)
                    self._start(record)
                continue
            code = record.process.poll()
            if code is None:
                continue
            record.exits.append(Exit(code, now - self._began, record.restarts))
            self._on_exit(record, code, now)

    def _on_exit(self, record: NodeRecord, code: int, now: float) -> None:
        spec, policy = record.spec, record.spec.restart
        self._say(spec.name, f"exited with {_describe(code)}")
        if spec.ends_run:
            record.finished = True
            self.ended_by = f"node {spec.name}"
            self._stop.set()
        elif code == 0:
            record.finished = True
        elif policy.on_failure and record.restarts < policy.max_restarts:
            delay = self._restart_delay(record, now)
            record.restarts += 1
            record.restart_at = now + delay
            self._say(
                spec.name, f"restart {record.restarts}/{policy.max_restarts} in {delay:.1f} s"
            )
        else:
            self._give_up(record, code)

    def _restart_delay(self, record: NodeRecord, now: float) -> float:
        """The policy's back-off, and longer if the window's restarts are used up."""
        delay = record.spec.restart.delay(record.restarts)
        recent = [t for t in record.restarted_at if now - t < WINDOW]
        if len(recent) >= WINDOW_RESTARTS:
            delay = max(delay, recent[-WINDOW_RESTARTS] + WINDOW - now)
        return delay

    def _give_up(self, record: NodeRecord, code: int) -> None:
        record.finished = record.gave_up = True
        failures = sum(e.failed for e in record.exits)
        line = (
            f"gave up on {record.spec.name} after {failures} failure(s): last exit "
            f"{_describe(code)}, last log line: {record.last_line or '(none)'}"
        )
        self.gave_up.append(line)
        self._say(record.spec.name, line)
        if record.spec.required:
            self.ended_by = f"gave up on {record.spec.name}"
            self._stop.set()

    def _shutdown(self) -> None:
        running = [r for r in self.records.values() if r.process and r.process.poll() is None]
        for record in running:
            # SIGTERM to the node alone: it closes its own children in order (an ffmpeg
            # writer killed alongside it would leave no video). The group gets SIGKILL below.
            with contextlib.suppress(ProcessLookupError):
                record.process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        for record in running:
            grace = record.spec.grace
            try:
                record.process.wait(timeout=max(0.0, stopping + grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(record.spec.name, f"no exit {grace:.0f} s after SIGTERM: SIGKILL")
                _signal_group(record.process, signal.SIGKILL)
                record.process.wait()
            at = time.monotonic() - self._began
            record.exits.append(Exit(record.process.returncode, at, record.restarts, True))
            record.finished = True
        for record in self.records.values():
            if record.process is not None:
                _signal_group(record.process, signal.SIGKILL)  # stragglers of the group
        for thread in self._threads:
            thread.join(timeout=2)
        for path in self.graph.ipc_paths:
            Path(path).unlink(missing_ok=True)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _describe(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"
