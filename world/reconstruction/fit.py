"""Fitting a tri-plane field to RGB-D frames, online: a few steps per incoming frame.

Keyframes live in a bounded buffer (oldest dropped), so memory stays flat however long
the stream runs. Each step renders a batch of rays, half from the newest keyframe (to
follow the scene live) and half from the whole buffer (not to forget), and minimises

    ‖rgb − rgb*‖² + λ_d·|depth − depth*| + λ_tv·TV(planes) + λ_t·‖∂_t deformation‖² + λ_x·|Δx|

TV is the squared difference of neighbouring cells of every plane; the temporal term
the squared difference of neighbouring time slices of the deformation planes; |Δx| the
mean displacement at random points and a random time (L1: stray displacement blurs
static content, while moving objects pay for their motion with fit; it does not make Δx
sparse, see docs/world.md).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from world.reconstruction.field import TriPlaneField
from world.reconstruction.render import Rays, camera_rays, render_rays


@dataclass(frozen=True)
class FitConfig:
    rays_per_step: int = 1024
    samples: int = 32
    keyframes: int = 32  # the buffer's bound
    frames_per_step: int = 0  # the rest of a step's rays come from this many (0: all)
    anchors: int = 8  # true frames pinned beside the buffer, never evicted
    anchor_share: float = 0.25  # of each step's rays drawn from the anchors, when any
    lr_planes: float = 0.03
    lr_network: float = 0.005
    depth_weight: float = 0.05
    tv_weight: float = 1e-3
    temporal_weight: float = 1e-2
    displacement_weight: float = 1e-2  # L1 on Δx: the world holds still unless shown moving


@dataclass
class Keyframe:
    rays: Rays
    rgb: torch.Tensor  # (N, 3) in [0, 1]
    depth: torch.Tensor  # (N,), NaN where the frame saw nothing


class OnlineFitter:
    def __init__(self, field: TriPlaneField, config: FitConfig = FitConfig(), seed: int = 0):
        self.field, self.config = field, config
        planes = [*field.canonical.values(), *field.deformation.values()]
        plane_ids = {id(p) for p in planes}
        network = [p for p in field.parameters() if id(p) not in plane_ids]
        self.optimizer = torch.optim.Adam(
            [
                {"params": planes, "lr": config.lr_planes},
                {"params": network, "lr": config.lr_network},
            ]
        )
        self.buffer: deque[Keyframe] = deque(maxlen=config.keyframes)
        # Observed (true) frames: a world model's generated frames must not push them out
        # of the buffer, nor outvote them (world/generation/memory.py).
        self.anchors: deque[Keyframe] = deque(maxlen=config.anchors)
        self.generator = torch.Generator().manual_seed(seed)
        self.steps = 0
        self.step_seconds: deque[float] = deque(maxlen=200)

    @property
    def device(self) -> torch.device:
        return self.field.bounds.device

    def add_frame(
        self,
        rgb: np.ndarray,
        depth: np.ndarray | None,
        intrinsics: np.ndarray,
        pose: np.ndarray,
        time_s: float,
        anchor: bool = False,
        keep: np.ndarray | None = None,
    ) -> None:
        """Queue a frame for fitting. `anchor`: a true observation, pinned; `keep` (H, W)
        bool: fit only these pixels (a frame that is all False is not added)."""
        if keep is not None and not keep.any():
            return
        height, width = rgb.shape[:2]
        rays = camera_rays(intrinsics, pose, width, height, time_s)
        # torch.tensor copies: frames from the wire are read-only views on its buffers.
        colours = torch.tensor(rgb.reshape(-1, 3), dtype=torch.float32) / 255.0
        if depth is None:
            depths = torch.full((len(rays),), float("nan"))
        else:
            depths = torch.tensor(depth.reshape(-1), dtype=torch.float32)
            depths = torch.where(
                torch.isfinite(depths), depths, torch.full_like(depths, float("nan"))
            )
        if keep is not None:
            index = torch.from_numpy(np.flatnonzero(keep.reshape(-1)))
            rays, colours, depths = rays.subset(index), colours[index], depths[index]
        device = self.device
        frame = Keyframe(
            Rays(rays.origins.to(device), rays.directions.to(device), rays.times.to(device)),
            colours.to(device),
            depths.to(device),
        )
        (self.anchors if anchor else self.buffer).append(frame)
        self._newest = frame

    def _batch(self) -> tuple[Rays, torch.Tensor, torch.Tensor]:
        """Half the rays from the newest frame, a share from the anchors, the rest from
        the whole buffer (anchors included)."""
        count = self.config.rays_per_step
        picks = [(self._newest, count // 2)]
        rest = count - count // 2
        if self.anchors:
            pinned = int(rest * self.config.anchor_share)
            rest -= pinned
            picks += self._draw(list(self.anchors), pinned)
        frames = [*self.anchors, *self.buffer]
        if self.config.frames_per_step and len(frames) > self.config.frames_per_step:
            chosen = torch.randperm(len(frames), generator=self.generator)
            frames = [frames[int(i)] for i in chosen[: self.config.frames_per_step]]
        picks += self._draw(frames, rest)
        rays, rgb, depth = [], [], []
        for frame, n in picks:
            chosen = torch.randint(len(frame.rays), (n,), generator=self.generator).to(self.device)
            rays.append(frame.rays.subset(chosen))
            rgb.append(frame.rgb[chosen])
            depth.append(frame.depth[chosen])
        joined = Rays(
            *(torch.cat([getattr(r, k) for r in rays]) for k in ("origins", "directions", "times"))
        )
        return joined, torch.cat(rgb), torch.cat(depth)

    def _draw(self, frames: list[Keyframe], count: int) -> list[tuple[Keyframe, int]]:
        """`count` rays spread over `frames` at random: (frame, rays from it) pairs."""
        if count <= 0:
            return []
        drawn = torch.randint(len(frames), (count,), generator=self.generator)
        return [
            (frames[int(index)], int(n))
            for index, n in zip(*torch.unique(drawn, return_counts=True), strict=True)
        ]

    def _displacement(self) -> torch.Tensor:
        """Mean |Δx| (normalised units) at random points and times; 0 without deformation."""
        if not self.field.config.deform or self.config.displacement_weight == 0:
            return torch.zeros((), device=self.device)
        points = torch.rand(4096, 3, generator=self.generator).to(self.device) * 2 - 1
        # One random time a step: the deformation is then sampled in 2-D (field.py),
        # and over many steps every time is visited.
        times = (torch.rand(1, generator=self.generator) * 2 - 1).expand(4096).to(self.device)
        return self.field.displacement(points, times).abs().mean()

    def step(self) -> dict[str, float]:
        """One optimisation step over the buffer; returns the loss terms."""
        if not self.buffer and not self.anchors:
            raise RuntimeError("no frames yet: add_frame() first")
        began = time.perf_counter()
        rays, rgb, depth = self._batch()
        out = render_rays(self.field, rays, self.field.bounds, self.config.samples, jitter=True)
        photometric = ((out["rgb"] - rgb) ** 2).mean()
        seen = torch.isfinite(depth)
        depth_loss = (
            (out["depth"][seen] - depth[seen]).abs().mean() if seen.any() else photometric * 0
        )
        tv, temporal = plane_regularisers(self.field)
        loss = (
            photometric
            + self.config.depth_weight * depth_loss
            + self.config.tv_weight * tv
            + self.config.temporal_weight * temporal
            + self.config.displacement_weight * self._displacement()
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        self.step_seconds.append(time.perf_counter() - began)
        return {
            "loss": float(loss.detach()),
            "psnr_batch": float(-10 * torch.log10(photometric.detach().clamp(min=1e-10))),
            "depth_l1": float(depth_loss.detach()),
        }


def plane_regularisers(field: TriPlaneField) -> tuple[torch.Tensor, torch.Tensor]:
    """Total variation of all planes, and the time smoothness of the deformation."""
    tv = 0.0
    for plane in [*field.canonical.values(), *field.deformation.values()]:
        tv = tv + ((plane[..., 1:, :] - plane[..., :-1, :]) ** 2).mean()
        tv = tv + ((plane[..., :, 1:] - plane[..., :, :-1]) ** 2).mean()
    temporal = sum(
        ((d[:, 1:] - d[:, :-1]) ** 2).mean() for d in field.deformation.values() if d.shape[1] > 1
    )
    return tv, torch.as_tensor(temporal, dtype=torch.float32)
