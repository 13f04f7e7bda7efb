"""The classical baselines: depth warp and co-visibility, on scenes whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from world.warp import View, camera_motion, camera_rays, covisible, depth_warp

SIZE = 32
# Square image, principal point at the centre: a quarter turn about the optical axis
# maps pixel centres exactly onto pixel centres.
K = np.array([[24.0, 0, SIZE / 2], [0, 24.0, SIZE / 2], [0, 0, 1]])


def pose(rotation: np.ndarray | None = None, position=(0.0, 0.0, 0.0)) -> np.ndarray:
    out = np.eye(4)
    out[:3, 3] = position
    if rotation is not None:
        out[:3, :3] = rotation
    return out


def roll(quarter_turns: int) -> np.ndarray:
    angle = quarter_turns * np.pi / 2
    c, s = round(np.cos(angle)), round(np.sin(angle))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], float)


def random_view(seed: int, at: np.ndarray) -> View:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 6.0, (SIZE, SIZE)).astype(np.float32)
    return View(rgb, depth, at)


def test_warp_to_the_same_camera_is_the_identity():
    view = random_view(0, pose())
    warped = depth_warp([view], K, view.pose, SIZE, SIZE)
    assert warped.landed.all()
    np.testing.assert_array_equal(warped.rgb, view.rgb)
    np.testing.assert_allclose(warped.depth, view.depth, rtol=1e-6)


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_warp_is_exact_under_pure_rotation(turns):
    """A static scene of any depth, seen after turning the camera about its axis."""
    view = random_view(turns, pose())
    warped = depth_warp([view], K, pose(roll(turns)), SIZE, SIZE)
    assert warped.landed.all()  # nothing to invent: every pixel is reached
    # Turning the camera by +90 degrees turns the image by -90 degrees.
    np.testing.assert_array_equal(warped.rgb, np.rot90(view.rgb, -turns))
    np.testing.assert_allclose(warped.depth, np.rot90(view.depth, -turns), rtol=1e-6)


def test_warp_keeps_the_nearest_point_and_fills_what_opened_up():
    """A wall at 4 m, moved sideways by exactly two pixels' worth."""
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[..., 0] = np.arange(SIZE, dtype=np.uint8)[None] * 8  # a horizontal ramp
    depth = np.full((SIZE, SIZE), 4.0, np.float32)
    shift = 2 * 4.0 / K[0, 0]  # metres that move the wall by two pixels
    warped = depth_warp([View(rgb, depth, pose())], K, pose(position=(shift, 0, 0)), SIZE, SIZE)
    np.testing.assert_array_equal(warped.rgb[:, : SIZE - 2], rgb[:, 2:])
    assert not warped.landed[:, SIZE - 2 :].any() and warped.landed[:, : SIZE - 2].all()
    np.testing.assert_array_equal(warped.rgb[:, SIZE - 2 :, 0], np.full((SIZE, 2), 31 * 8))
    # Two sources on the same rays: the z-buffer keeps the nearer one's colour.
    near = View(np.full_like(rgb, 200), np.full_like(depth, 2.0), pose())
    both = depth_warp([View(rgb, depth, pose()), near], K, pose(), SIZE, SIZE)
    assert (both.rgb == 200).all() and np.allclose(both.depth, 2.0)


def trace(position: tuple, square: float, near: float, far: float) -> np.ndarray:
    """An exact ray caster: the depth seen by an unrotated camera at `position` (z = 0) in
    a scene of a wall at z = -far and a square occluder of half side `square`, centred on
    the z axis, at z = -near. Camera rays have z = -1, so a hit at z = -d has depth d."""
    rays = camera_rays(K, SIZE, SIZE)
    on_occluder = np.asarray(position[:2]) + near * rays[..., :2]
    return np.where((np.abs(on_occluder) <= square).all(-1), near, far)


def test_covisibility_knows_what_an_occluder_hid():
    source_pose, target_pose = pose(), pose(position=(1.0, 0, 0))
    source_depth = trace((0, 0, 0), 0.5, 2.0, 5.0)
    target_depth = trace((1.0, 0, 0), 0.5, 2.0, 5.0)
    seen = covisible(target_depth, target_pose, [View(None, source_depth, source_pose)], K)
    # The truth, from geometry alone: a target pixel's point is visible from the source
    # when the source's ray to it does not hit the occluder first and it is in view.
    rays = camera_rays(K, SIZE, SIZE)
    points = rays * target_depth[..., None] + target_pose[:3, 3]
    on_wall = np.isclose(points[..., 2], -5.0)
    # the segment from the source camera (origin) to the point crosses z = -2 at:
    crossing = points[..., :2] * (2.0 / -points[..., 2])[..., None]
    blocked = on_wall & (np.abs(crossing) <= 0.5).all(-1)
    in_view = (np.abs(points[..., 0] / -points[..., 2] * K[0, 0]) < SIZE / 2) & (
        np.abs(points[..., 1] / -points[..., 2] * K[1, 1]) < SIZE / 2
    )
    expected = in_view & ~blocked
    assert blocked.any() and (~in_view).any()  # the scene tests both ways to be unseen
    # Pixels straddling an edge may go either way; nowhere else may the mask disagree.
    disagree = seen != expected
    assert disagree.mean() < 0.03, disagree.sum()


def test_camera_motion_reports_distance_and_angle():
    distance, angle = camera_motion(pose(roll(1), (3.0, 4.0, 0)), pose())
    assert distance == pytest.approx(5.0) and angle == pytest.approx(90.0)


def test_warp_refuses_no_sources():
    with pytest.raises(ValueError, match="at least one"):
        depth_warp([], K, pose(), SIZE, SIZE)
