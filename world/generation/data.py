"""Training examples for the world generator, drawn from `warmloop collect explore` data.

An example is a target frame, a context frame A at 1..max_gap frames before or after
it, an optional context frame B near it (the MMPL populate and plan cases and the
frame-by-frame case all fall inside this family), the camera motion between them, and
guidance.

Guidance imitates what the 4D memory renders at inference: the target seen through
the memory's coverage. Coverage is computed geometrically: the target's pixels, lifted
with their depth, that fall inside the view of another frame of the same episode (a
frame "already in memory"). The rendered colours are blurred to the half resolution
guidance is rendered at. With probability `drop_guidance` there is no guidance at all,
so the generator also works while the memory is still empty.

Geometry (for a generator with `GeneratorConfig.geometry`) is what inference computes
(world/generation/geometry.py): the memory frame as the true anchor, contexts A and B
as the "generated" frames (blurred like a render half the time, since the loop's own
frames are not the truth), warped into the target camera. With probability `unguided`
neither guidance nor geometry is given: the generator also runs without either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from world.generation.generator import DEPTH_RANGE, Conditioning, motion_vector, to_model
from world.generation.geometry import anchored_warp, view_of


@dataclass
class ExploreFrames:
    """Every frame of a dataset, in model space: frames (E, T, 4, H, W) float16."""

    frames: np.ndarray
    poses: np.ndarray  # (E, T, 4, 4)
    times: np.ndarray  # (E, T)
    intrinsics: np.ndarray  # (3, 3)

    @classmethod
    def from_episodes(cls, episodes: list, camera: str = "eye") -> ExploreFrames:
        if not episodes:
            raise ValueError("no episodes: collect explore data first")
        length = min(e.length for e in episodes)
        key = f"images/{camera}"
        if f"{key}/rgb" not in episodes[0].arrays:
            raise ValueError(f"the dataset has no {key}/rgb images (collect with --images)")
        frames = np.stack(
            [
                to_model(e.arrays[f"{key}/rgb"][:length], e.arrays[f"{key}/depth"][:length])
                for e in episodes
            ]
        ).astype(np.float16)
        poses = np.stack([e.arrays[f"{key}/pose"][:length] for e in episodes])
        times = np.stack([e.arrays["time"][:length] for e in episodes])
        return cls(frames, poses, times, np.asarray(episodes[0].arrays[f"{key}/intrinsics"]))

    @property
    def image_size(self) -> int:
        return self.frames.shape[-1]


@dataclass(frozen=True)
class ExampleConfig:
    max_gap: int = 8
    b_probability: float = 0.6
    drop_guidance: float = 0.3
    coverage_window: int = 40  # memory frames come from within this many steps
    guidance_noise: float = 0.05
    unguided: float = 0.2  # with geometry: no guidance and no warp
    blur_generated: float = 0.5  # contexts warped as "generated" are blurred this often


def coverage(
    depth: torch.Tensor, pose: torch.Tensor, other_pose: torch.Tensor, intrinsics: torch.Tensor
) -> torch.Tensor:
    """(B, H, W) 1 where a target pixel, lifted with its depth, lies in the other view."""
    _batch, height, width = depth.shape
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float32) + 0.5,
        torch.arange(width, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    camera = torch.stack([(u - cx) / fx, -(v - cy) / fy, -torch.ones_like(u)], -1)
    points = camera[None] * depth[..., None]  # (B, H, W, 3) in the target camera
    world = points @ pose[:, None, :3, :3].transpose(-1, -2) + pose[:, None, None, :3, 3]
    local = (world - other_pose[:, None, None, :3, 3]) @ other_pose[:, None, :3, :3]
    z = -local[..., 2]
    safe = z.clamp(min=1e-3)
    u_other = fx * local[..., 0] / safe + cx
    v_other = -fy * local[..., 1] / safe + cy
    inside = (z > 0.05) & (u_other >= 0) & (u_other < width) & (v_other >= 0) & (v_other < height)
    return inside.float()


def degrade(target: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    """What a half-resolution render of the memory looks like: blurred, a little noisy."""
    half = nn.functional.avg_pool2d(target, 2)
    blurred = nn.functional.interpolate(half, scale_factor=2.0, mode="bilinear")
    jitter = torch.randn(blurred.shape, generator=generator) * noise
    return (blurred + jitter).clamp(-1.0, 1.0)


class ExampleSampler:
    """Random training batches: (target x0, Conditioning)."""

    def __init__(
        self,
        data: ExploreFrames,
        config: ExampleConfig = ExampleConfig(),
        seed: int = 0,
        geometry: bool = False,
    ):
        self.data, self.config, self.geometry = data, config, geometry
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.intrinsics = torch.tensor(data.intrinsics, dtype=torch.float32)
        self.poses = torch.tensor(data.poses, dtype=torch.float32)

    def _neighbour(self, index: int, low: int, high: int, length: int) -> int:
        while True:
            offset = int(self.rng.integers(low, high + 1)) * int(self.rng.choice([-1, 1]))
            if 0 <= index + offset < length:
                return index + offset

    def batch(self, size: int) -> tuple[torch.Tensor, Conditioning]:
        data, c = self.data, self.config
        episodes, length = data.frames.shape[:2]
        picks = []
        for _ in range(size):
            e, j = int(self.rng.integers(episodes)), int(self.rng.integers(length))
            a = self._neighbour(j, 1, c.max_gap, length)
            b = (
                self._neighbour(j, 1, c.max_gap, length)
                if self.rng.random() < c.b_probability
                else -1
            )
            m = self._neighbour(j, 0, c.coverage_window, length)
            picks.append((e, j, a, b, m))
        index = np.array(picks)
        e, j, a, b, m = index.T
        target, context_a = self._frames(e, j), self._frames(e, a)
        has_b = torch.from_numpy(b >= 0).float()[:, None, None, None]
        context_b = self._frames(e, np.maximum(b, 0)) * has_b
        motion = np.stack(
            [
                motion_vector(
                    data.poses[ei, ji],
                    data.poses[ei, ai],
                    float(data.times[ei, ji] - data.times[ei, ai]),
                    data.poses[ei, bi] if bi >= 0 else None,
                    float(data.times[ei, ji] - data.times[ei, bi]) if bi >= 0 else 0.0,
                )
                for ei, ji, ai, bi, _ in picks
            ]
        )
        unguided = np.zeros(size, bool)
        if self.geometry:
            unguided = self.rng.random(size) < c.unguided
        guidance = (
            self._guidance(target, e, j, m)
            * torch.from_numpy(~unguided).float()[:, None, None, None]
        )
        images = [context_a, context_b, guidance]
        if self.geometry:
            images.append(self._warps(picks, context_a, context_b, unguided))
        return target, Conditioning(torch.cat(images, 1), torch.from_numpy(motion))

    def _warps(self, picks, context_a, context_b, unguided: np.ndarray) -> torch.Tensor:
        """(B, 5, H, W): the memory frame (anchor) and contexts A, B ("generated")
        warped into each target camera, as world/generation/geometry.py does it."""
        blurred_a = degrade(context_a, 0.0, self.generator)
        blurred_b = degrade(context_b, 0.0, self.generator)
        blur = self.rng.random(len(picks)) < self.config.blur_generated
        size, out = self.data.image_size, []
        for i, (e, j, a, b, m) in enumerate(picks):
            if unguided[i]:
                out.append(np.zeros((5, size, size), np.float32))
                continue
            anchor = view_of(self.data.frames[e, m].astype(np.float32), self.data.poses[e, m])
            frames_a, frames_b = (blurred_a, blurred_b) if blur[i] else (context_a, context_b)
            generated = [view_of(frames_a[i].numpy(), self.data.poses[e, a])]
            if b >= 0:
                generated.append(view_of(frames_b[i].numpy(), self.data.poses[e, b]))
            target_pose = self.data.poses[e, j]
            out.append(anchored_warp([anchor], generated, self.data.intrinsics, target_pose, size))
        return torch.from_numpy(np.stack(out))

    def _frames(self, episodes: np.ndarray, steps: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.data.frames[episodes, steps].astype(np.float32))

    def _guidance(self, target: torch.Tensor, e: np.ndarray, j: np.ndarray, m: np.ndarray):
        metres = (target[:, 3] + 1.0) * (DEPTH_RANGE / 2)
        mask = coverage(metres, self.poses[e, j], self.poses[e, m], self.intrinsics)
        keep = torch.from_numpy(self.rng.random(len(target)) >= self.config.drop_guidance)
        mask = mask * keep.float()[:, None, None]
        rendered = degrade(target, self.config.guidance_noise, self.generator)
        return torch.cat([rendered * mask[:, None], mask[:, None]], 1)
