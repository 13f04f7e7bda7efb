"""The world generator: image encoding, conditioning, checkpoints, training and DMD."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.world.tiny import TINY, save_tiny, tiny_model
from training.checkpoint import CheckpointError
from world.generation import checkpoint as generator_checkpoint
from world.generation.data import ExampleSampler, ExploreFrames, coverage
from world.generation.distill import dmd_gradient, dmd_loss, student_sample
from world.generation.generator import (
    CONDITION_CHANNELS,
    MOTION_DIM,
    Conditioning,
    from_model,
    motion_vector,
    sample,
    to_model,
)

ROOT = Path(__file__).resolve().parents[3]


def _cond(batch: int = 2, size: int = 16, seed: int = 0) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand((batch, CONDITION_CHANNELS, size, size), generator=g) * 2 - 1
    return Conditioning(images, torch.randn((batch, MOTION_DIM), generator=g))


def test_model_space_round_trip() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    depth = rng.uniform(0.1, 7.9, (2, 8, 8)).astype(np.float32)
    depth[0, 0, 0] = np.inf  # no return: the far end of the range
    x = to_model(rgb, depth)
    assert x.shape == (2, 4, 8, 8) and x.min() >= -1 and x.max() <= 1
    rgb_back, depth_back = from_model(x)
    assert np.abs(rgb_back.astype(int) - rgb).max() <= 1
    assert np.allclose(depth_back[1], depth[1], atol=1e-4) and depth_back[0, 0, 0] == 8.0


def test_motion_of_a_camera_that_did_not_move_is_the_identity() -> None:
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 0.5]
    motion = motion_vector(pose, pose, 0.0)
    assert motion.shape == (MOTION_DIM,)
    assert np.allclose(motion[:9], [0, 0, 0, 1, 0, 0, 0, 1, 0]) and motion[-1] == 0.0
    moved = pose.copy()
    moved[:3, 3] += [0.0, 0.0, -1.0]  # one metre along the camera's view axis (-z)
    assert np.allclose(motion_vector(moved, pose, 0.1, pose, 0.2)[:3], [0, 0, -1])


def test_sampling_is_deterministic_given_the_noise() -> None:
    model, cond = tiny_model(), _cond()
    noise = torch.randn((2, 4, 16, 16), generator=torch.Generator().manual_seed(1))
    first, second = sample(model, cond, 3, noise), sample(model, cond, 3, noise)
    other = sample(model, cond, 3, torch.randn(noise.shape, generator=torch.Generator()))
    assert torch.equal(first, second)  # the same noise: the same frames, bit for bit
    assert not torch.allclose(first, other, atol=1e-3)  # other noise: other frames


def test_checkpoints_round_trip_and_reject_tampering(tmp_path) -> None:
    save_tiny(tmp_path / "ckpt", role="teacher", steps=8)
    saved = generator_checkpoint.load(tmp_path / "ckpt")
    assert (saved.role, saved.sampling_steps, saved.config) == ("teacher", 8, TINY)
    model = saved.build()
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            model.state_dict().values(), tiny_model().state_dict().values(), strict=True
        )
    )
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    meta["weights_sha256"] = "0" * 64
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="hash"):
        generator_checkpoint.load(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="missing"):
        generator_checkpoint.load(tmp_path / "nothing")


def _synthetic_frames(episodes: int = 2, length: int = 20, size: int = 16) -> ExploreFrames:
    rng = np.random.default_rng(0)
    poses = np.repeat(np.eye(4)[None, None], episodes * length, 0).reshape(episodes, length, 4, 4)
    poses[..., 0, 3] = rng.normal(0, 0.2, (episodes, length))
    frames = rng.uniform(-1, 1, (episodes, length, 4, size, size)).astype(np.float16)
    frames[:, :, 3] = -0.5  # two metres away
    times = np.tile(np.arange(length) * 0.1, (episodes, 1))
    k = np.array([[12.0, 0, size / 2], [0, 12.0, size / 2], [0, 0, 1]])
    return ExploreFrames(frames, poses, times, k)


def test_examples_have_context_motion_and_geometric_guidance() -> None:
    data = _synthetic_frames()
    target, cond = ExampleSampler(data, seed=0).batch(32)
    assert target.shape == (32, 4, 16, 16)
    assert cond.images.shape == (32, CONDITION_CHANNELS, 16, 16)
    assert cond.motion.shape == (32, MOTION_DIM)
    mask = cond.images[:, -1]
    assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}
    dropped = (mask.flatten(1).sum(1) == 0).float().mean().item()
    assert 0.1 < dropped < 0.8  # guidance is sometimes absent, usually present
    assert torch.all(cond.images[:, 8:12] * (1 - mask[:, None]) == 0)  # nothing outside the mask
    depth = torch.full((1, 16, 16), 2.0)
    same = torch.eye(4)[None]
    assert coverage(depth, same, same, torch.tensor(data.intrinsics).float()).min() == 1.0
    behind = same.clone()
    behind[0, 2, 3] = -5.0  # a camera 5 m further along -z, looking away: sees nothing
    assert coverage(depth, same, behind, torch.tensor(data.intrinsics).float()).max() == 0.0


def test_one_dmd_step_moves_the_student_the_way_the_loss_says() -> None:
    torch.manual_seed(0)
    teacher = tiny_model(0)
    fake = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in fake.parameters():
            p.add_(0.05 * torch.randn_like(p))  # the fake score differs: g is not zero
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    cond, noise = _cond(4), torch.randn((4, 4, 16, 16), generator=torch.Generator().manual_seed(2))
    x = student_sample(student, cond, noise, steps=1, train_step=0)
    gradient = dmd_gradient(x, cond, teacher, fake, torch.Generator().manual_seed(3))
    assert gradient.abs().mean() > 0
    loss = dmd_loss(x, gradient)
    # d loss / d x is g / numel: the loss is built so that its gradient is g.
    (grad_x,) = torch.autograd.grad(loss, x, retain_graph=True)
    assert torch.allclose(grad_x * x.numel(), gradient, atol=1e-5)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        after = student_sample(student, cond, noise, steps=1, train_step=0)
    change = (after - x.detach()).flatten()
    assert torch.dot(change, -gradient.flatten()) > 0  # along -g
    target = (x - gradient).detach()
    assert (after - target).pow(2).sum() < (x.detach() - target).pow(2).sum()


@pytest.fixture(scope="module")
def explore_data(tmp_path_factory) -> Path:
    """Two 16-px Explore episodes collected through the CLI, shared read-only."""
    from warmloop.cli import main

    data = tmp_path_factory.mktemp("explore") / "data"
    assert main(["collect", "explore", "--episodes", "2", "--image-size", "16",
                 "--out", str(data)]) == 0  # fmt: skip
    return data


def test_train_resume_and_distill_from_the_command_line(tmp_path, capsys, explore_data) -> None:
    """In process, as the CLI runs them. Data-parallel training under torchrun goes
    through the same training/loop.py, and is tested once, in tests/policies/test_train_cli.py."""
    from warmloop.cli import main

    data, teacher, student = explore_data, tmp_path / "teacher", tmp_path / "student"
    common = ("--data", str(data), "--out", str(teacher), "--batch-size", "2", "--threads", "1")
    assert main(["train", "explore", "--steps", "3", *common]) == 0
    assert generator_checkpoint.load(teacher).step == 3
    capsys.readouterr()
    assert main(["train", "explore", "--steps", "5", *common]) == 0
    assert "2 steps" in capsys.readouterr().out
    distilled = main([
        "distill", str(teacher), "--data", str(data), "--out", str(student),
        "--steps", "2", "--batch-size", "2", "--student-steps", "2", "--threads", "1",
    ])  # fmt: skip
    assert distilled == 0
    saved = generator_checkpoint.load(student)
    assert (saved.role, saved.sampling_steps, saved.extra["teacher_step"]) == ("student", 2, 5)
    capsys.readouterr()
    refused = main(["distill", str(student), "--data", str(data), "--out", str(tmp_path / "x")])
    assert refused == 2 and "not a teacher" in capsys.readouterr().err


def test_the_command_line_trains_the_shipped_teacher_by_default() -> None:
    """`warmloop train explore` without --steps reproduces checkpoints/explore-teacher:
    the CLI's default (written out there, to keep torch out of argument parsing) is
    TeacherTraining's, and both are the step count the shipped teacher records."""
    import argparse

    from world.generation.cli import add_train_arguments
    from world.generation.training import TeacherTraining

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    shipped = json.loads((ROOT / "checkpoints" / "explore-teacher" / "config.json").read_text())
    assert parser.parse_args([]).steps == TeacherTraining().steps == shipped["extra"]["steps"]


