"""Open3D's offscreen renderer in a child process that is replaced before it grows.

Open3D keeps about 4 MB of every image `OffscreenRenderer.render_to_image` makes
(isl-org/Open3D#6791, #3297; measured here: 480x360, +3.5 MB per frame, 5 GB an hour at
the viewer's rate), and it cannot be destroyed and made again in one process. The
workaround the Open3D issues give is to render in a process that is let go: this
`IsolatedRenderer` keeps a `SceneRenderer` in a child process, and when the child's
memory has grown by `budget_mb` it is stopped and a fresh one started (a second or so,
every few hundred frames).

Between the two processes only arrays travel, as a JSON header and raw bytes over a
pipe (`send_bytes`): nothing is pickled.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
BUDGET_MB = 300.0  # growth of the child's memory after which it is replaced (~75 frames)


def _send_arrays(connection: Connection, meta: dict, arrays: list[np.ndarray]) -> None:
    header = {**meta, "arrays": [[a.dtype.str, list(a.shape)] for a in arrays]}
    connection.send_bytes(json.dumps(header).encode())
    for array in arrays:
        connection.send_bytes(np.ascontiguousarray(array).tobytes())


def _receive_arrays(connection: Connection) -> tuple[dict, list[np.ndarray]]:
    header = json.loads(connection.recv_bytes())
    arrays = [
        np.frombuffer(connection.recv_bytes(), dtype=np.dtype(dtype)).reshape(shape)
        for dtype, shape in header.pop("arrays")
    ]
    return header, arrays


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _serve(connection: Connection, width: int, height: int) -> None:
    """The child (`python -m viz.isolated FD W H`): render what arrives until EOF."""
    from viz.scene_renderer import SceneRenderer

    renderer = SceneRenderer(width, height)
    while True:
        try:
            meta, arrays = _receive_arrays(connection)
        except EOFError:
            return
        points, colours, frame, *frusta = arrays
        cameras = [
            (frusta[2 * i], frusta[2 * i + 1], *size) for i, size in enumerate(meta["sizes"])
        ]
        image = renderer.render(
            points, colours, cameras, frame if frame.size else None, meta["eye"], meta["centre"]
        )
        _send_arrays(connection, {}, [image])


class IsolatedRenderer:
    """`SceneRenderer.render` in a child process, replaced when it has grown too much."""

    def __init__(self, width: int = 480, height: int = 360, budget_mb: float = BUDGET_MB):
        self.size, self.budget_mb = (width, height), budget_mb
        self.replaced = 0
        self._start()

    def _start(self) -> None:
        # A fresh interpreter (not a fork: Open3D's threads and a fork do not mix), with
        # one end of a socket pair as its channel; its stdout stays free for Open3D.
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "viz.isolated", str(theirs.fileno()), *map(str, self.size)],
            pass_fds=(theirs.fileno(),),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if not log.isEnabledFor(logging.DEBUG) else None,
        )
        theirs.close()
        self._connection = Connection(os.dup(ours.fileno()))
        ours.close()
        self._baseline_mb: float | None = None

    def render(
        self,
        points: np.ndarray,
        colours: np.ndarray,
        cameras=(),
        frame: np.ndarray | None = None,
        eye: tuple[float, float, float] = (0.0, -6.5, 6.0),
        centre: tuple[float, float, float] = (0.0, 0.0, 0.8),
    ) -> np.ndarray:
        frusta = [array for intrinsics, pose, _, _ in cameras for array in (intrinsics, pose)]
        meta = {"sizes": [[w, h] for _, _, w, h in cameras], "eye": eye, "centre": centre}
        empty = np.zeros((0, 0, 3), np.uint8)
        arrays = [points, colours, empty if frame is None else frame, *frusta]
        _send_arrays(self._connection, meta, arrays)
        _, (image,) = _receive_arrays(self._connection)
        self._check_growth()
        return image.copy()

    def _check_growth(self) -> None:
        used = rss_mb(self._process.pid)
        if self._baseline_mb is None:
            self._baseline_mb = used  # after the first image: Open3D fully started
        elif used - self._baseline_mb > self.budget_mb:
            log.debug("renderer process at %.0f MB: replacing it", used)
            self.close()
            self._start()
            self.replaced += 1

    @property
    def pid(self) -> int:
        return self._process.pid

    def close(self) -> None:
        self._connection.close()  # the child sees EOF and returns
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


if __name__ == "__main__":
    fd, width, height = map(int, sys.argv[1:4])
    _serve(Connection(fd), width, height)
