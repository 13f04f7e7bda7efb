"""`warmloop launch`: one process per node, logs forwarded, restarts, clean shutdown.

Each node runs as `python -m MODULE ARGS` in its own process group, with its output
forwarded line by line as `[name] line`. A node that fails (non-zero exit, a signal) is
restarted if its policy allows, after a back-off that doubles each time. When a node
marked `ends_run` exits, or on SIGINT/SIGTERM, every node gets SIGTERM, then SIGKILL
after a grace period, and whatever is left of its process group SIGKILL; the ipc socket
files of the graph are removed. Children also get
SIGTERM if the launcher itself dies (Linux PR_SET_PDEATHSIG), so none is orphaned.
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

from runtime.launch_file import LaunchGraph, NodeSpec

log = logging.getLogger(__name__)
GRACE = 5.0  # seconds between SIGTERM and SIGKILL at shutdown
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # Not Linux: no prctl; the launcher's own shutdown still covers its normal exits.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class NodeRecord:
    spec: NodeSpec
    process: subprocess.Popen | None = None
    restarts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    restart_at: float | None = None
    finished: bool = False


@dataclass
class LaunchReport:
    exit_codes: dict[str, list[int]]
    restarts: dict[str, int]
    ended_by: str  # "node NAME", "signal", or "all nodes exited"

    @property
    def faults(self) -> list[str]:
        return [
            f"{name} exited with {codes[:-1] if self.restarts[name] else codes} and was "
            f"restarted {self.restarts[name]} time(s)"
            for name, codes in self.exit_codes.items()
            if self.restarts[name]
        ]


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
        self.ended_by = "all nodes exited"

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
        return LaunchReport(
            {n: r.exit_codes for n, r in self.records.items()},
            {n: r.restarts for n, r in self.records.items()},
            self.ended_by,
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
            self._say(name, line.rstrip("\n"))

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
                    self._start(record)
                continue
            code = record.process.poll()
            if code is None:
                continue
            record.exit_codes.append(code)
            self._on_exit(record, code, now)

    def _on_exit(self, record: NodeRecord, code: int, now: float) -> None:
        spec, policy = record.spec, record.spec.restart
        self._say(spec.name, f"exited with {_describe(code)}")
        if spec.ends_run:
            record.finished = True
            self.ended_by = f"node {spec.name}"
            self._stop.set()
        elif code != 0 and policy.on_failure and record.restarts < policy.max_restarts:
            delay = policy.backoff * 2**record.restarts
            record.restarts += 1
            record.restart_at = now + delay
            self._say(
                spec.name, f"restart {record.restarts}/{policy.max_restarts} in {delay:.1f} s"
            )
        else:
            record.finished = True

    def _shutdown(self) -> None:
        running = [r for r in self.records.values() if r.process and r.process.poll() is None]
        for record in running:
            # SIGTERM to the node alone: it closes its own children in order (an ffmpeg
            # writer killed alongside it would leave no video). The group gets SIGKILL below.
            with contextlib.suppress(ProcessLookupError):
                record.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE
        for record in running:
            try:
                record.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(record.spec.name, f"no exit {GRACE:.0f} s after SIGTERM: SIGKILL")
                _signal_group(record.process, signal.SIGKILL)
                record.process.wait()
            record.exit_codes.append(record.process.returncode)
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
