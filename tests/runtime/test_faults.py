"""Faults with real processes: a policy killed mid-episode, malformed messages."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from policies.deploy.export import export
from runtime.launch import resolve
from runtime.launch_file import load
from runtime.supervisor import Supervisor
from streams import ActionChunk, Endpoint, Observation, Publisher, Queue, Subscriber
from streams.recording import read_recording, summarize

ROOT = Path(__file__).resolve().parents[2]
STALENESS, PERIOD = 0.3, 0.1


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    export(ROOT / "checkpoints" / "pickplace", out)
    return out


def _wait_for_step(endpoint: str, step: int, timeout: float = 60) -> None:
    with Subscriber(endpoint, {"observation": Queue(1000)}) as watcher:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received = watcher.recv("observation", timeout=0.2)
            if received is not None and received.message.step >= step:
                return
    raise AssertionError(f"the sim never reached step {step}")


@pytest.mark.slow
def test_policy_killed_mid_episode_is_restarted_and_the_sim_holds_meanwhile(
    exported: Path, tmp_path: Path
) -> None:
    overrides = {"sim.episodes": 2, "sim.staleness": STALENESS, "policy.policy": str(exported)}
    graph = load(resolve("manipulation"), tmp_path, overrides)
    output = io.StringIO()
    supervisor = Supervisor(graph, output=output, handle_signals=False)
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    try:
        _wait_for_step(f"ipc://{tmp_path}/sim.sock", 8)
        os.kill(supervisor.pid("policy"), signal.SIGKILL)
    finally:
        thread.join(timeout=120)
    assert not thread.is_alive(), output.getvalue()[-3000:]
    log = output.getvalue()
    assert "[policy] exited with signal SIGKILL" in log and "[policy] restart 1/3" in log

    sim = json.loads((tmp_path / "sim.json").read_text())
    assert len(sim["episodes"]) == 2  # the run completed
    assert sim["counters"]["held"] >= 3  # the watchdog held the arm during the outage
    topics = summarize(tmp_path / "run.mcap")  # the recording stays readable
    assert topics["episode"].messages == 2
    _assert_held_within_a_period_of_the_staleness_deadline(tmp_path / "run.mcap")
    assert not list(tmp_path.glob("*.sock"))  # no stale ipc files


def _assert_held_within_a_period_of_the_staleness_deadline(recording: Path) -> None:
    chunks, observations = [], []
    for recorded in read_recording(recording):
        message = recorded.decode().message
        # Episode 0's chunks only: the pause between episodes (the sim renders episode
        # 0's MP4 then) can be longer than the outage, and is no outage.
        if recorded.topic == "action" and message.episode == 0:
            chunks.append(message.stamp.t_sent)  # the policy's monotonic clock, like t_capture
        elif recorded.topic == "observation" and message.episode == 0:
            observations.append((message.t_capture, message.state[:3].copy()))
    gaps = np.diff(chunks)
    outage = int(np.argmax(gaps))
    last_chunk, resumed = chunks[outage], chunks[outage + 1]
    assert gaps[outage] > 1.0, "no outage found in the recorded chunks"
    hold_from = last_chunk + STALENESS + PERIOD + 0.02  # one period after the deadline
    # A chunk reaches the sim a few ms after it was sent: stop a period earlier, so a
    # tick that already executed the first new chunk is not counted as held.
    hold_until = resumed - PERIOD
    held = np.array([s for t, s in observations if hold_from <= t < hold_until])
    assert len(held) >= 3
    assert np.abs(held - held[0]).max() < 0.003  # metres: the hand stands still


def _sim_process(tmp_path: Path, actions: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "sim.node", "--task", "pickplace", "--episodes", "1"),
            *("--publish", f"ipc://{tmp_path}/sim.sock", "--actions", actions),
            *("--rate-scale", "5", "--summary", str(tmp_path / "sim.json")),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_malformed_action_messages_are_counted_and_the_sim_goes_on(tmp_path) -> None:
    actions = f"ipc://{tmp_path}/policy.sock"
    publisher = Publisher(Endpoint(actions, bind=True), source="test")
    sim = _sim_process(tmp_path, actions)
    try:
        _wait_for_step(f"ipc://{tmp_path}/sim.sock", 2)
        for garbage in ([b"action", b"\x93not msgpack"], [b"action"], [b"action", b"\xc1", b"x"]):
            publisher.send_frames(garbage)
        chunk = np.tile([0.1, 0.1, 0.15, -1.0], (16, 1)).astype(np.float32)
        publisher.publish("action", ActionChunk(actions=chunk, t_first=time.monotonic(), dt=0.02))
        assert sim.wait(timeout=60) == 0, sim.stderr.read()[-2000:]
    finally:
        if sim.poll() is None:
            sim.kill()
        publisher.close()
    summary = json.loads((tmp_path / "sim.json").read_text())
    assert summary["counters"]["decode_errors"] == 3
    assert len(summary["episodes"]) == 1  # the loop went on to the end of the episode


def test_malformed_and_bad_observations_are_counted_and_the_policy_goes_on(
    exported: Path, tmp_path: Path
) -> None:
    observations, actions = f"ipc://{tmp_path}/sim.sock", f"ipc://{tmp_path}/policy.sock"
    sim_side = Publisher(Endpoint(observations, bind=True), source="test-sim")
    policy = subprocess.Popen(
        [
            *(sys.executable, "-m", "policies.node", str(exported)),
            *("--observations", observations, "--publish", actions),
            *("--summary", str(tmp_path / "policy.json")),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    chunks = Subscriber(actions, {"action": Queue(100)})
    try:
        state = np.zeros(11, np.float32)
        received, step = None, 0
        deadline = time.monotonic() + 60
        while received is None and time.monotonic() < deadline:  # until the node is up
            sim_side.publish("observation", Observation(state=state, step=step))
            received, step = chunks.recv("action", timeout=0.2), step + 1
        assert received is not None, "the policy node never answered"
        sim_side.send_frames([b"observation", b"\x93garbage"])
        sim_side.publish("observation", Observation(state=np.zeros(10, np.float32), step=step))
        sim_side.publish("observation", Observation(state=state, step=step + 1))
        answer = chunks.recv("action", timeout=10)
        while answer is not None and answer.message.first_index < step + 1:
            answer = chunks.recv("action", timeout=10)
        assert answer is not None, "the policy node stopped answering"
    finally:
        policy.send_signal(signal.SIGTERM)
        assert policy.wait(timeout=20) == 0, policy.stderr.read()[-2000:]
        chunks.close()
        sim_side.close()
    counters = json.loads((tmp_path / "policy.json").read_text())["counters"]
    assert counters["decode_errors"] == 1 and counters["bad_observations"] == 1
