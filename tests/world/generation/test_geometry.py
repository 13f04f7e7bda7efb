"""Geometry in the generator's conditioning: the anchored warp, the residual over it,
the stream that computes it, and training examples that carry it (issue #26)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.world.tiny import TINY_GEOMETRY
from world.generation.data import ExampleSampler, ExploreFrames
from world.generation.generator import (
    CONDITION_CHANNELS,
    GEOMETRY,
    MOTION_DIM,
    RGBD,
    Conditioning,
    GeneratorConfig,
    WorldGenerator,
    from_model,
    to_model,
)
from world.generation.geometry import ANCHORED, GENERATED, anchored_warp
from world.generation.memory import FieldMemory, MemoryConfig
from world.generation.rollout import WorldStream
from world.warp import View

SIZE = 16
FOCAL = 12.0
K = np.array([[FOCAL, 0, SIZE / 2], [0, FOCAL, SIZE / 2], [0, 0, 1.0]])


def _wall(colour, depth: float, columns: slice = slice(None)) -> View:
    """A camera at the origin looking down -z at a flat wall; only `columns` hit it."""
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[:] = colour
    metres = np.full((SIZE, SIZE), np.inf, np.float32)
    metres[:, columns] = depth
    return View(rgb, metres, np.eye(4))


def test_anchors_win_where_they_landed_and_generated_frames_fill_the_rest() -> None:
    anchor = _wall((200, 0, 0), 2.0, slice(0, SIZE // 2))  # the truth saw the left half
    # A generated frame that contradicts it, and is nearer: a z-buffer would let it win.
    generated = _wall((0, 0, 200), 1.5)
    out = anchored_warp([anchor], [generated], K, np.eye(4), SIZE)
    assert out.shape == (GEOMETRY, SIZE, SIZE)
    rgb, depth = from_model(out[:RGBD])
    mask = out[RGBD]
    assert np.all(mask[:, : SIZE // 2] == ANCHORED) and np.all(mask[:, SIZE // 2 :] == GENERATED)
    assert np.all(rgb[:, : SIZE // 2, 0] >= 199) and np.all(rgb[:, SIZE // 2 :, 2] >= 199)
    assert np.allclose(depth[:, : SIZE // 2], 2.0, atol=0.02)


def test_what_nothing_reached_is_nearest_filled_and_marked_zero() -> None:
    anchor = _wall((0, 200, 0), 2.0, slice(0, 4))
    out = anchored_warp([anchor], [], K, np.eye(4), SIZE)
    assert np.all(out[RGBD, :, :4] == ANCHORED) and np.all(out[RGBD, :, 4:] == 0.0)
    rgb, _ = from_model(out[:RGBD])
    assert np.all(rgb[..., 1] >= 199)  # filled from the nearest landed pixel
    assert not anchored_warp([], [], K, np.eye(4), SIZE).any()  # nothing known: all zeros


def _cond(model: WorldGenerator, batch: int = 2) -> Conditioning:
    g = torch.Generator().manual_seed(0)
    channels = model.config.condition_channels
    images = torch.rand((batch, channels, SIZE, SIZE), generator=g) * 2 - 1
    return Conditioning(images, torch.randn((batch, MOTION_DIM), generator=g))


def test_an_untrained_geometry_generator_shows_the_warp_and_learns_a_residual() -> None:
    torch.manual_seed(0)
    model = WorldGenerator(TINY_GEOMETRY)
    assert TINY_GEOMETRY.condition_channels == CONDITION_CHANNELS + GEOMETRY
    cond = _cond(model)
    x_t = torch.randn((2, RGBD, SIZE, SIZE))
    warp = cond.images[:, CONDITION_CHANNELS : CONDITION_CHANNELS + RGBD]
    assert torch.equal(model(x_t, torch.rand(2), cond), warp)
    loss = (model(x_t, torch.rand(2), cond) - 0.3).square().mean()
    loss.backward()
    assert model.head[-1].weight.grad.abs().sum() > 0  # the residual is trainable


def test_checkpoints_from_before_geometry_load_without_it() -> None:
    old = GeneratorConfig().to_dict()
    del old["geometry"]
    assert GeneratorConfig.from_dict(old).geometry is False
    assert GeneratorConfig().geometry is True  # new trainings condition on geometry


def _stream(geometry: bool = True, intrinsics=K) -> WorldStream:
    torch.manual_seed(0)
    model = WorldGenerator(TINY_GEOMETRY).eval()
    return WorldStream(model, 1, 4, intrinsics=intrinsics, geometry=geometry)


def test_the_stream_warps_the_start_frame_into_every_target() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    frame0 = to_model(rgb, np.full((SIZE, SIZE), 2.0, np.float32))
    poses = np.repeat(np.eye(4)[None], 4, 0)  # the camera does not move
    stream = _stream()
    stream.start(frame0, np.eye(4), 0.0)
    released = stream.add_segment(poses, np.arange(1, 5) * 0.1) + stream.flush()
    assert [r.index for r in released] == [1, 2, 3, 4]
    for item in released:  # an untrained residual: the frame is frame 0, reprojected
        assert np.abs(from_model(item.frame)[0].astype(int) - rgb).max() <= 1
    blind = _stream(geometry=False)  # the ablation withholds the warp
    blind.start(frame0, np.eye(4), 0.0)
    withheld = blind.add_segment(poses, np.arange(1, 5) * 0.1) + blind.flush()
    assert all(np.abs(item.frame).max() == 0.0 for item in withheld)
    with pytest.raises(ValueError, match="intrinsics"):
        _stream(intrinsics=None)


def test_training_examples_carry_the_warp_and_sometimes_nothing() -> None:
    rng = np.random.default_rng(0)
    episodes, length = 2, 20
    poses = np.repeat(np.eye(4)[None, None], episodes * length, 0).reshape(episodes, length, 4, 4)
    poses[..., 0, 3] = np.linspace(0, 0.2, length)  # sliding along a wall
    frames = rng.uniform(-1, 1, (episodes, length, 4, SIZE, SIZE)).astype(np.float16)
    frames[:, :, 3] = -0.5  # two metres away
    times = np.tile(np.arange(length) * 0.1, (episodes, 1))
    data = ExploreFrames(frames, poses, times, K)
    target, cond = ExampleSampler(data, seed=0, geometry=True).batch(64)
    assert cond.images.shape == (64, CONDITION_CHANNELS + GEOMETRY, SIZE, SIZE)
    warp, mask = cond.images[:, CONDITION_CHANNELS:-1], cond.images[:, -1]
    nothing = cond.images[:, 2 * RGBD :].flatten(1).abs().sum(1) == 0
    assert 0.05 < nothing.float().mean() < 0.5  # unguided: no memory, no warp
    assert set(torch.unique(mask).tolist()) <= {0.0, GENERATED, ANCHORED}
    # Where the anchor landed the warp is the target's depth (a flat wall, 2 m).
    anchored = (mask == ANCHORED)[:, None].expand_as(warp).clone()
    anchored[:, :3] = False
    assert torch.allclose(warp[anchored], target[anchored], atol=0.02)


def test_the_shipped_student_keeps_the_room_recognisable_for_30_seconds() -> None:
    """Issue #26: 30 s of a `loop` path (out and back), no memory, frame 0 the only true
    frame: the last second, generated ~300 frames after it, stays >= 20 dB vs truth."""
    from pathlib import Path

    from sim import trajectories
    from world.generation import checkpoint as generator_checkpoint
    from world.generation.rollout import explore_path, rollout
    from world.metrics import psnr

    root = Path(__file__).resolve().parents[3]
    saved = generator_checkpoint.load(root / "checkpoints" / "explore-student")
    path = explore_path(trajectories.loop(np.random.default_rng(100), 38 * 8), 100)
    assert path.times[-1] - path.times[0] >= 30.0
    stream = WorldStream(saved.build(), saved.sampling_steps, 8, intrinsics=path.intrinsics)
    frames = rollout(stream, path).frames
    last_second = path.times >= path.times[-1] - 1.0
    error = np.mean((frames[last_second, :3] - path.truth[last_second, :3]) ** 2) / 4
    assert psnr(float(error)) >= 20.0


def test_the_stream_withholds_a_memory_render_that_contradicts_the_warp() -> None:
    rng = np.random.default_rng(0)
    warp = torch.from_numpy(rng.uniform(-1, 1, (2, GEOMETRY, SIZE, SIZE)).astype(np.float32))
    warp[:, RGBD] = ANCHORED
    render = torch.cat([warp[:, :RGBD], torch.ones(2, 1, SIZE, SIZE)], 1)
    render[1, :3] = -render[1, :3]  # the second target's render is the colour negative
    stream = _stream()
    stream.memory = FieldMemory(K, MemoryConfig(image_size=SIZE, min_anchor_psnr=0.0))
    assert stream._agreeing(render, warp).tolist() == [1.0, 0.0]
    assert stream.memory_use == {"guided": 1, "withheld": 1}
    assert stream.agreement[0] == float("inf") and stream.agreement[1] < 10.0
    # A field that cannot show its anchor (here: none was given) is trusted nowhere.
    stream.memory = FieldMemory(K, MemoryConfig(image_size=SIZE, min_anchor_psnr=20.0))
    assert stream._agreeing(render, warp).tolist() == [0.0, 0.0]
    assert stream.memory_use == {"guided": 1, "withheld": 3}
