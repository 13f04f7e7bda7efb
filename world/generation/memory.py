"""The 4D memory as the generator sees it: a tri-plane field that renders guidance.

Guidance for a target pose is the field rendered there at half resolution (what the
generator was trained on), upsampled: RGB-D in model space times a hard opacity mask,
plus the mask itself. Two memories share that renderer:

- `LocalMemory` fits frames in this process with the reconstruction node's
  `OnlineFitter` (evaluation and benchmarks: deterministic, one process). The true
  start frame is an anchor: pinned in the fitter, and a generated frame is fitted only
  on the pixels whose 3-D points no anchor saw (world/warp.py's co-visibility), so the
  memory's render reproduces the truth wherever the truth was seen;
- `FieldMemory` just holds the newest field, replaced whenever a TriPlanes snapshot
  arrives from a reconstruction node over ZeroMQ (the live loop).

Either says whether its field can be trusted at all (`trusted`: it renders the true
start frame well enough); the world stream withholds the render otherwise, and per
target where it disagrees with the warp (docs/world_model.md, "Trust gates").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from world.generation.generator import from_model, to_model
from world.metrics import psnr
from world.reconstruction.field import EXPLORE_BOUNDS, FieldConfig, TriPlaneField
from world.reconstruction.fit import FitConfig, OnlineFitter
from world.reconstruction.render import render_image
from world.warp import View, covisible

OPAQUE = 0.5  # rendered opacity above which the memory counts as covering a pixel


@dataclass(frozen=True)
class MemoryConfig:
    image_size: int = 64
    guidance_size: int = 32
    samples: int = 16
    resolution: int = 64
    channels: int = 16
    time_steps: int = 8
    t_end: float = 30.0
    rays_per_step: int = 1024
    fit_samples: int = 32
    keyframes: int = 32
    steps_per_frame: int = 4
    # 0.1 rather than the reconstruction node's 0.03: a memory must be useful after a few
    # hundred steps. Measured on a loop path: 28.7 dB at revisited poses after 680 steps
    # against 25.1 dB with 0.03 (26.3 dB without deformation).
    lr_planes: float = 0.1
    # Generated frames fit only the pixels no true frame saw (False: they fit everywhere,
    # as before anchoring; the ablation).
    anchoring: bool = True
    # Trust gates (0 turns one off). A field a few hundred steps old renders 8-12 dB at
    # its own anchor and 4-15 dB at the loop's targets while claiming 70-90 % of their
    # pixels, and the generator, trained on guidance close to the truth, copies it. So:
    # no guidance at all while the field renders its anchor (the true start frame) below
    # `min_anchor_psnr` on the pixels it claims; none for a target whose render agrees
    # with the warp there below `min_agreement_psnr` (world/generation/rollout.py). Both
    # chosen on a tuning excursion (seed 1000), docs/runs/world-memory-gate-2026-12-04.json;
    # the agreement raised from 22 to 28 dB on the tuning walks (seeds 1000-1002): at 22
    # the render reached 12 of 96 targets and cost 0.08 dB (0.8 on co-visible pixels), at
    # 25 three and 0.02, at 28 none (docs/runs/world-student-2026-12-04.json).
    min_anchor_psnr: float = 20.0
    min_agreement_psnr: float = 28.0


def render_guidance(
    field: TriPlaneField,
    intrinsics: np.ndarray,
    poses: np.ndarray,
    times: np.ndarray,
    config: MemoryConfig,
) -> torch.Tensor:
    """(B, 5, H, W): masked RGB-D in model space and the mask, one per pose."""
    scale = config.guidance_size / config.image_size
    small = np.array(intrinsics, dtype=np.float64)
    small[:2] *= scale
    out = []
    for pose, time_s in zip(poses, times, strict=True):
        size = config.guidance_size
        image = render_image(
            field, small, pose, size, size, float(time_s), field.bounds, samples=config.samples
        )
        opacity = image["opacity"]
        colour = image["rgb"].astype(np.float32) / np.maximum(opacity, 1e-3)[..., None]
        rgbd = to_model(np.clip(colour, 0, 255).astype(np.uint8), image["depth"])
        mask = (opacity > OPAQUE).astype(np.float32)
        out.append(np.concatenate([rgbd * mask, mask[None]], 0))
    batch = torch.from_numpy(np.stack(out))
    return nn.functional.interpolate(batch, size=config.image_size, mode="bilinear")


def anchor_fidelity(rendered: np.ndarray, frame: np.ndarray, config: MemoryConfig) -> float:
    """PSNR (dB) of a guidance render (5, H, W) against the true model-space frame seen
    at the guidance's resolution (what a perfect field would render), on the RGB of the
    pixels the render claims; -inf where it claims none (nothing to trust)."""
    claimed = rendered[4] > OPAQUE
    if not claimed.any():
        return float("-inf")
    truth = torch.from_numpy(np.asarray(frame[None, :3], np.float32))
    small = nn.functional.interpolate(truth, size=config.guidance_size, mode="area")
    seen = nn.functional.interpolate(small, size=config.image_size, mode="bilinear")[0].numpy()
    error = (rendered[:3] - seen)[:, claimed] / 2  # model space spans 2: RGB in [0, 1]
    return psnr(float(np.mean(error**2)))


def new_field(config: MemoryConfig) -> TriPlaneField:
    field_config = FieldConfig(
        resolution=config.resolution, channels=config.channels, time_steps=config.time_steps
    )
    return TriPlaneField(field_config, torch.tensor(EXPLORE_BOUNDS), (0.0, config.t_end))


class FieldMemory:
    """The newest field received; no guidance until the first one arrives. `trusted`
    says whether the field renders its anchor well enough to be used at all (the world
    stream asks before it hands the render to the generator)."""

    def __init__(self, intrinsics: np.ndarray, config: MemoryConfig = MemoryConfig()):
        self.intrinsics, self.config = np.asarray(intrinsics), config
        self.field: TriPlaneField | None = None
        # Called with every frame added: the world node publishes them as keyframes.
        self.on_add: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None
        self.anchor: tuple[np.ndarray, np.ndarray, float] | None = None  # frame, pose, time
        self.anchor_psnr = float("nan")  # the field's render of its anchor, last checked
        self.version = 0  # bumped by every fit of the field in place (LocalMemory.add)
        self._verdict: tuple[object, int, bool] | None = None  # field, version, answer

    def guidance(self, poses: np.ndarray, times: np.ndarray) -> torch.Tensor | None:
        if self.field is None:
            return None
        return render_guidance(self.field, self.intrinsics, poses, times, self.config)

    def trusted(self) -> bool:
        """Does the field render its anchor at `min_anchor_psnr` or better? (True with
        the gate off; False with the gate on and no anchor to check against.)"""
        if self.config.min_anchor_psnr <= 0:
            return True
        if self.anchor is None or self.field is None:
            return False
        verdict = self._verdict  # a field received over the wire is a new object
        if verdict is not None and verdict[0] is self.field and verdict[1] == self.version:
            return verdict[2]
        frame, pose, time_s = self.anchor
        rendered = render_guidance(
            self.field, self.intrinsics, pose[None], np.array([time_s]), self.config
        )[0].numpy()
        self.anchor_psnr = anchor_fidelity(rendered, frame, self.config)
        self._verdict = (self.field, self.version, self.anchor_psnr >= self.config.min_anchor_psnr)
        return self._verdict[2]

    def add(
        self, frames: np.ndarray, poses: np.ndarray, times: np.ndarray, anchor: bool = False
    ) -> None:
        """frames (B, 4, H, W) in model space; `anchor`: true observations, not generated.
        A remote memory gets them over the wire (where, for now, nothing is anchored);
        the first anchor is what the trust gate checks the field against."""
        if anchor and self.anchor is None:
            self.anchor = (np.asarray(frames[0], np.float32), np.asarray(poses[0]), float(times[0]))
        if self.on_add is not None:
            self.on_add(frames, poses, times)


class LocalMemory(FieldMemory):
    """Fits each added frame into its own field with `steps_per_frame` updates."""

    def __init__(
        self, intrinsics: np.ndarray, config: MemoryConfig = MemoryConfig(), seed: int = 0
    ):
        super().__init__(intrinsics, config)
        self._field = new_field(config)
        fit = FitConfig(
            rays_per_step=config.rays_per_step,
            samples=config.fit_samples,
            keyframes=config.keyframes,
            lr_planes=config.lr_planes,
        )
        self.fitter = OnlineFitter(self._field, fit, seed=seed)
        self.anchor_views: list[View] = []

    def add(
        self, frames: np.ndarray, poses: np.ndarray, times: np.ndarray, anchor: bool = False
    ) -> None:
        """Anchors (true frames) are pinned in the fitter; a generated frame is fitted
        only where no anchor saw its 3-D points, so it cannot overwrite what was observed."""
        super().add(frames, poses, times, anchor)
        rgb, depth = from_model(frames)
        for i in range(len(frames)):
            keep = None
            if anchor:
                self.anchor_views.append(View(rgb[i], depth[i], np.asarray(poses[i])))
            elif self.anchor_views and self.config.anchoring:
                keep = ~covisible(depth[i], poses[i], self.anchor_views, self.intrinsics)
            self.fitter.add_frame(
                rgb[i], depth[i], self.intrinsics, poses[i], float(times[i]), anchor, keep
            )
            for _ in range(self.config.steps_per_frame):
                self.fitter.step()
        self.version += 1
        self.field = self._field
