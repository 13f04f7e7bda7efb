"""Memory anchoring: generated frames cannot overwrite what a true frame showed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from sim import trajectories
from world.generation.memory import LocalMemory, MemoryConfig, anchor_fidelity, render_guidance
from world.generation.rollout import explore_path

CONFIG = MemoryConfig(
    steps_per_frame=20, resolution=32, time_steps=2, rays_per_step=256, fit_samples=16
)


def render_psnr(memory: LocalMemory, path, config: MemoryConfig) -> float:
    """PSNR of the memory's guidance at frame 0's pose against frame 0 (covered pixels)."""
    guidance = render_guidance(
        memory.field, path.intrinsics, path.poses[:1], path.times[:1], config
    )
    return anchor_fidelity(guidance[0].numpy(), path.truth[0], config)


def before_and_after(anchoring: bool) -> tuple[float, float]:
    """Fit the true frame 0; then 'generated' frames at the same pose that contradict it
    (the colour negative, same depth). The render at frame 0's pose, before and after."""
    path = explore_path(trajectories.orbit(2), seed=0)
    wrong = path.truth[0].copy()
    wrong[:3] = -wrong[:3]
    torch.manual_seed(0)
    config = MemoryConfig(**{**CONFIG.__dict__, "anchoring": anchoring})
    memory = LocalMemory(path.intrinsics, config, seed=0)
    memory.add(path.truth[:1], path.poses[:1], path.times[:1], anchor=True)
    before = render_psnr(memory, path, config)
    for _ in range(3):
        memory.add(wrong[None], path.poses[:1], path.times[:1])
    return before, render_psnr(memory, path, config)


def test_a_contradicting_generated_frame_leaves_the_anchored_render_alone():
    before, after = before_and_after(anchoring=True)
    assert after > before - 0.5, (before, after)  # only the truth was fitted: no worse
    before, overwritten = before_and_after(anchoring=False)
    assert overwritten < before - 3.0, (before, overwritten)  # unanchored, it is pulled away
    assert np.isfinite(before)


def anchored_memory(steps: int, gate: float) -> tuple[LocalMemory, object]:
    """A memory fitted `steps` times on the true frame 0 alone, with the trust gate."""
    path = explore_path(trajectories.orbit(2), seed=0)
    torch.manual_seed(0)
    config = replace(CONFIG, steps_per_frame=steps, min_anchor_psnr=gate)
    memory = LocalMemory(path.intrinsics, config, seed=0)
    memory.add(path.truth[:1], path.poses[:1], path.times[:1], anchor=True)
    return memory, path


def test_the_trust_gate_refuses_a_field_that_cannot_render_its_anchor():
    young, path = anchored_memory(steps=2, gate=60.0)
    assert not young.trusted()
    assert young.guidance(path.poses[1:], path.times[1:]) is not None  # it still renders
    fitted, _ = anchored_memory(steps=80, gate=young.anchor_psnr + 1.0)  # a stricter gate
    assert fitted.trusted()
    assert fitted.anchor_psnr > young.anchor_psnr + 3.0, (young.anchor_psnr, fitted.anchor_psnr)
    checked = fitted.anchor_psnr
    fitted.add(path.truth[1:2], path.poses[1:2], path.times[1:2])  # the field changes,
    fitted.trusted()
    assert fitted.anchor_psnr != checked  # so the verdict is checked again


def test_the_gate_needs_an_anchor_and_off_it_trusts_every_field():
    memory, path = anchored_memory(steps=1, gate=0.0)
    assert memory.trusted()
    assert np.isnan(memory.anchor_psnr)  # never checked with the gate off
    unanchored = LocalMemory(path.intrinsics, replace(CONFIG, min_anchor_psnr=1.0), seed=0)
    unanchored.add(path.truth[:1], path.poses[:1], path.times[:1])  # generated, not true
    assert not unanchored.trusted()
