"""Skipping empty space: the single-time shortcut, the occupancy grid and the march."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.world.reconstruction.test_field import BOUNDS, _small_field, _views, sphere_field
from world.reconstruction.fit import FitConfig, OnlineFitter
from world.reconstruction.occupancy import OccupancyGrid
from world.reconstruction.render import render_image


def _deformed_field() -> object:
    field = _small_field(deform=True)
    with torch.no_grad():
        for plane in field.deformation.values():
            plane.normal_(0, 0.2)
    return field


@pytest.mark.parametrize("time_s", [0.0, 0.37, 1.0, 2.5])
def test_one_time_shortcut_gives_what_the_trilinear_sample_gives(time_s: float) -> None:
    # A batch at one time takes the 2-D path; the same points beside one other time
    # take the 3-D path. Both must give the same density and colour.
    field = _deformed_field()
    generator = torch.Generator().manual_seed(1)
    points = torch.rand(400, 3, generator=generator) * 2 - 1
    directions = torch.nn.functional.normalize(torch.randn(400, 3, generator=generator), dim=-1)
    one_time = torch.full((400,), time_s)
    mixed = torch.cat([one_time, torch.tensor([0.9])])
    with torch.no_grad():
        sigma, rgb = field(points, directions, one_time)
        sigma_3d, rgb_3d = field(
            torch.cat([points, points[:1]]), torch.cat([directions, directions[:1]]), mixed
        )
    torch.testing.assert_close(sigma, sigma_3d[:-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rgb, rgb_3d[:-1], atol=1e-5, rtol=1e-5)


def _fitted_sphere_field():
    truth = sphere_field(torch.tensor([0.2, 0.0, 0.0]), 0.5, (0.9, 0.5, 0.1))
    frames = _views(truth, 8, 24)
    field = _small_field(deform=True)
    fitter = OnlineFitter(field, FitConfig(rays_per_step=512, samples=24, keyframes=8))
    for frame in frames:
        fitter.add_frame(*frame)
    for _ in range(150):
        fitter.step()
    return field, frames


def test_marching_the_occupied_cells_renders_what_the_full_render_does() -> None:
    field, frames = _fitted_sphere_field()
    grid = OccupancyGrid.from_field(field, resolution=32)
    assert 0.0 < grid.fraction() < 0.5  # the ball and some haze, not the whole box
    evaluated = {"full": 0, "grid": 0}

    def counting(key: str):
        def evaluate(points, directions, t):
            evaluated[key] += len(points)
            return field(points, directions, t)

        return evaluate

    for _, _, k, pose, t in frames:
        full = render_image(counting("full"), k, pose, 24, 24, t, BOUNDS, samples=48)
        fast = render_image(
            counting("grid"), k, pose, 24, 24, t, BOUNDS, samples=48, occupancy=grid
        )
        error = np.abs(full["rgb"].astype(int) - fast["rgb"].astype(int))
        assert error.max() <= 8, error.max()  # under the 1 % left when a ray is spent
        # Haze below the grid's threshold, skipped along a whole ray, sums to a few %.
        assert np.abs(full["opacity"] - fast["opacity"]).max() < 0.05
    assert evaluated["grid"] < evaluated["full"] / 3, evaluated


def test_an_empty_grid_renders_nothing_and_evaluates_nothing() -> None:
    field = _small_field(deform=False)
    grid = OccupancyGrid.from_field(field, resolution=8, threshold=float("inf"))
    calls = []

    def evaluate(points, directions, t):
        calls.append(len(points))
        return field(points, directions, t)

    _, _, k, pose, t = _views(sphere_field(torch.zeros(3), 0.5, (1, 1, 1)), 1, 8)[0]
    out = render_image(evaluate, k, pose, 8, 8, t, BOUNDS, occupancy=grid)
    assert not calls and np.all(out["opacity"] == 0)


def test_a_grid_of_one_cell_is_refused() -> None:
    with pytest.raises(ValueError, match="resolution"):
        OccupancyGrid.from_field(_small_field(deform=False), resolution=1)
