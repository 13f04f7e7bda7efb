"""The noise network: a conditional 1-D temporal U-Net (Chi et al., RSS 2023).

Shapes: B batch, T prediction horizon, A action dim, C channels, G global condition.

    sample (B, T, A) ──► Conv1d stack over time, down ×2 ... up ×2 ──► eps (B, T, A)
    condition = [ sinusoidal(step) → Linear(4d) → Mish → Linear(d) ,  obs features ]
    every residual block: Conv-GN-Mish → FiLM(condition) → Conv-GN-Mish, + 1×1 residual

It takes plain arguments (no config object), so the same module serves training,
inference and ONNX export.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn


class SinusoidalStepEmbedding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, step: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, dim)
        half = self.dim // 2
        scale = math.log(10_000) / (half - 1)
        frequencies = torch.exp(torch.arange(half, device=step.device) * -scale)
        angles = step.float()[:, None] * frequencies[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ConvBlock(nn.Sequential):
    """Conv1d → GroupNorm → Mish, keeping the length."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int = 8):
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(groups, out_channels),
            nn.Mish(),
        )


class ConditionalResidualBlock(nn.Module):
    """Two conv blocks with FiLM (per-channel scale and bias from the condition) between."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int):
        super().__init__()
        self.first = ConvBlock(in_channels, out_channels, kernel_size)
        self.second = ConvBlock(out_channels, out_channels, kernel_size)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_channels))
        self.residual = (
            nn.Conv1d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = self.first(x)  # (B, C_out, T)
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)  # (B, C_out, 1) each
        out = self.second(scale * out + bias)
        return out + self.residual(x)


class ConditionalUnet1D(nn.Module):
    def __init__(
        self,
        action_dim: int,
        global_cond_dim: int,
        down_dims: tuple[int, ...] = (64, 128, 256),
        step_embed_dim: int = 128,
        kernel_size: int = 5,
    ):
        super().__init__()
        if any(d % 8 for d in down_dims):
            raise ValueError(f"down_dims must be multiples of 8 (GroupNorm), got {down_dims}")
        self.step_encoder = nn.Sequential(
            SinusoidalStepEmbedding(step_embed_dim),
            nn.Linear(step_embed_dim, 4 * step_embed_dim),
            nn.Mish(),
            nn.Linear(4 * step_embed_dim, step_embed_dim),
        )
        cond_dim = step_embed_dim + global_cond_dim
        dims = [action_dim, *down_dims]
        pairs = list(pairwise(dims))  # (in, out) channels per level

        def block(i: int, o: int) -> ConditionalResidualBlock:
            return ConditionalResidualBlock(i, o, cond_dim, kernel_size)

        self.down = nn.ModuleList()
        for level, (i, o) in enumerate(pairs):
            last = level == len(pairs) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        block(i, o),
                        block(o, o),
                        nn.Identity() if last else nn.Conv1d(o, o, 3, stride=2, padding=1),
                    ]
                )
            )
        self.mid = nn.ModuleList([block(dims[-1], dims[-1]), block(dims[-1], dims[-1])])
        self.up = nn.ModuleList()
        for i, o in reversed(pairs[1:]):
            self.up.append(
                nn.ModuleList(
                    [block(2 * o, i), block(i, i), nn.ConvTranspose1d(i, i, 4, stride=2, padding=1)]
                )
            )
        self.head = nn.Sequential(
            ConvBlock(down_dims[0], down_dims[0], kernel_size),
            nn.Conv1d(down_dims[0], action_dim, 1),
        )

    def forward(
        self, sample: torch.Tensor, step: torch.Tensor, global_cond: torch.Tensor
    ) -> torch.Tensor:
        """sample (B, T, A), step (B,) integer steps, global_cond (B, G) -> eps (B, T, A)."""
        x = sample.transpose(1, 2)  # (B, A, T): channels first for Conv1d
        cond = torch.cat([self.step_encoder(step), global_cond], dim=-1)  # (B, cond_dim)
        skips = []
        for first, second, downsample in self.down:
            x = second(first(x, cond), cond)
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = block(x, cond)
        for first, second, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = upsample(second(first(x, cond), cond))
        return self.head(x).transpose(1, 2)  # (B, T, A)
