"""Camera frames as an image policy takes them; numpy only, for torch and the robot alike.

A policy that sees through cameras takes, beside its (To, P) state window, one window of
frames per camera: `{camera: (To, H, W, 3) uint8}`, RGB, oldest first, exactly as the
camera gives them (the policy crops them itself). Batched calls add a leading B.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def check_images(
    images: Mapping[str, np.ndarray] | None,
    cameras: Sequence[str],
    leading: tuple[int, ...],
    size: int,
) -> dict[str, np.ndarray]:
    """The frames of `cameras`, each (*leading, size, size, 3) uint8, or a ValueError
    that names the camera and what is wrong. Extra cameras are ignored."""
    if images is None:
        raise ValueError(f"this policy sees through cameras {list(cameras)}: pass their images")
    checked = {}
    expected = (*leading, size, size, 3)
    for camera in cameras:
        if camera not in images:
            raise ValueError(f"no frames of camera {camera!r} (got {sorted(images)})")
        frames = np.asarray(images[camera])
        if frames.dtype != np.uint8:
            raise ValueError(f"camera {camera!r}: frames must be uint8 RGB, got {frames.dtype}")
        if frames.shape != expected:
            raise ValueError(
                f"camera {camera!r}: frames must have shape {expected}, got {frames.shape}"
            )
        checked[camera] = np.ascontiguousarray(frames)
    return checked


def check_frame(frame: np.ndarray, camera: str, size: int) -> str | None:
    """Why one frame cannot enter a policy's history, or None when it can."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        return f"camera {camera!r}: frame must be uint8 RGB"
    if frame.shape != (size, size, 3):
        return f"camera {camera!r}: frame has shape {frame.shape}, expected ({size}, {size}, 3)"
    return None


def render_frames(env, cameras: Sequence[str], size: int) -> dict[str, np.ndarray]:
    """One frame per camera from a warmloop scene (sim.scene.MujocoScene), RGB only."""
    base = getattr(env, "unwrapped", env)
    return {c: base.render_camera(c, size, size, depth=False).rgb for c in cameras}