def test_the_shipped_generator_follows_its_guidance_channels() -> None:
    """Same noise, same context: the output moves towards whatever the memory shows."""
    from sim import trajectories
    from world.generation.rollout import explore_path

    saved = generator_checkpoint.load(ROOT / "checkpoints" / "explore-student")
    model = saved.build()
    path = explore_path(trajectories.orbit(12, speed=0.6, turn=0.6), seed=3)
    target, context = 6, 0
    images = torch.from_numpy(np.concatenate([path.truth[context], np.zeros((4, 64, 64))]))
    # No warp (where the generator takes one): this test is about the memory's channels.
    no_geometry = torch.zeros((saved.config.condition_channels - CONDITION_CHANNELS, 64, 64))
    motion = torch.from_numpy(
        motion_vector(path.poses[target], path.poses[context], path.times[target])
    )
    noise = torch.randn((1, 4, 64, 64), generator=torch.Generator().manual_seed(0))

    def generate(guide: np.ndarray | None) -> np.ndarray:
        if guide is None:
            guidance = torch.zeros((5, 64, 64))
        else:
            guidance = torch.cat([torch.from_numpy(guide), torch.ones((1, 64, 64))])
        channels = torch.cat([images.float(), guidance, no_geometry])
        cond = Conditioning(channels[None], motion[None].float())
        return sample(model, cond, saved.sampling_steps, noise)[0].numpy()

    truth, other = path.truth[target], path.truth[12]
    towards_truth, towards_other, unguided = generate(truth), generate(other), generate(None)

    def error(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean((a[:3] - b[:3]) ** 2))

    assert error(towards_other, unguided) > 1e-3  # changing the guidance changes the frame
    assert error(towards_truth, truth) < error(towards_other, truth)
    assert error(towards_other, other) < error(towards_truth, other)
    assert error(towards_truth, truth) < error(unguided, truth)


