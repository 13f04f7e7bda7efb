"""The tri-plane field and its renderer: analytic fields, fitting, deformation, exchange."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streams import TriPlanes, decode, encode
from world.reconstruction.exchange import from_message, point_cloud, to_message
from world.reconstruction.field import FieldConfig, TriPlaneField, sh_basis
from world.reconstruction.fit import FitConfig, OnlineFitter
from world.reconstruction.render import camera_rays, render_image, render_rays

BOUNDS = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """Camera-to-world pose looking from `eye` at `target` (camera −z forward, y up)."""
    target = np.zeros(3) if target is None else target
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, up, -forward], 1)
    pose[:3, 3] = eye
    return pose


def intrinsics(size: int, fov: float = 60.0) -> np.ndarray:
    focal = 0.5 * size / math.tan(math.radians(fov) / 2)
    return np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]])


def sphere_field(centre: torch.Tensor, radius: float, colour: tuple[float, float, float]):
    """An opaque coloured ball: very dense inside, empty outside."""

    def field(points, directions, t):
        inside = (points - centre).norm(dim=-1) < radius
        sigma = inside.float() * 1e4
        rgb = torch.tensor(colour).expand(len(points), 3)
        return sigma, rgb

    return field


def test_rendering_an_analytic_sphere_gives_its_depth_and_colour() -> None:
    pose = look_at(np.array([0.0, -3.0, 0.0]))
    field = sphere_field(torch.zeros(3), 0.5, (1.0, 0.0, 0.0))
    out = render_image(field, intrinsics(32), pose, 32, 32, 0.0, BOUNDS * 2, samples=512)
    centre = out["depth"][16, 16]
    assert centre == pytest.approx(2.5, abs=0.02)  # the ball's front at 3 − 0.5
    np.testing.assert_array_equal(out["rgb"][16, 16], [255, 0, 0])
    assert out["opacity"][0, 0] < 0.01 and out["opacity"][16, 16] > 0.99  # corners see nothing


def test_sh_basis_is_orthonormal_on_the_sphere() -> None:
    directions = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(0))
    basis = sh_basis(directions / directions.norm(dim=-1, keepdim=True), 2)
    gram = 4 * math.pi * basis.T @ basis / len(basis)
    np.testing.assert_allclose(gram.numpy(), np.eye(9), atol=0.03)


def _views(field_fn, count: int, size: int, times=None):
    """Ground-truth frames of an analytic field from cameras on a circle."""
    frames = []
    for i in range(count):
        angle = 2 * math.pi * i / count
        pose = look_at(np.array([2.5 * math.cos(angle), 2.5 * math.sin(angle), 0.8]))
        t = 0.0 if times is None else times[i]
        out = render_image(field_fn, intrinsics(size), pose, size, size, t, BOUNDS, samples=128)
        depth = np.where(out["opacity"] > 0.5, out["depth"], np.inf)
        frames.append((out["rgb"], depth, intrinsics(size), pose, t))
    return frames


def _small_field(deform: bool) -> TriPlaneField:
    torch.manual_seed(0)
    config = FieldConfig(resolution=32, channels=8, deform_channels=4, time_steps=4, deform=deform)
    return TriPlaneField(config, BOUNDS, (0.0, 1.0))


def _psnr(field, frames, size: int) -> float:
    errors = []
    for rgb, _, k, pose, t in frames:
        out = render_image(field, k, pose, size, size, t, BOUNDS, samples=32)
        errors.append(((out["rgb"] / 255.0 - rgb / 255.0) ** 2).mean())
    return float(-10 * np.log10(np.mean(errors)))


def test_fitting_a_static_scene_raises_psnr_within_bounded_steps() -> None:
    truth = sphere_field(torch.tensor([0.0, 0.0, 0.0]), 0.6, (0.9, 0.5, 0.1))
    frames = _views(truth, 8, 24)
    field = _small_field(deform=False)
    fitter = OnlineFitter(field, FitConfig(rays_per_step=512, samples=24, keyframes=8))
    before = _psnr(field, frames, 24)
    for frame in frames:
        fitter.add_frame(*frame)
    for _ in range(150):
        fitter.step()
    after = _psnr(field, frames, 24)
    assert after > before + 6 and after > 18, (before, after)


def test_deformation_tracks_a_translating_object() -> None:
    def moving(points, directions, t):
        centre = torch.stack([-0.4 + 0.8 * t, torch.zeros_like(t), torch.zeros_like(t)], -1)
        sigma = ((points - centre).norm(dim=-1) < 0.35).float() * 1e4
        return sigma, torch.tensor([0.1, 0.3, 0.9]).expand(len(points), 3)

    times = [i / 11 for i in range(12)]
    frames = _views(moving, 12, 24, times)
    results = {}
    for deform in (True, False):
        field = _small_field(deform)
        fitter = OnlineFitter(field, FitConfig(rays_per_step=512, samples=24, keyframes=12))
        for frame in frames:
            fitter.add_frame(*frame)
        for _ in range(200):
            fitter.step()
        results[deform] = _psnr(field, frames, 24)
    assert results[True] > results[False] + 1.0, results


def test_triplanes_message_round_trip_rebuilds_the_same_field() -> None:
    field = _small_field(deform=True)
    with torch.no_grad():
        for plane in field.deformation.values():
            plane.normal_(0, 0.05)
    message = to_message(field)
    frames = encode("world", message, seq=1, source="test", t_sent=0.0)
    received = decode([bytes(f) if not isinstance(f, bytes) else f for f in frames])
    assert isinstance(received.message, TriPlanes)
    rebuilt = from_message(received.message)
    points = torch.rand(500, 3) * 2 - 1
    directions = torch.nn.functional.normalize(torch.randn(500, 3), dim=-1)
    times = torch.rand(500)
    with torch.no_grad():
        expected, got = field(points, directions, times), rebuilt(points, directions, times)
    # Planes travel as float16: agreement to that precision.
    assert torch.allclose(expected[1], got[1], atol=2e-2)
    assert torch.allclose(expected[0], got[0], rtol=5e-2, atol=5e-2)


def test_point_cloud_extraction_finds_dense_regions_with_their_colour() -> None:
    truth = sphere_field(torch.zeros(3), 0.6, (0.9, 0.5, 0.1))
    field = _small_field(deform=False)
    fitter = OnlineFitter(field, FitConfig(rays_per_step=512, samples=24, keyframes=8))
    for frame in _views(truth, 8, 24):
        fitter.add_frame(*frame)
    for _ in range(150):
        fitter.step()
    points, colours = point_cloud(field, 0.0, resolution=32, threshold=5.0)
    assert len(points) > 20
    assert np.linalg.norm(points, axis=1).max() < 1.0  # near the ball, not everywhere
    np.testing.assert_allclose(np.median(colours, 0), [0.9, 0.5, 0.1], atol=0.15)


def test_rays_point_through_pixel_centres_along_minus_z() -> None:
    rays = camera_rays(intrinsics(4), np.eye(4), 4, 4, 0.5)
    assert len(rays) == 16 and torch.all(rays.directions[:, 2] == -1)
    assert torch.all(rays.times == 0.5)
    out = render_rays(lambda p, d, t: (torch.zeros(len(p)), torch.zeros(len(p), 3)), rays, BOUNDS)
    assert torch.all(out["opacity"] == 0)
