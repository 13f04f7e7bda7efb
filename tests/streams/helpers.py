"""Sample messages of every type, for round trips and fuzzing; waits on events."""

from __future__ import annotations

import threading
import time

import numpy as np

from streams import (
    ActionChunk,
    Controls,
    EpisodeResult,
    Error,
    Frame,
    Heartbeat,
    Observation,
    PointCloud,
    TimeSync,
    TriPlanes,
)


def sample_messages(rng: np.random.Generator | None = None) -> list:
    rng = rng or np.random.default_rng(0)
    pose = np.eye(4)
    pose[:3, 3] = rng.normal(size=3)
    intrinsics = np.array([[50.0, 0, 16], [0, 50.0, 12], [0, 0, 1]], dtype=np.float32)
    return [
        Observation(
            state=rng.normal(size=7).astype(np.float32),
            images={"top": rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)},
            step=3,
            episode=1,
        ),
        Frame(
            rgb=rng.integers(0, 255, (24, 32, 3), dtype=np.uint8),
            depth=rng.uniform(0.5, 4.0, (24, 32)).astype(np.float32),
            intrinsics=intrinsics,
            pose=pose,
            scene_time=1.25,
            camera="head",
        ),
        ActionChunk(
            actions=rng.normal(size=(16, 4)).astype(np.float32),
            t_first=10.0,
            dt=0.1,
            first_index=8,
            episode=2,
        ),
        TriPlanes(
            canonical={k: rng.normal(size=(4, 8, 8)).astype(np.float16) for k in TriPlanes.PLANES},
            deformation={
                k: rng.normal(size=(3, 4, 8, 8)).astype(np.float32) for k in TriPlanes.PLANES
            },
            decoder={"w0": rng.normal(size=(4, 8)).astype(np.float32)},
            bounds=np.array([[-1, -1, -1], [1, 1, 1]], dtype=np.float32),
            t_start=0.0,
            t_end=2.0,
        ),
        Heartbeat(node="sim", state="running", counters={"ticks": 10, "late": 0.5}),
        Error(code="bad", message="something"),
        TimeSync(t_client_send=1.0, t_server_recv=2.0, t_server_send=3.0),
        EpisodeResult(episode=4, success=True, score=0.97, length=120, seed=7, task="pusht"),
        Controls(keys="w+left"),
        PointCloud(
            points=rng.normal(size=(5, 3)).astype(np.float32),
            colours=rng.integers(0, 256, (5, 3), dtype=np.uint8),
            scene_time=0.5,
        ),
    ]


def wait_for(condition, timeout: float = 30.0, interval: float = 0.005) -> bool:
    """Poll `condition` until it holds or `timeout` passes: what a test waits on is an
    event, not a guess of how long a busy machine takes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


class LineReader:
    """Collects a child's text stream line by line in the background, so a test can wait
    for a line that signals an event and still see everything the child wrote."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, marker: str, timeout: float = 60.0) -> None:
        if not wait_for(lambda: any(marker in line for line in self.lines), timeout):
            raise AssertionError(f"no line with {marker!r} in {timeout} s: {self.text()[-2000:]}")

    def text(self) -> str:
        self._thread.join(timeout=0.1)
        return "".join(self.lines)