@pytest.mark.gpu
def test_the_stream_and_a_training_step_run_on_cuda() -> None:
    from world.generation.rollout import WorldStream
    from world.generation.training import denoising_loss

    model = tiny_model().cuda()
    cond = _cond(2)
    cond = Conditioning(cond.images.cuda(), cond.motion.cuda())
    model.train().requires_grad_(True)
    loss = denoising_loss(model, torch.zeros((2, 4, 16, 16)).cuda(), cond, torch.Generator())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    stream = WorldStream(model.eval(), 2, 4)
    stream.start(np.zeros((4, 16, 16), np.float32), np.eye(4), 0.0)
    released = stream.add_segment(np.repeat(np.eye(4)[None], 4, 0), np.arange(1, 5) * 0.1)
    released += stream.flush()
    assert [r.index for r in released] == [1, 2, 3, 4]
    assert all(np.isfinite(r.frame).all() for r in released)


def test_the_regression_term_pulls_the_student_to_the_true_frame(tmp_path, explore_data) -> None:
    """DMD alone drifts off the truth (issue #26); with the regression weight the same
    run ends closer to the simulator's frame, sampled as the loop samples."""
    from sim.dataset import load_episodes
    from warmloop.cli import main
    from world.generation.distill import DistillConfig, distill

    with pytest.raises(ValueError, match="regression_weight"):
        DistillConfig(regression_weight=-1.0)
    data, teacher = explore_data, tmp_path / "teacher"
    assert main(["train", "explore", "--steps", "3", "--data", str(data), "--out",
                 str(teacher), "--batch-size", "2", "--threads", "1"]) == 0  # fmt: skip
    frames = ExploreFrames.from_episodes(load_episodes(data))
    truth, cond = ExampleSampler(frames, seed=5, geometry=True).batch(8)
    noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(6))
    errors = {}
    for weight in (0.0, 20.0):
        config = DistillConfig(steps=8, batch_size=2, lr_student=1e-3, regression_weight=weight)
        distill(teacher, frames, tmp_path / f"student-{weight}", config, progress=False)
        saved = generator_checkpoint.load(tmp_path / f"student-{weight}")
        assert saved.extra["dmd"]["regression_weight"] == weight
        student = saved.build()
        with torch.no_grad():
            errors[weight] = (sample(student, cond, 2, noise) - truth).pow(2).mean().item()
    assert errors[20.0] < 0.5 * errors[0.0]
