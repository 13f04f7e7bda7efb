"""The TSDF peer: Open3D fusion of real simulator frames, ray-cast back into a camera."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.reconstruction import explore_frames
from world.metrics import psnr
from world.reconstruction import tsdf
from world.warp import View


@pytest.fixture(scope="module")
def frames():
    return explore_frames(8)


def test_fused_mesh_renders_the_depth_it_was_given(frames):
    views = [View(s.rgb, s.depth, s.pose) for s in frames[0::2]]
    intrinsics = frames[0].intrinsics
    mesh = tsdf.fuse(views, intrinsics, voxel=0.05)
    assert len(mesh.triangles) > 1000
    # In the room's box (with a voxel of slack): the OpenGL -> OpenCV flip is right.
    assert (mesh.vertices.min(0) > [-3.2, -3.2, -0.2]).all()
    assert (mesh.vertices.max(0) < [3.2, 3.2, 3.2]).all()
    renderer = tsdf.MeshRenderer(mesh)
    held_out = frames[3]
    rgb, depth = renderer.render(intrinsics, held_out.pose, 64, 64)
    hit = np.isfinite(depth)
    assert hit.mean() > 0.9
    error = np.abs(depth[hit] - held_out.depth[hit])
    assert np.median(error) < 0.03  # metres, at 5 cm voxels
    # Colour from the views that see the surface beats the mesh's vertex colours.
    near = tsdf.nearest_views(views, held_out.pose, 2)
    recoloured = tsdf.colour_from_views(rgb, depth, held_out.pose, near, intrinsics)

    def score(image):
        return psnr(float(np.mean((image[hit] / 255.0 - held_out.rgb[hit] / 255.0) ** 2)))

    assert score(recoloured) > score(rgb) > 18


def test_nearest_views_ranks_by_camera_distance(frames):
    views = [View(s.rgb, s.depth, s.pose) for s in frames]
    assert tsdf.nearest_views(views, frames[5].pose, 1)[0] is views[5]
    assert {id(v) for v in tsdf.nearest_views(views, frames[5].pose, 3)} >= {id(views[5])}
