"""Image observations for a diffusion policy: one encoder per camera, fused with state.

Shapes: B batch, To observation steps, H×W the camera frame, h×w the crop, F features
per camera, P proprioceptive state dims, K cameras.

    frames (B, To, H, W, 3) u1 ─► crop h×w ─► [0, 1] ─► backbone ─► spatial softmax
                                  (random while training,           (x, y) per keypoint
                                   centred otherwise)               ─► Linear ─► (B, To, F)
    cond (B, To·(P + K·F)) = per step [ normalised state (P) , camera 1 (F) , ... ]

Diffusion Policy's choice (Chi et al. 2023) is a ResNet-18 with GroupNorm in place of
BatchNorm and spatial-softmax pooling, a separate encoder per camera: `resnet18` here,
for GPU machines. The default `small` backbone (four convolutions with GroupNorm) is
what trains in an hour on a 2-core CPU.

Frames enter as the camera gives them (uint8, HWC, RGB) and the crop happens inside the
module, so the exported graph takes raw frames and a client has nothing to preprocess.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from policies.diffusion.configuration import BACKBONES

KEYPOINTS = 32  # spatial-softmax keypoints per camera (DP uses 32)


class SpatialSoftmax(nn.Module):
    """(B, C, h, w) maps -> (B, 2·K): the expected image position of K learned keypoints."""

    def __init__(self, channels: int, keypoints: int = KEYPOINTS):
        super().__init__()
        self.keypoints = nn.Conv2d(channels, keypoints, 1)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        logits = self.keypoints(maps)  # (B, K, h, w)
        height, width = logits.shape[-2:]
        weights = logits.flatten(2).softmax(-1)  # (B, K, h·w)
        ys = torch.linspace(-1.0, 1.0, height, device=maps.device)
        xs = torch.linspace(-1.0, 1.0, width, device=maps.device)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        x = (weights * grid_x.reshape(1, 1, -1)).sum(-1)  # (B, K)
        y = (weights * grid_y.reshape(1, 1, -1)).sum(-1)
        return torch.cat([x, y], dim=-1)  # (B, 2K)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, channels // 16), channels)  # DP's replacement for BatchNorm


def small_backbone() -> tuple[nn.Module, int]:
    """Four convolutions, stride 4 in all: 84×84 -> 21×21 maps of 64 channels."""
    layers: list[nn.Module] = []
    for in_channels, out_channels, kernel, stride in (
        (3, 32, 5, 2),
        (32, 64, 3, 2),
        (64, 64, 3, 1),
        (64, 64, 3, 1),
    ):
        layers += [
            nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2),
            _group_norm(out_channels),
            nn.ReLU(),
        ]
    return nn.Sequential(*layers), 64


class BasicBlock(nn.Module):
    """ResNet's two 3×3 convolutions with a skip; GroupNorm instead of BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            _group_norm(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            _group_norm(out_channels),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                _group_norm(out_channels),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def resnet18_backbone() -> tuple[nn.Module, int]:
    """ResNet-18 without its pooling head, GroupNorm throughout: 84×84 -> 3×3×512.

    Written out (30 lines) rather than taken from torchvision: torchvision's wheel must
    match the installed torch build exactly, and no pretrained weights are reachable
    here, so it would bring a pinning problem and nothing else.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        _group_norm(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    channels = 64
    for out_channels, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [
            BasicBlock(channels, out_channels, stride),
            BasicBlock(out_channels, out_channels, 1),
        ]
        channels = out_channels
    return nn.Sequential(*layers), channels


class CameraEncoder(nn.Module):
    """Raw frames of one camera -> features: crop, scale to [0, 1], backbone, keypoints."""

    def __init__(self, backbone: str, crop: int, features: int):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        self.crop = crop
        self.backbone, channels = small_backbone() if backbone == "small" else resnet18_backbone()
        self.pool = SpatialSoftmax(channels)
        self.project = nn.Linear(2 * KEYPOINTS, features)

    def forward(
        self, frames: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """frames (N, H, W, 3) uint8 -> (N, F). Random crops in training mode."""
        images = frames.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
        images = (
            random_crop(images, self.crop, generator)
            if self.training
            else center_crop(images, self.crop)
        )
        return self.project(self.pool(self.backbone(images)))


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size), the centre (top-left of centre when odd)."""
    top = (images.shape[-2] - size) // 2
    left = (images.shape[-1] - size) // 2
    return images[..., top : top + size, left : left + size]


def random_crop(
    images: torch.Tensor, size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size), each image cropped at its own random offset."""
    count, _, height, width = images.shape
    tops = torch.randint(0, height - size + 1, (count,), generator=generator)
    lefts = torch.randint(0, width - size + 1, (count,), generator=generator)
    offsets = torch.arange(size)
    rows = (tops[:, None] + offsets).to(images.device)  # (N, size)
    cols = (lefts[:, None] + offsets).to(images.device)
    batch = torch.arange(count, device=images.device)[:, None, None]
    # (N, size, size, C) by advanced indexing, then channels first again
    return images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class ObservationEncoder(nn.Module):
    """Normalised state and raw frames of every camera -> the U-Net's global condition."""

    def __init__(self, cameras: tuple[str, ...], backbone: str, crop: int, features: int):
        super().__init__()
        if not cameras:
            raise ValueError("an observation encoder needs at least one camera")
        self.cameras = tuple(cameras)
        # ModuleDict keys cannot hold dots; camera names are checked by the config.
        self.encoders = nn.ModuleDict(
            {camera: CameraEncoder(backbone, crop, features) for camera in self.cameras}
        )

    def forward(
        self,
        state: torch.Tensor,
        images: Mapping[str, torch.Tensor],
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """state (B, To, P) normalised, images {camera: (B, To, H, W, 3) u1} -> (B, G)."""
        batch, steps = state.shape[:2]
        parts = [state]
        for camera in self.cameras:
            frames = images[camera]
            features = self.encoders[camera](frames.flatten(0, 1), generator)  # (B·To, F)
            parts.append(features.reshape(batch, steps, -1))
        return torch.cat(parts, dim=-1).flatten(1)  # (B, To·(P + K·F))


class VisuomotorNetwork(nn.Module):
    """The noise U-Net and the observation encoder, trained together end to end.

    `forward` is the U-Net's (sample, step, cond), so samplers and the exported graphs
    treat it like the low-dim network; `encode` makes the condition once per
    observation, and every denoising step of a prediction reuses it.
    """

    def __init__(self, unet: nn.Module, encoder: ObservationEncoder, aux_outputs: int = 0):
        super().__init__()
        self.unet, self.encoder = unet, encoder
        # Training only (DiffusionConfig.aux_state_dims): the image features of a step ->
        # the state entries they should hold. Samplers and exports never call it.
        features = sum(camera.project.out_features for camera in encoder.encoders.values())
        self.state_head = nn.Linear(features, aux_outputs) if aux_outputs else None

    def forward(self, sample: torch.Tensor, step: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, step, cond)

    def encode(
        self,
        state: torch.Tensor,
        images: Mapping[str, torch.Tensor],
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return self.encoder(state, images, generator)

    def predict_state(self, cond: torch.Tensor, state_dim: int) -> torch.Tensor:
        """cond (B, To·(P + K·F)) from `encode` -> (B, To, aux) by the state head."""
        per_step = cond.reshape(cond.shape[0], -1, state_dim + self.state_head.in_features)
        return self.state_head(per_step[..., state_dim:])
