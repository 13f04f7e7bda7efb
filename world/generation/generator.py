"""The world generator: a small conditional U-Net that denoises the next RGB-D frame.

One call predicts one frame (x0-parameterised) from its noisy version and three kinds
of conditioning, concatenated as input channels the way TeleWorld concatenates its
rendered guidance with the frames being generated:

- context A and context B: earlier generated frames (RGB-D), B optional;
- guidance: RGB-D plus an opacity mask rendered from the 4D memory at the target pose;
- camera motion: the target pose relative to each context frame, and the time gaps,
  which enter with the noise level through FiLM;
- geometry (`GeneratorConfig.geometry`): the start frame and the contexts depth-warped
  into the target camera, with a confidence mask (world/generation/geometry.py). The
  network then predicts a residual over the warped RGB-D: its last layer starts at
  zero, so an untrained generator already shows the warp.

Images are RGB-D with every channel in [-1, 1] (see `to_model` / `from_model`). The
U-Net first folds 2x2 pixels into channels, so its widest stage runs at half the
image size: that is what lets it train on a 2-core CPU at 64x64.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

RGBD = 4  # channels of one frame
GUIDANCE = RGBD + 1  # rendered RGB-D plus opacity
GEOMETRY = RGBD + 1  # warped RGB-D plus its confidence mask
CONDITION_CHANNELS = 2 * RGBD + GUIDANCE  # without geometry
MOTION_DIM = 2 * 9 + 2 + 1  # two relative poses, two time gaps, "B present"
DEPTH_RANGE = 8.0  # metres mapped onto [-1, 1]; the Explore room fits inside


@dataclass(frozen=True)
class GeneratorConfig:
    image_size: int = 64
    widths: tuple[int, ...] = (32, 64, 128)
    blocks: int = 2  # residual blocks per stage
    embed_dim: int = 128
    seed: int = 0
    geometry: bool = True  # condition on the anchored warp and predict a residual over it

    @property
    def condition_channels(self) -> int:
        return CONDITION_CHANNELS + (GEOMETRY if self.geometry else 0)

    def __post_init__(self) -> None:
        if self.image_size % (2 ** len(self.widths)) != 0:
            raise ValueError(
                f"image_size {self.image_size} must divide by 2^{len(self.widths)} (the stages)"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> GeneratorConfig:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        known["widths"] = tuple(known.get("widths", cls.widths))
        known.setdefault("geometry", False)  # checkpoints from before the field existed
        return cls(**known)


# ---------------------------------------------------------------- images <-> model space
def to_model(rgb: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., H, W, 3) and metric depth (..., H, W) -> float32 (..., 4, H, W)."""
    colour = rgb.astype(np.float32) / 127.5 - 1.0
    metres = np.where(np.isfinite(depth), depth, DEPTH_RANGE)
    scaled = np.clip(metres / (DEPTH_RANGE / 2) - 1.0, -1.0, 1.0)[..., None]
    return np.moveaxis(np.concatenate([colour, scaled.astype(np.float32)], -1), -1, -3)


