"""A classical peer for the tri-plane field: Open3D's TSDF fusion, rendered by ray casting.

The 4D field is measured against what a robotics user would reach for first: fuse the
RGB-D frames into a truncated signed distance volume (Curless & Levoy; Open3D's
`VoxelBlockGrid`), extract the mesh, and render any camera by casting its rays
against the mesh (Open3D's `RaycastingScene`). Colour comes either from the mesh's
vertices or, sharper, from the training frames nearest the target camera that see the
hit point (the same depth test as the co-visibility mask in world/warp.py).

Open3D's cameras follow OpenCV (y down, z forward); ours follow OpenGL (y up, z back):
the pose is flipped on its y and z axes on the way in. open3d is imported when used, so
the reconstruction node does not need the [viz] extra.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from world.warp import View, camera_motion, camera_rays, lift, seen_by

TRUNCATION = 3.0
# Voxel blocks (8^3 voxels each) allocated up front. The Explore room fused at 2 cm
# fills 7,435 (3 cm: 2,824). 200,000 allocated 2 GB and took 1.7 s, which counted in the
# TSDF's time to model; 20,000 take 0.2 GB and 0.24 s.
BLOCKS = 20_000
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class FusedMesh:
    vertices: np.ndarray  # (V, 3)
    triangles: np.ndarray  # (T, 3) int
    colours: np.ndarray  # (V, 3) in [0, 1]
    seconds: float  # fusion and mesh extraction


def fuse(views: list[View], intrinsics: np.ndarray, voxel: float, max_depth: float = 8.0):
    """Integrate every view into a TSDF volume (truncation 3 voxels); return its mesh."""
    import open3d as o3d
    import open3d.core as o3c

    # Open3D puts pixel i's centre at coordinate i, we put it at i + 0.5.
    k = np.array(intrinsics, np.float64)
    k[:2, 2] -= 0.5
    camera = o3c.Tensor(k)
    began = time.perf_counter()
    # The tensor VoxelBlockGrid: the legacy ScalableTSDFVolume of Open3D 0.20 integrated
    # nothing from these 64x64 frames (an empty mesh at any voxel size and stride).
    volume = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"),
        attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
        attr_channels=((1), (1), (3)),
        voxel_size=voxel,
        block_resolution=8,
        block_count=BLOCKS,
        device=o3c.Device("CPU:0"),
    )
    for view in views:
        depth = np.where(np.isfinite(view.depth), view.depth, 0).astype(np.float32)
        depth_image = o3d.t.geometry.Image(o3c.Tensor(depth))
        colour = o3d.t.geometry.Image(o3c.Tensor(view.rgb.astype(np.float32) / 255))
        extrinsic = o3c.Tensor(np.linalg.inv(view.pose @ OPENGL_TO_OPENCV))  # world -> camera
        blocks = volume.compute_unique_block_coordinates(
            depth_image, camera, extrinsic, 1.0, max_depth, trunc_voxel_multiplier=float(TRUNCATION)
        )
        volume.integrate(
            blocks,
            depth_image,
            colour,
            camera,
            extrinsic,
            1.0,
            max_depth,
            trunc_voxel_multiplier=float(TRUNCATION),
        )
    # Open3D keeps surfaces seen at least 3 times by default (noisy sensors); the
    # simulator's depth is exact, and a surface seen once is still known.
    mesh = volume.extract_triangle_mesh(weight_threshold=0.5).to_legacy()
    return FusedMesh(
        np.asarray(mesh.vertices),
        np.asarray(mesh.triangles),
        np.clip(np.asarray(mesh.vertex_colors), 0, 1),
        time.perf_counter() - began,
    )


class MeshRenderer:
    """Renders a fused mesh from any camera: depth and vertex colour per pixel."""

    def __init__(self, mesh: FusedMesh):
        import open3d as o3d

        self.mesh = mesh
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(
            o3d.core.Tensor(mesh.vertices.astype(np.float32)),
            o3d.core.Tensor(mesh.triangles.astype(np.uint32)),
        )

    def render(
        self, intrinsics: np.ndarray, pose: np.ndarray, height: int, width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 vertex colour and (H, W) depth (inf where no surface)."""
        import open3d as o3d

        # Directions with camera-frame z = -1: the hit parameter is the depth.
        directions = camera_rays(intrinsics, height, width).reshape(-1, 3) @ pose[:3, :3].T
        origins = np.broadcast_to(pose[:3, 3], directions.shape)
        rays = np.concatenate([origins, directions], 1).astype(np.float32)
        hit = self.scene.cast_rays(o3d.core.Tensor(rays))
        depth = hit["t_hit"].numpy().astype(np.float32)
        triangle = hit["primitive_ids"].numpy()
        uv = hit["primitive_uvs"].numpy()
        found = np.isfinite(depth)
        corners = self.mesh.triangles[np.where(found, triangle, 0)]  # (N, 3) vertex ids
        weights = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], 1)[..., None]
        colour = (self.mesh.colours[corners] * weights).sum(1)
        rgb = np.where(found[:, None], np.clip(colour * 255 + 0.5, 0, 255), 0).astype(np.uint8)
        return rgb.reshape(height, width, 3), depth.reshape(height, width)


def nearest_views(views: list[View], pose: np.ndarray, count: int) -> list[View]:
    """The `count` views whose cameras are nearest `pose` (metres + radians)."""

    def distance(view: View) -> float:
        metres, degrees = camera_motion(view.pose, pose)
        return metres + np.radians(degrees)

    return sorted(views, key=distance)[:count]


def colour_from_views(
    rgb: np.ndarray, depth: np.ndarray, pose: np.ndarray, views: list[View], intrinsics: np.ndarray
) -> np.ndarray:
    """Re-colour a rendered surface from the views that see it (world/warp.py's
    co-visibility test): the mean of their colours, else the vertex colour."""
    points = lift(depth, intrinsics, pose)  # inf depth (no surface): non-finite, unseen
    total = np.zeros((*depth.shape, 3))
    count = np.zeros(depth.shape)
    for view in views:
        seen, flat = seen_by(points, view, intrinsics)
        total += np.where(seen[..., None], view.rgb.reshape(-1, 3)[flat], 0)
        count += seen
    mean = total / np.maximum(count, 1)[..., None]
    return np.where(count[..., None] > 0, mean + 0.5, rgb).astype(np.uint8)
