"""Hostile and abrupt conditions for `warmloop bench hardening`, each against a reference.

kill -9 of the recorder: observations at 100 Hz for a few seconds, then SIGKILL. The loss
window is the time between the newest message found in the cut file and the kill. The
reference is the same recorder with the time-based flush switched off (what it did
before: MCAP's 1 MiB chunks alone).

A flood of bad observations into the policy node (finite states that normalise to
infinity): the log lines it wrote, against one line per bad message (what it did
before), its memory before and after, and whether it still answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import project_root
from streams import Heartbeat, Observation, Publisher, Queue, Subscriber, parse_endpoint
from streams.recording import read_recording


class _Lines:
    """A child's stderr lines, collected by a thread as they come."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, publish, process: subprocess.Popen) -> None:
        """Call `publish` until a line holds `text` (the process has joined)."""
        deadline = time.monotonic() + 60
        while not any(text in line for line in self.lines):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"no {text!r} from the process: {self.lines[-20:]}")
            publish()
            time.sleep(0.02)


def kill9_loss_s(where: Path, seconds: float, flush_s: float, hz: float = 100.0) -> float:
    """Seconds of messages lost when the recorder is killed: kill time − newest kept."""
    path = where / f"kill9-{time.monotonic_ns()}.mcap"
    with Publisher(f"ipc://{where}/kill9-{time.monotonic_ns()}", source="sim") as pub:
        recorder = subprocess.Popen(
            [
                *(sys.executable, "-m", "runtime.recorder_node", "--out", str(path)),
                *("--connect", pub.address, "--topics", "probe", "--topics", "obs"),
                *("--flush-s", str(flush_s)),
            ],
            cwd=project_root(),
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = _Lines(recorder)
        lines.wait_for("first message", lambda: pub.publish("probe", Heartbeat(node="p")), recorder)
        sent_at, start = [], time.monotonic()
        for step in range(int(seconds * hz)):
            time.sleep(max(0.0, start + step / hz - time.monotonic()))
            pub.publish("obs", Observation(state=np.zeros(3, np.float32), step=step))
            sent_at.append(time.monotonic())
        killed_at = time.monotonic()
        os.kill(recorder.pid, signal.SIGKILL)
        recorder.wait(timeout=30)
    kept = [r.decode().message.step for r in read_recording(path, topics=["obs"])]
    newest = sent_at[max(kept)] if kept else start
    return killed_at - newest


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(row for row in status if row.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def flood_policy_node(where: Path, export_dir: Path, messages: int) -> dict:
    """The policy node under `messages` bad observations, then one good one."""
    observations, actions = f"ipc://{where}/flood-obs", f"ipc://{where}/flood-act"
    summary = where / "flood-policy.json"
    publisher = Publisher(parse_endpoint(observations, bind=True), source="robot")
    chunks = Subscriber(actions, {"action": Queue(8)})
    node = subprocess.Popen(
        [
            *(sys.executable, "-m", "warmloop.cli", "deploy", str(export_dir)),
            *("--observations", observations, "--publish", actions),
            *("--summary", str(summary)),
        ],
        cwd=project_root(),
        stderr=subprocess.PIPE,
        text=True,
    )
    good = np.zeros(11, np.float32)
    try:
        step = [0]

        def ask() -> None:
            step[0] += 1
            publisher.publish("observation", Observation(state=good, step=step[0]))

        lines = _Lines(node)
        lines.wait_for("onnx policy on", ask, node)
        while chunks.recv("action", timeout=0.05) is None:  # answering: warmed up
            ask()
        before, logged_before = _rss_mb(node.pid), len(lines.lines)
        bad = Observation(state=np.full(11, 3.4e38, np.float32))
        for _ in range(messages):
            publisher.publish("observation", bad)
            time.sleep(0.0002)  # 5k/s: ZeroMQ's queues keep every one
        answered = False
        for _ in range(200):  # then a good one must still be answered
            ask()
            if chunks.recv("action", timeout=0.05) is not None:
                answered = True
                break
        after = _rss_mb(node.pid)
        flood_log = lines.lines[logged_before:]
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)
        publisher.close()
        chunks.close()
    counted = json.loads(summary.read_text())["counters"].get("bad_observations", 0)
    return {
        "flood_messages": messages,
        "flood_bad_observations_counted": counted,
        "flood_log_lines": sum("skipped" in line for line in flood_log),
        "flood_rss_growth_mb_policy": after - before,
        "flood_answered_after": answered,
    }


OVERSIZE_BYTES = 200 * 2**20  # the 200 MB frames, over the 64 MiB cap


def _node_command(node: str, address: str, where: Path, export_dir: Path) -> tuple[list, str]:
    """How to start `node` listening to `address`, and the topic it reads there."""
    summary = str(where / f"oversize-{node}.json")
    if node == "sim":
        return [
            *(sys.executable, "-m", "sim.node", "--task", "pickplace", "--episodes", "100"),
            *("--actions", address, "--publish", f"ipc://{where}/oversize-sim-out"),
            *("--summary", summary),
        ], "action"
    if node == "recorder":
        return [
            *(sys.executable, "-m", "runtime.recorder_node", "--out", str(where / "flood.mcap")),
            *("--connect", address, "--topics", "frame", "--summary", summary),
        ], "frame"
    return [
        *(sys.executable, "-m", "warmloop.cli", "deploy", str(export_dir)),
        *("--observations", address, "--publish", f"ipc://{where}/oversize-policy-out"),
        *("--summary", summary),
    ], "observation"


def _settled_rss(pid: int, quiet_s: float = 1.0, timeout: float = 60.0) -> float:
    """RSS once it has stopped moving (within 1 MB over `quiet_s`): start-up is done."""
    deadline, last = time.monotonic() + timeout, _rss_mb(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = _rss_mb(pid)
        if abs(now - last) < 1.0:
            return now
        last = now
    return last


def oversize_flood(where: Path, node: str, export_dir: Path, big: int, garbage: int) -> dict:
    """One node's memory, log lines and (sim) deadline misses under `big` frames of 200
    MB and then `garbage` undecodable ones, from a raw ZeroMQ publisher: before, peak,
    after, and whether it is still running."""
    import zmq

    context = zmq.Context()
    raw = context.socket(zmq.PUB)
    raw.linger = 0
    address = f"ipc://{where}/oversize-{node}"
    raw.bind(address)
    command, topic = _node_command(node, address, where, export_dir)
    process = subprocess.Popen(command, cwd=project_root(), stderr=subprocess.PIPE, text=True)
    lines = _Lines(process)
    try:
        before = _settled_rss(process.pid)
        logged_before = len(lines.lines)
        payload, peak = bytes(OVERSIZE_BYTES), before
        for _ in range(big):
            raw.send_multipart([topic.encode(), payload], copy=False)
            for _ in range(5):  # ~0.5 s each: ZeroMQ hands it over, the node refuses it
                time.sleep(0.1)
                peak = max(peak, _rss_mb(process.pid))
        junk = np.random.default_rng(0).bytes(64)
        for _ in range(garbage):
            raw.send_multipart([topic.encode(), junk])
            time.sleep(0.0002)
        after = _settled_rss(process.pid, timeout=20.0)
        alive = process.poll() is None
        flood_lines = len(lines.lines) - logged_before
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        raw.close()
        context.term()
    figures = {
        f"rss_before_mb_{node}": before,
        f"rss_peak_mb_{node}": peak,
        f"rss_growth_mb_{node}": after - before,
        f"oversize_log_lines_{node}": flood_lines,
        f"oversize_survived_{node}": alive,
    }
    summary = where / f"oversize-{node}.json"
    if node == "sim" and summary.exists():
        figures["flood_deadline_misses_per_10k"] = json.loads(summary.read_text()).get(
            "misses_per_10k"
        )
    return figures