def from_model(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `to_model`: uint8 RGB (..., H, W, 3), depth in metres (..., H, W)."""
    x = np.clip(np.moveaxis(np.asarray(x, np.float32), -3, -1), -1.0, 1.0)
    rgb = ((x[..., :3] + 1.0) * 127.5 + 0.5).astype(np.uint8)
    depth = ((x[..., 3] + 1.0) * (DEPTH_RANGE / 2)).astype(np.float32)
    return rgb, depth


def relative_motion(
    target_pose: np.ndarray, context_pose: np.ndarray, dt: float
) -> tuple[np.ndarray, float]:
    """The target camera in the context camera's frame: translation + two rotation columns."""
    relative = np.linalg.solve(context_pose, target_pose)
    return np.concatenate([relative[:3, 3], relative[:3, 0], relative[:3, 1]]), dt


def motion_vector(
    target_pose: np.ndarray,
    pose_a: np.ndarray,
    dt_a: float,
    pose_b: np.ndarray | None = None,
    dt_b: float = 0.0,
) -> np.ndarray:
    """The (MOTION_DIM,) camera-motion conditioning of one target frame."""
    motion_a, _ = relative_motion(target_pose, pose_a, dt_a)
    if pose_b is None:
        motion_b, present = np.zeros(9), 0.0
    else:
        motion_b, _ = relative_motion(target_pose, pose_b, dt_b)
        present = 1.0
    return np.concatenate([motion_a, motion_b, [dt_a, dt_b if present else 0.0, present]]).astype(
        np.float32
    )


# ---------------------------------------------------------------- noise schedule
def alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine schedule on continuous t in [0, 1]: x_t = alpha x0 + sigma eps."""
    angle = 0.5 * math.pi * t.clamp(0.0, 0.999)
    return torch.cos(angle), torch.sin(angle)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    alpha, sigma = alpha_sigma(t)
    return alpha[:, None, None, None] * x0 + sigma[:, None, None, None] * noise


# ---------------------------------------------------------------- network
def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    frequencies = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], -1)


class ResBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, embed_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.film = nn.Linear(embed_dim, 2 * channels_out)
        self.norm2 = nn.GroupNorm(8, channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.skip = (
            nn.Conv2d(channels_in, channels_out, 1)
            if channels_in != channels_out
            else nn.Identity()
        )
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        scale, shift = self.film(embedding)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(nn.functional.silu(h))


@dataclass
class Conditioning:
    """Everything a frame is generated from, batched: images (B, C, H, W) with C =
    `GeneratorConfig.condition_channels` (A, B, guidance, then the warp), motion (B, 21)."""

    images: torch.Tensor
    motion: torch.Tensor

    def repeat(self, count: int) -> Conditioning:
        return Conditioning(self.images.repeat(count, 1, 1, 1), self.motion.repeat(count, 1))


class WorldGenerator(nn.Module):
    """x0-prediction U-Net: forward(x_t, t, conditioning) -> predicted clean frame."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.config = config
        widths, e = config.widths, config.embed_dim
        self.embed = nn.Sequential(
            nn.Linear(e + MOTION_DIM, e), nn.SiLU(), nn.Linear(e, e), nn.SiLU()
        )
        folded = 4 * (RGBD + config.condition_channels)  # 2x2 pixels folded into channels
        self.stem = nn.Conv2d(folded, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = widths[0]
        for width in widths:
            blocks = [
                ResBlock(previous if i == 0 else width, width, e) for i in range(config.blocks)
            ]
            self.down.append(nn.ModuleList(blocks))
            self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
            previous = width
        self.middle = nn.ModuleList([ResBlock(widths[-1], widths[-1], e) for _ in range(2)])
        self.up = nn.ModuleList()
        for width in reversed(widths):
            blocks = [
                ResBlock(previous + width if i == 0 else width, width, e)
                for i in range(config.blocks)
            ]
            self.up.append(nn.ModuleList(blocks))
            previous = width
        self.head = nn.Sequential(
            nn.GroupNorm(8, widths[0]), nn.SiLU(), nn.Conv2d(widths[0], 4 * RGBD, 3, padding=1)
        )
        if config.geometry:  # a residual over the warp, which starts as the warp itself
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        embedding = self.embed(
            torch.cat([timestep_embedding(t, self.config.embed_dim), cond.motion], -1)
        )
        h = self.stem(nn.functional.pixel_unshuffle(torch.cat([x_t, cond.images], 1), 2))
        skips = []
        for blocks, downsample in zip(self.down, self.downsample, strict=True):
            for block in blocks:
                h = block(h, embedding)
            skips.append(h)
            h = downsample(h)
        for block in self.middle:
            h = block(h, embedding)
        for blocks in self.up:
            h = nn.functional.interpolate(h, scale_factor=2.0, mode="nearest")
            h = torch.cat([h, skips.pop()], 1)
            for block in blocks:
                h = block(h, embedding)
        out = nn.functional.pixel_shuffle(self.head(h), 2)
        if self.config.geometry:
            return out + cond.images[:, CONDITION_CHANNELS : CONDITION_CHANNELS + RGBD]
        return out


# ---------------------------------------------------------------- sampling
def sampling_times(steps: int) -> list[float]:
    """The noise levels a `steps`-step sampler visits, from pure noise down (1.0 first)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return [1.0 - i / steps for i in range(steps)]


def ddim_step(
    model: nn.Module, x: torch.Tensor, t_now: float, t_next: float, cond: Conditioning
) -> torch.Tensor:
    """One deterministic DDIM step from noise level t_now to t_next (0: the clean x0)."""
    t = torch.full((len(x),), t_now, device=x.device)
    x0 = model(x, t, cond).clamp(-1.0, 1.0)
    if t_next == 0.0:
        return x0
    alpha, sigma = alpha_sigma(t)
    epsilon = (x - alpha[:, None, None, None] * x0) / sigma[:, None, None, None]
    return add_noise(x0, epsilon, torch.full_like(t, t_next))


@torch.no_grad()
def sample(model: nn.Module, cond: Conditioning, steps: int, noise: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM from pure noise to a frame in `steps` network calls."""
    x = noise
    for t_now, t_next in itertools.pairwise([*sampling_times(steps), 0.0]):
        x = ddim_step(model, x, t_now, t_next, cond)
    return x
