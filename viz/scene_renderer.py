"""Open3D offscreen rendering of a point cloud and camera frusta beside the newest frame.

`SceneRenderer` draws in this process; `viz.isolated.IsolatedRenderer` runs one in a
child process that is replaced before Open3D's per-image leak grows it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

log = logging.getLogger(__name__)
FRUSTUM_COLOUR = (0.2, 0.6, 1.0)


def frustum_lines(
    intrinsics: np.ndarray, pose: np.ndarray, width: int, height: int, depth: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """A pyramid from the camera centre to its image corners at `depth`: points, lines."""
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], float)
    camera = np.stack(
        [(corners[:, 0] - cx) / fx * depth, -(corners[:, 1] - cy) / fy * depth, -np.full(4, depth)],
        1,
    )
    world = camera @ pose[:3, :3].T + pose[:3, 3]
    points = np.vstack([pose[:3, 3], world])
    lines = np.array([[0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [2, 3], [3, 4], [4, 1]])
    return points, lines


# Open3D's rendering engine aborts the process when a second offscreen renderer is made
# while one exists: every SceneRenderer of one size shares one.
_OFFSCREEN: dict[tuple[int, int], object] = {}


@contextmanager
def native_output_silenced() -> Iterator[None]:
    """Silence what C++ libraries print straight to the process's stdout and stderr
    (Filament and Vulkan write ~8 lines when Open3D's renderer starts). Python's own
    logging is unaffected; with debug logging (-v) nothing is silenced."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


class SceneRenderer:
    """Open3D offscreen rendering of point cloud + frusta, composed with the latest frame."""

    def __init__(self, width: int = 480, height: int = 360):
        with native_output_silenced():
            self._start(width, height)

    def _start(self, width: int, height: int) -> None:
        import open3d as o3d

        self.o3d = o3d
        self.width, self.height = width, height
        if (width, height) not in _OFFSCREEN:
            if _OFFSCREEN:
                raise RuntimeError(
                    f"an offscreen renderer of size {next(iter(_OFFSCREEN))} exists; Open3D "
                    "allows one per process"
                )
            _OFFSCREEN[(width, height)] = o3d.visualization.rendering.OffscreenRenderer(
                width, height
            )
        self.renderer = _OFFSCREEN[(width, height)]
        # Dark grey: rooms are mostly pale (walls, ceiling), which vanish on white.
        self.renderer.scene.set_background([0.12, 0.12, 0.14, 1.0])
        # No tone mapping or colour grading: points keep the colours the field gives them.
        self.renderer.scene.view.set_post_processing(False)
        self.points = o3d.visualization.rendering.MaterialRecord()
        self.points.shader, self.points.point_size = "defaultUnlit", 4.0
        self.lines = o3d.visualization.rendering.MaterialRecord()
        self.lines.shader, self.lines.line_width = "unlitLine", 2.0

    def render(
        self,
        points: np.ndarray,
        colours: np.ndarray,
        cameras: list[tuple[np.ndarray, np.ndarray, int, int]] = (),
        frame: np.ndarray | None = None,
        eye: tuple[float, float, float] = (0.0, -6.5, 6.0),
        centre: tuple[float, float, float] = (0.0, 0.0, 0.8),
    ) -> np.ndarray:
        """(height, width [+ inset], 3) uint8 image."""
        o3d, scene = self.o3d, self.renderer.scene
        scene.clear_geometry()
        if len(points):
            cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
            cloud.colors = o3d.utility.Vector3dVector(np.clip(colours, 0, 1).astype(np.float64))
            scene.add_geometry("cloud", cloud, self.points)
        for index, (intrinsics, pose, width, height) in enumerate(cameras):
            vertices, lines = frustum_lines(intrinsics, pose, width, height)
            frustum = o3d.geometry.LineSet(
                o3d.utility.Vector3dVector(vertices), o3d.utility.Vector2iVector(lines)
            )
            frustum.paint_uniform_color(FRUSTUM_COLOUR)
            scene.add_geometry(f"frustum{index}", frustum, self.lines)
        self.renderer.setup_camera(55.0, np.array(centre), np.array(eye), np.array([0.0, 0.0, 1.0]))
        image = np.asarray(self.renderer.render_to_image())
        return compose(image, frame)


def compose(view: np.ndarray, frame: np.ndarray | None) -> np.ndarray:
    """The 3D view with the camera image beside it, scaled to the view's height."""
    if frame is None:
        return view
    height = view.shape[0]
    scale = max(1, height // frame.shape[0])
    enlarged = np.repeat(np.repeat(frame, scale, 0), scale, 1)[:height]
    pad = np.full((height, enlarged.shape[1], 3), 30, np.uint8)
    pad[: enlarged.shape[0]] = enlarged
    return np.concatenate([view, pad], 1)
