"""The whole loop over real sockets: world node ⇄ reconstruction node, a tiny generator."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.launch import resolve
from runtime.launch_file import load
from runtime.supervisor import Supervisor
from streams import Frame, Queue, Subscriber
from tests.world.tiny import save_tiny
from world.generation.node import WorldNodeConfig, parse_controls

SEGMENTS, N = 8, 8


def test_world_and_reconstruction_nodes_close_the_loop(tmp_path) -> None:
    checkpoint = save_tiny(tmp_path / "tiny")
    overrides = {
        "world.checkpoint": str(checkpoint),
        "world.segments": SEGMENTS,
        "world.max_fps": 25.0,
        # The short run must not end before the memory node, slower to start under load,
        # has seen its frames: the world holds its start frame until that node is heard.
        "world.memory_wait_s": 60.0,
        "world.video": "{run_dir}/explore.mp4",
        "reconstruction.resolution": 16,
        "reconstruction.channels": 4,
        "reconstruction.time_steps": 2,
        "reconstruction.rays_per_step": 128,
        "reconstruction.samples": 8,
        "reconstruction.publish_hz": 5.0,
    }
    graph = load(resolve("explore-world"), tmp_path, overrides)
    frames: list[Frame] = []
    viewer = Subscriber(f"ipc://{tmp_path}/world.sock", {"frame": Queue(1000)})

    def watch() -> None:
        while (received := viewer.recv("frame", timeout=20.0)) is not None:
            frames.append(received.message)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    log_lines: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            log_lines.append(text)

        def flush(self) -> None:
            pass

    report = Supervisor(graph, output=Sink()).run()
    watcher.join(timeout=30)
    viewer.close()
    logs = "".join(log_lines)
    world = json.loads((tmp_path / "world.json").read_text())
    reconstruction = json.loads((tmp_path / "reconstruction.json").read_text())
    assert report.ended_by == "node world" and report.exit_codes["world"] == [0], logs
    counters = world["counters"]
    assert counters["frames"] == SEGMENTS * N, logs
    assert counters["keyframes"] == 1 + SEGMENTS * 3  # the start frame, every plan frame
    assert counters.get("snapshots", 0) >= 1, logs  # guidance came back from the memory
    assert reconstruction["counters"]["frames"] >= 1
    assert world["held_frames"] <= 3 * N  # bounded: old frames are let go
    assert world["fps"] > 0 and world["first_frame_latency_ms"] > 0
    assert (tmp_path / "explore.mp4").stat().st_size > 1000
    # A subscriber that joined late misses the first frames, never the order.
    assert len(frames) >= SEGMENTS * N // 2
    times = [f.scene_time for f in frames]
    assert times == sorted(times) and frames[0].rgb.shape == (16, 16, 3)
    assert all(f.camera == "generated" and np.isfinite(f.depth).all() for f in frames)


def test_controls_from_trajectories_and_key_scripts() -> None:
    assert parse_controls("loop", 16).shape == (16, 5)
    keys = parse_controls("w*2,left+d", 5)
    assert keys[:, 0].tolist() == [1, 1, 0, 1, 1] and keys[2, 3] == 1 and keys[2, 1] == 1
    with pytest.raises(ValueError, match="unknown keys"):
        parse_controls("x*3", 4)
    with pytest.raises(ValueError, match="repeat"):
        parse_controls("w*two", 4)
    with pytest.raises(ValueError):
        WorldNodeConfig(segments=-1)
    with pytest.raises(ValueError, match="memory_wait_s"):
        WorldNodeConfig(memory_wait_s=-1.0)


def test_a_missing_checkpoint_stops_the_node_with_a_clear_error(tmp_path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "world.generation.node", "--checkpoint", str(tmp_path / "none"),
         "--publish", f"ipc://{tmp_path}/w.sock"],
        cwd=Path(__file__).resolve().parents[3], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "cannot start" in done.stderr and "missing" in done.stderr


def test_a_silent_memory_delays_the_start_then_is_given_up_with_a_warning(tmp_path) -> None:
    from world.generation.node import WorldNode

    config = WorldNodeConfig(
        checkpoint=str(save_tiny(tmp_path / "tiny")),
        publish=f"ipc://{tmp_path}/w.sock",
        memory=f"ipc://{tmp_path}/nobody.sock",  # no reconstruction node binds it
        memory_wait_s=0.5,
        segments=1,
    )
    node = WorldNode(config)
    started = time.monotonic()
    try:
        node.configure()
        node.loop()
    finally:
        node.shutdown()
    assert time.monotonic() - started >= 0.5
    assert node.counters["memory_wait_timeouts"] == 1
    assert node.counters["frames"] == config.frames_per_segment  # it went on without memory


def test_keys_from_warmloop_drive_move_the_world_camera(tmp_path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    keys, world = f"ipc://{tmp_path}/keys.sock", f"ipc://{tmp_path}/world.sock"
    checkpoint = save_tiny(tmp_path / "tiny")
    viewer = Subscriber(world, {"frame": Queue(1000)})
    node = subprocess.Popen(
        [
            *(sys.executable, "-m", "world.generation.node", "--checkpoint", str(checkpoint)),
            *("--publish", world, "--memory", "none", "--controls", keys),
            *("--segments", "0", "--max-fps", "20", "--summary", str(tmp_path / "w.json")),
        ],
        cwd=root,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The drive starts once the node streams: on a busy machine the node takes
        # seconds to start, and a drive begun before would be over before it listened.
        first = viewer.recv("frame", timeout=120.0)
        assert first is not None, "the world node never streamed"
        drive = subprocess.run(
            [sys.executable, "-m", "warmloop.cli", "drive", "--publish", keys, "--interval", "2"],
            input="idle\nd\nleft\nz\nidle\n",
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert drive.returncode == 0, drive.stderr
    finally:
        node.send_signal(__import__("signal").SIGINT)
        _, err = node.communicate(timeout=60)
    frames = [first.message]
    while (received := viewer.recv("frame", timeout=0.5)) is not None:
        frames.append(received.message)
    viewer.close()
    summary = json.loads((tmp_path / "w.json").read_text())
    assert node.returncode == 0, err
    # The node takes the newest controls once a segment, so how many it counts follows
    # the machine's speed (~25 on a quiet 2-core machine, 7 on a loaded one).
    assert summary["counters"]["controls"] >= 3 and summary["counters"]["bad_controls"] >= 1
    positions = np.array([f.pose[:3, 3] for f in frames])
    forward = np.array([f.pose[:3, 2] for f in frames])  # the camera's +z axis (looks along -z)
    assert np.ptp(positions, axis=0).max() > 0.3  # "d" moved it sideways
    assert np.abs(forward[-1] - forward[0]).max() > 0.3  # "left" turned it


def test_controls_messages_carry_only_key_names() -> None:
    from streams import Controls, InvalidMessage

    assert Controls(keys="w+left").keys == "w+left" and Controls().keys == ""
    for bad in ("w;rm", "w++a", "W", "x" * 80):
        with pytest.raises(InvalidMessage):
            Controls(keys=bad)
