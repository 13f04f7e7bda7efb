"""Classical baselines for the world model: depth warping and co-visibility.

A world model that has seen an RGB-D frame can show it from another camera without any
learning: lift every pixel with its depth, move it into the new camera, keep the
nearest point per pixel (a z-buffer), and fill what no point reached from the nearest
pixel that was reached. That is the bar a generator must clear (issue #26), and the
co-visibility mask says which target pixels the known frames could have shown at all.

Conventions are the simulator's (sim/camera.py): OpenGL cameras looking down -z with y
up, camera-to-world poses, pixel centres at (u + 0.5, v + 0.5), depth in metres along
the optical axis, inf where nothing was hit.

    source pixel --lift(depth)--> world point --project--> target pixel (floor of u, v)
                                                         z-buffer: the nearest wins
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

NEAR = 0.05  # metres: points closer to the target camera than this are behind it
# A point counts as seen by a frame when its depth there agrees with the frame's own
# depth within this fraction (plus the absolute slack below): 64 px depth maps of a
# slanted wall differ by a few per cent between neighbouring pixels.
DEPTH_TOLERANCE = 0.05
DEPTH_SLACK = 0.02


@dataclass(frozen=True)
class View:
    """One RGB-D frame with its camera: rgb (H, W, 3) uint8, depth (H, W) metres."""

    rgb: np.ndarray
    depth: np.ndarray
    pose: np.ndarray  # (4, 4) camera to world


@dataclass(frozen=True)
class Warped:
    rgb: np.ndarray  # (H, W, 3) uint8, holes filled from the nearest landed pixel
    depth: np.ndarray  # (H, W) metres, filled the same way (inf when nothing landed)
    landed: np.ndarray  # (H, W) bool: a source point landed on this pixel


def camera_rays(intrinsics: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) directions in the camera frame with z = -1: a pixel's point is ray x depth."""
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    return np.stack([(u - cx) / fx, -(v - cy) / fy, -np.ones_like(u)], -1)


def lift(depth: np.ndarray, intrinsics: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """(H, W, 3) world points of every pixel (inf depth gives non-finite points)."""
    rays = camera_rays(intrinsics, *depth.shape)
    with np.errstate(invalid="ignore"):
        points = rays * depth[..., None]
        return points @ pose[:3, :3].T + pose[:3, 3]


def project(
    points: np.ndarray, intrinsics: np.ndarray, pose: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates (u, v) and depth z of world points (..., 3) in a camera."""
    with np.errstate(divide="ignore", invalid="ignore"):  # non-finite points stay so
        local = (points - pose[:3, 3]) @ pose[:3, :3]
        z = -local[..., 2]
        u = intrinsics[0, 0] * local[..., 0] / z + intrinsics[0, 2]
        v = -intrinsics[1, 1] * local[..., 1] / z + intrinsics[1, 2]
    return u, v, z


def _pixel_index(u, v, z, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat target pixel of each point, and which points land inside the image."""
    inside = np.isfinite(z) & (z > NEAR) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    col = np.floor(np.where(inside, u, 0)).astype(np.int64)
    row = np.floor(np.where(inside, v, 0)).astype(np.int64)
    return row * width + col, inside


def depth_warp(
    sources: list[View],
    intrinsics: np.ndarray,
    pose: np.ndarray,
    height: int,
    width: int,
    fill: bool = True,
) -> Warped:
    """Splat every source frame into the camera at `pose`, z-buffered, holes nearest-filled
    (`fill=False`: holes stay black, with inf depth)."""
    if not sources:
        raise ValueError("depth_warp needs at least one source frame")
    flats, depths, colours = [], [], []
    for view in sources:
        points = lift(view.depth, intrinsics, view.pose).reshape(-1, 3)
        u, v, z = project(points, intrinsics, pose)
        flat, inside = _pixel_index(u, v, z, height, width)
        flats.append(flat[inside])
        depths.append(z[inside])
        colours.append(view.rgb.reshape(-1, 3)[inside])
    flat, z, colour = np.concatenate(flats), np.concatenate(depths), np.concatenate(colours)
    zbuffer = np.full(height * width, np.inf)
    np.minimum.at(zbuffer, flat, z)
    nearest = z <= zbuffer[flat]  # the winning point of each pixel (ties: same depth)
    rgb = np.zeros((height * width, 3), np.uint8)
    rgb[flat[nearest]] = colour[nearest]
    landed = np.isfinite(zbuffer).reshape(height, width)
    warped = Warped(rgb.reshape(height, width, 3), zbuffer.reshape(height, width), landed)
    return nearest_fill(warped) if fill else warped


def nearest_fill(warped: Warped) -> Warped:
    """Every pixel nothing landed on takes the colour and depth of the closest one that
    something did (unchanged when nothing landed at all)."""
    depth = warped.depth.astype(np.float32)
    if not warped.landed.any():
        return Warped(warped.rgb, depth, warped.landed)
    # scipy's exact Euclidean distance transform returns, for every pixel, the index of
    # the closest landed one.
    _, (rows, cols) = ndimage.distance_transform_edt(~warped.landed, return_indices=True)
    return Warped(warped.rgb[rows, cols], depth[rows, cols], warped.landed)


def seen_by(
    points: np.ndarray, view: View, intrinsics: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Which world points (..., 3) `view` sees: in view and not occluded (its depth there
    agrees with theirs), and the flat pixel each lands on."""
    height, width = view.depth.shape
    u, v, z = project(points, intrinsics, view.pose)
    flat, inside = _pixel_index(u, v, z, height, width)
    with np.errstate(invalid="ignore"):
        agrees = np.abs(view.depth.reshape(-1)[flat] - z) <= DEPTH_TOLERANCE * z + DEPTH_SLACK
    return inside & agrees, flat


def covisible(
    target_depth: np.ndarray, target_pose: np.ndarray, sources: list[View], intrinsics: np.ndarray
) -> np.ndarray:
    """(H, W) bool: the target pixel's 3-D point is in view and unoccluded in some source."""
    points = lift(target_depth, intrinsics, target_pose)
    seen = np.zeros(target_depth.shape, bool)
    for view in sources:
        seen |= seen_by(points, view, intrinsics)[0]
    return seen & np.isfinite(target_depth)


def camera_motion(pose: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Distance (m) and rotation angle (degrees) between two cameras."""
    distance = float(np.linalg.norm(pose[:3, 3] - reference[:3, 3]))
    relative = reference[:3, :3].T @ pose[:3, :3]
    cosine = float(np.clip((np.trace(relative) - 1) / 2, -1.0, 1.0))
    return distance, float(np.degrees(np.arccos(cosine)))
