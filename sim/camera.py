"""Headless camera rendering: RGB, metric depth, intrinsics and camera-to-world pose.

MuJoCo cameras look along their local -z with +y up, the OpenGL convention that
docs/protocol.md uses for Frame.pose, so the pose is the camera frame as MuJoCo has it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np


@dataclass(frozen=True)
class CameraImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray | None  # (H, W) float32, metres along the optical axis; inf = no hit
    intrinsics: np.ndarray  # (3, 3) float64, pixels
    pose: np.ndarray  # (4, 4) float64, camera-to-world


def intrinsics(model: mujoco.MjModel, camera_id: int, width: int, height: int) -> np.ndarray:
    """Pinhole intrinsics from the camera's vertical field of view (square pixels)."""
    fovy = math.radians(model.cam_fovy[camera_id])
    focal = 0.5 * height / math.tan(0.5 * fovy)
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def camera_pose(data: mujoco.MjData, camera_id: int) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = data.cam_xmat[camera_id].reshape(3, 3)
    pose[:3, 3] = data.cam_xpos[camera_id]
    return pose


class CameraRenderer:
    """Renders named cameras of one model; keeps one GL context per image size."""

    def __init__(self, model: mujoco.MjModel):
        self._model = model
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._far = model.vis.map.zfar * model.stat.extent

    def _renderer(self, width: int, height: int) -> mujoco.Renderer:
        key = (width, height)
        if key not in self._renderers:
            self._renderers[key] = mujoco.Renderer(self._model, height=height, width=width)
        return self._renderers[key]

    def render(
        self,
        data: mujoco.MjData,
        camera: str,
        width: int = 96,
        height: int = 96,
        depth: bool = True,
    ) -> CameraImage:
        camera_id = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if camera_id < 0:
            raise ValueError(f"unknown camera {camera!r}")
        renderer = self._renderer(width, height)
        renderer.update_scene(data, camera=camera_id)
        rgb = renderer.render().copy()
        depth_image = None
        if depth:
            renderer.enable_depth_rendering()
            try:
                depth_image = renderer.render().astype(np.float32, copy=True)
            finally:
                renderer.disable_depth_rendering()
            # Rays that hit nothing return the far plane: report them as infinity.
            depth_image[depth_image >= self._far * 0.999] = np.inf
        return CameraImage(
            rgb=rgb,
            depth=depth_image,
            intrinsics=intrinsics(self._model, camera_id, width, height),
            pose=camera_pose(data, camera_id),
        )

    def segmentation(
        self, data: mujoco.MjData, camera: str, width: int = 96, height: int = 96
    ) -> np.ndarray:
        """(H, W) int32 geom id seen at each pixel; −1 where no geom is hit."""
        camera_id = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if camera_id < 0:
            raise ValueError(f"unknown camera {camera!r}")
        renderer = self._renderer(width, height)
        renderer.update_scene(data, camera=camera_id)
        renderer.enable_segmentation_rendering()
        try:
            ids = renderer.render()[..., 0].astype(np.int32, copy=True)
        finally:
            renderer.disable_segmentation_rendering()
        return ids

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
