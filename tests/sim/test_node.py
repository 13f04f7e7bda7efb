"""The sim node as a real process, over real sockets."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sim.node import SimNodeConfig
from streams import ActionChunk, Endpoint, Publisher, Queue, Subscriber
from tests.streams.helpers import wait_for


def _hand_positions(sub: Subscriber, seconds: float) -> np.ndarray:
    positions, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        received = sub.recv("observation", timeout=0.2)
        if received is not None:
            positions.append(received.message.state[:3].copy())
    return np.array(positions)


def test_sim_node_follows_chunks_then_holds_still_when_they_stop(tmp_path) -> None:
    observations, actions = f"ipc://{tmp_path}/obs", f"ipc://{tmp_path}/act"
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sim.node",
            "--task",
            "pickplace",
            "--publish",
            observations,
            "--actions",
            actions,
            "--episodes",
            "1",
            "--staleness",
            "0.3",
            "--seed",
            "3",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    sub = Subscriber(observations, {"observation": Queue(1000), "heartbeat": Queue(100)})
    pub = Publisher(Endpoint(actions, bind=True), source="test-policy")
    try:
        first = None
        for _ in range(100):
            first = sub.recv("observation", timeout=0.2)
            if first is not None:
                break
        assert first is not None, "the sim node published nothing"
        target = np.array([0.1, 0.1, 0.15], np.float32)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # a policy sending 8-step chunks at 5 Hz
            chunk = np.tile(np.append(target, -1.0), (8, 1)).astype(np.float32)
            pub.publish("action", ActionChunk(actions=chunk, t_first=time.monotonic(), dt=0.1))
            time.sleep(0.2)
        reached = _hand_positions(sub, 0.3)[-1]
        np.testing.assert_allclose(reached, target, atol=0.01)

        time.sleep(0.5)  # past the staleness deadline: the node must hold still
        held = _hand_positions(sub, 1.0)
        assert len(held) >= 8
        assert np.abs(held - held[0]).max() < 1e-3

        counters: dict = {}
        deadline = time.monotonic() + 5.0  # heartbeats come once a second
        while time.monotonic() < deadline and counters.get("held", 0) < 5:
            beat = sub.recv("heartbeat", timeout=0.5)
            if beat is not None:
                counters = beat.message.counters
        assert counters.get("held", 0) >= 5 and counters.get("executor_chunks", 0) >= 5
    finally:
        node.send_signal(signal.SIGTERM)
        _, stderr = node.communicate(timeout=20)
        sub.close()
        pub.close()
    assert node.returncode == 0, stderr


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        (
            "task",
            "pickplac",
            "task must be one of ['explore', 'panda-pickplace', 'panda-pusht', 'pickplace', "
            "'pusht'], got 'pickplac'",
        ),
        ("episodes", 0, "episodes must be >= 1, got 0"),
        ("staleness", -1.0, "staleness must be positive, got -1.0"),
        ("merge", "median", "merge must be one of"),
        ("overrun", "wait", "overrun must be one of ('skip', 'catch_up'), got 'wait'"),
        ("obs", "pixels", "obs must be state or image, got 'pixels'"),
        # refused at start: it crashed the node when the first episode's video was written
        ("video", "runs/None", "video is an .mp4 path or empty, got 'runs/None'"),
    ],
)
def test_config_errors_name_the_field_and_the_value(field: str, value, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        SimNodeConfig(**{field: value})


def test_episodes_are_written_as_they_end_and_an_interrupted_one_is_not_a_failure(
    tmp_path,
) -> None:
    results, summary, video = tmp_path / "episodes.jsonl", tmp_path / "sim.json", tmp_path / "e.mp4"
    node = subprocess.Popen(
        [
            *(sys.executable, "-m", "sim.node", "--task", "pickplace", "--episodes", "5"),
            *("--rate-scale", "5", "--publish", f"ipc://{tmp_path}/obs"),
            *("--actions", f"ipc://{tmp_path}/act", "--results", str(results)),
            *("--summary", str(summary), "--video", str(video)),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # No policy: the arm holds still and each 100-step episode runs out at 50 Hz.
        assert wait_for(lambda: results.exists() and results.read_text().count("\n") >= 1, 120)
        assert video.stat().st_size > 0  # the first episode's MP4 is final when it ends
        time.sleep(0.5)  # into the second episode
    finally:
        node.send_signal(signal.SIGINT)
        _, stderr = node.communicate(timeout=60)
    assert node.returncode == 0, stderr
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [line["interrupted"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert lines[0]["length"] == 100 and lines[0]["seed"] == 0
    recorded = json.loads(summary.read_text())
    assert recorded["episodes"] == lines
    assert recorded["success_rate"] == 0.0  # finished episodes only: the held arm failed
    assert "interrupted before its end (not counted)" in stderr
