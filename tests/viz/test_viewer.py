"""The Open3D viewer, rendered offscreen: the picture shows the geometry where it should."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.video import ImageSink
from streams import Frame, decode, encode
from streams.recording import McapWriter
from viz.scene_renderer import FRUSTUM_COLOUR, SceneRenderer, frustum_lines
from viz.viewer import ViewState, view_recording
from world.reconstruction.exchange import to_message
from world.reconstruction.field import FieldConfig, TriPlaneField
from world.reconstruction.fit import FitConfig, OnlineFitter
from world.reconstruction.render import render_image

BOUNDS = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
ORANGE = (0.9, 0.5, 0.1)


@pytest.fixture(scope="module")
def renderer() -> SceneRenderer:
    return SceneRenderer(160, 120)


def _share(
    image: np.ndarray, colour: tuple[float, float, float], tolerance: int = 60
) -> np.ndarray:
    target = np.array(colour) * 255
    return np.abs(image.astype(int) - target).max(-1) < tolerance


def test_point_cloud_appears_in_its_colour_at_the_centre(renderer) -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.4, 0.4, (4000, 3))
    image = renderer.render(
        points, np.tile([1.0, 0.0, 0.0], (4000, 1)), eye=(0, -4, 2), centre=(0, 0, 0)
    )
    red = _share(image, (1.0, 0.0, 0.0))
    assert red.sum() > 200  # not empty
    rows, cols = np.nonzero(red)
    assert abs(rows.mean() - 60) < 15 and abs(cols.mean() - 80) < 15  # in the middle
    assert red[:15].sum() == 0 and red[:, :20].sum() == 0  # and nowhere near the edges


def test_frusta_are_drawn_and_point_away_from_the_camera() -> None:
    k = np.array([[50.0, 0, 50], [0, 50.0, 50], [0, 0, 1]])
    points, lines = frustum_lines(k, np.eye(4), 100, 100, depth=1.0)
    assert points.shape == (5, 3) and lines.shape == (8, 2)
    np.testing.assert_allclose(points[1:, 2], -1.0)  # the image plane lies along −z
    np.testing.assert_allclose(np.abs(points[1:, :2]), 1.0)


def _fitted_sphere() -> tuple[TriPlaneField, list[Frame]]:
    def truth(points, directions, t):
        inside = points.norm(dim=-1) < 0.6
        return inside.float() * 1e4, torch.tensor(ORANGE).expand(len(points), 3)

    torch.manual_seed(0)
    field = TriPlaneField(
        FieldConfig(resolution=32, channels=8, deform_channels=4, time_steps=2, deform=False),
        BOUNDS,
        (0.0, 1.0),
    )
    fitter = OnlineFitter(field, FitConfig(rays_per_step=512, samples=24, keyframes=8))
    frames = []
    for i in range(8):
        angle = 2 * np.pi * i / 8
        eye = np.array([2.5 * np.cos(angle), 2.5 * np.sin(angle), 0.8])
        forward = -eye / np.linalg.norm(eye)
        right = np.cross(forward, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        pose = np.eye(4)
        pose[:3, :3] = np.stack([right, np.cross(right, forward), -forward], 1)
        pose[:3, 3] = eye
        k = np.array([[20.8, 0, 12], [0, 20.8, 12], [0, 0, 1.0]])
        out = render_image(truth, k, pose, 24, 24, 0.0, BOUNDS, samples=128)
        depth = np.where(out["opacity"] > 0.5, out["depth"], np.inf).astype(np.float32)
        fitter.add_frame(out["rgb"], depth, k, pose, 0.0)
        frames.append(Frame(rgb=out["rgb"], depth=depth, intrinsics=k, pose=pose, scene_time=0.0))
    for _ in range(150):
        fitter.step()
    return field, frames


def test_a_triplanes_snapshot_is_drawn_with_frusta_and_the_latest_frame(renderer, tmp_path) -> None:
    field, frames = _fitted_sphere()
    state = ViewState()
    for frame in frames:
        state.take(frame)
    assert state.take(to_message(field))
    image = state.draw(renderer, resolution=32, threshold=5.0)
    assert image.shape[0] == 120 and image.shape[1] > 160  # view plus the camera image
    view = image[:, :160]
    orange = _share(view, ORANGE)
    assert orange.sum() > 50
    assert abs(np.nonzero(orange)[1].mean() - 80) < 25
    assert _share(view, FRUSTUM_COLOUR, 50).sum() > 10  # the frusta

    # The same through a recording, as `warmloop view FILE.mcap` does.
    path = tmp_path / "run.mcap"
    writer = McapWriter(path)
    for topic, message in (("frame", frames[-1]), ("triplanes", to_message(field))):
        raw = encode(topic, message, seq=0, source="test", t_sent=0.0)
        writer.write(decode([bytes(memoryview(f)) for f in raw]))
    writer.close()
    output = ImageSink(tmp_path / "png", tmp_path / "view.mp4")
    drawn = view_recording(path, output, 32, 5.0, renderer)
    assert drawn == 1 and len(list((tmp_path / "png").glob("*.png"))) == 1
    assert (tmp_path / "view.mp4").stat().st_size > 0


def test_view_says_in_one_line_what_is_wrong_with_a_recording(tmp_path) -> None:
    import subprocess
    import sys

    def view(path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "warmloop.cli", "view", str(path), "--out", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    missing = view(tmp_path / "nofile.mcap")
    assert missing.returncode == 2 and "not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr
    no_snapshots = tmp_path / "frames_only.mcap"
    writer = McapWriter(no_snapshots)
    frame = Frame(
        rgb=np.zeros((8, 8, 3), np.uint8),
        depth=np.ones((8, 8), np.float32),
        intrinsics=np.eye(3),
        pose=np.eye(4),
    )
    raw = encode("frame", frame, seq=1, source="sim", t_sent=0.0)
    writer.write(decode([bytes(memoryview(f)) for f in raw]))
    writer.close()
    empty = view(no_snapshots)
    assert empty.returncode == 1 and "no TriPlanes snapshots" in empty.stderr


def test_the_isolated_renderer_keeps_memory_bounded_over_30_frames() -> None:
    """Open3D keeps ~4 MB of every image it renders; the viewer renders in a child
    process that is replaced past a budget, so its memory stays bounded however long.
    30 frames against a 40 MB budget replace the child twice (~10 frames each)."""
    from viz.isolated import IsolatedRenderer, rss_mb

    renderer = IsolatedRenderer(160, 120, budget_mb=40)
    rng = np.random.default_rng(0)
    points, colours = rng.uniform(-2, 2, (20_000, 3)), rng.uniform(0, 1, (20_000, 3))
    camera = (np.array([[20.0, 0, 12], [0, 20.0, 12], [0, 0, 1]]), np.eye(4), 24, 24)
    try:
        first = renderer.render(points, colours, [camera])
        baseline, peak = rss_mb(renderer.pid), 0.0
        for _ in range(30):
            image = renderer.render(points, colours, [camera])
            peak = max(peak, rss_mb(renderer.pid))
        assert image.shape == first.shape and image.any()
        assert peak - baseline < 40 + 20  # the budget plus a frame or two
        assert renderer.replaced >= 2  # it did grow, and was replaced, more than once
    finally:
        renderer.close()
