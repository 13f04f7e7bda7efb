"""`bench world` against the simulator's truth: the generator beside classical baselines.

Every row is scored against what the simulator renders at the target pose, with what
the loop could have known: frame 0 (true) and what was generated after it. Rows:

- copy: frame 0 shown again;
- warp-start: frame 0 depth-warped into the target camera (world/warp.py);
- warp-recent: a classical world model, each frame warped from frame 0 and the frame it
  produced last (z-buffered together), the way the generator chains its own frames;
- memory render: the guidance image the guided student was given (the memory fitted on
  frame 0 and the student's own frames), as the generator sees it (uncovered = grey);
- the student, the teacher and the teacher cut to the student's steps, each guided by
  such a memory and unguided.

Each row is scored over the whole frame (PSNR and SSIM, mean over frames), on the
co-visible pixels (their 3-D point is in frame 0's view and not occluded there) and
the disoccluded rest (PSNR of the pooled squared error), by camera-motion bin against
frame 0, and with a sharpness figure (high-frequency energy relative to the truth's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sim import trajectories
from world.generation.generator import from_model
from world.generation.geometry import view_of
from world.generation.rollout import CameraPath
from world.metrics import masked_mse, psnr, sharpness, ssim
from world.warp import View, camera_motion, covisible, depth_warp

# Motion bins against frame 0, fixed before the first run: a "small" move keeps most of
# frame 0 in view at the Explore camera's field of view.
SMALL_MOTION_M, SMALL_MOTION_DEG = 0.5, 20.0
CLASSICAL = ("copy", "warp-start", "warp-recent")


def excursion(rng: np.random.Generator, steps: int) -> np.ndarray:
    """Explore actions for a revisit path that goes far: out at full speed in one random
    horizontal heading while turning one way (translate and turn on alternate steps,
    about 1.4 m and 90 degrees at 32 steps out), then exactly back, as `loop` does
    (sim/trajectories.py). A short `loop` may never take the start out of view."""
    half = steps // 2
    heading = rng.uniform(-np.pi, np.pi)
    turn = float(rng.choice([-1.0, 1.0]))
    out = np.zeros((half, trajectories.ACTION_DIM), np.float32)
    out[0::2, 0], out[0::2, 1] = np.cos(heading), np.sin(heading)
    out[1::2, 3] = turn
    actions = np.concatenate([out, -out[::-1]])
    if len(actions) < steps:
        actions = np.concatenate([actions, np.zeros((1, trajectories.ACTION_DIM), np.float32)])
    return actions


def motion_bin(pose: np.ndarray, start: np.ndarray) -> str:
    distance, angle = camera_motion(pose, start)
    return "small" if distance <= SMALL_MOTION_M and angle <= SMALL_MOTION_DEG else "large"


@dataclass
class Tally:
    """One row's scores, accumulated frame by frame (and over repeated runs)."""

    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    sharpness: list[float] = field(default_factory=list)
    split: dict[str, list[float]] = field(default_factory=dict)  # name -> [sum, count]
    bins: dict[str, list[float]] = field(default_factory=dict)  # name -> frame PSNRs

    def add(self, rgb: np.ndarray, truth: np.ndarray, seen: np.ndarray, motion: str) -> None:
        """rgb, truth: (H, W, 3) uint8; seen: the co-visibility mask."""
        x, y = rgb.astype(np.float64) / 255, truth.astype(np.float64) / 255
        value = psnr(float(np.mean((x - y) ** 2)))
        self.psnr.append(value)
        self.ssim.append(ssim(x, y))
        self.sharpness.append(sharpness(x, y))
        self.bins.setdefault(motion, []).append(value)
        for name, mask in (("covisible", seen), ("disoccluded", ~seen)):
            total, count = masked_mse(x, y, mask)
            pooled = self.split.setdefault(name, [0.0, 0])
            pooled[0] += total
            pooled[1] += count

    def summary(self) -> dict[str, float]:
        out = {
            "psnr": float(np.mean(self.psnr)),
            "ssim": float(np.mean(self.ssim)),
            "sharpness": float(np.nanmean(self.sharpness)),
        }
        for name, (total, count) in self.split.items():
            out[f"psnr_{name}"] = psnr(total / count) if count else float("nan")
        for name, values in self.bins.items():
            out[f"psnr_{name}_motion"] = float(np.mean(values))
        return out


@dataclass(frozen=True)
class Targets:
    """What every row is scored on: frames 1.. of a path, their masks and motion bins."""

    truth: np.ndarray  # (F, H, W, 3) uint8 for frames 1..
    seen: np.ndarray  # (F, H, W) bool
    motion: list[str]

    @classmethod
    def of(cls, path: CameraPath) -> Targets:
        start = view_of(path.truth[0], path.poses[0])
        truth, seen, motion = [], [], []
        for frame, pose in zip(path.truth[1:], path.poses[1:], strict=True):
            rgb, depth = from_model(frame)
            truth.append(rgb)
            seen.append(covisible(depth, pose, [start], path.intrinsics))
            motion.append(motion_bin(pose, path.poses[0]))
        return cls(np.stack(truth), np.stack(seen), motion)

    def score(self, frames_rgb: np.ndarray, tally: Tally | None = None) -> Tally:
        """frames_rgb: (F, H, W, 3) uint8 outputs for frames 1.. of the path."""
        tally = tally or Tally()
        for rgb, truth, seen, motion in zip(
            frames_rgb, self.truth, self.seen, self.motion, strict=True
        ):
            tally.add(rgb, truth, seen, motion)
        return tally

    def counts(self) -> dict[str, float]:
        return {
            "targets": len(self.truth),
            "covisible_fraction": float(self.seen.mean()),
            "small_motion_targets": self.motion.count("small"),
            "large_motion_targets": self.motion.count("large"),
        }


def classical(path: CameraPath) -> dict[str, np.ndarray]:
    """(F, H, W, 3) uint8 outputs of the baselines that need no learning, frames 1.."""
    size = path.truth.shape[-1]
    start = view_of(path.truth[0], path.poses[0])
    copy, warp_start, warp_recent = [], [], []
    previous = start
    for pose in path.poses[1:]:
        copy.append(start.rgb)
        warp_start.append(depth_warp([start], path.intrinsics, pose, size, size).rgb)
        recent = depth_warp([start, previous], path.intrinsics, pose, size, size)
        warp_recent.append(recent.rgb)
        previous = View(recent.rgb, recent.depth, pose)
    return dict(zip(CLASSICAL, map(np.stack, (copy, warp_start, warp_recent)), strict=True))


def generated_rgb(frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) uint8 RGB of frames 1.. of a rollout (model space)."""
    return from_model(frames[1:])[0]


def guidance_rgb(guidance: dict[int, np.ndarray], count: int, size: int) -> np.ndarray:
    """The memory's render at frames 1..count as RGB; grey where it had nothing."""
    blank = np.zeros((5, size, size), np.float32)
    return np.stack([from_model(guidance.get(i, blank)[:4])[0] for i in range(1, count + 1)])


def score_runs(
    targets: Targets, runs: list[int], produce: Callable[[int], np.ndarray]
) -> dict[str, float]:
    """Score `produce(seed)` (RGB of frames 1..) for each seed, pooled, with the spread of
    the per-run mean PSNR across seeds."""
    tally, per_run = Tally(), []
    for seed in runs:
        before = len(tally.psnr)
        targets.score(produce(seed), tally)
        per_run.append(float(np.mean(tally.psnr[before:])))
    out = tally.summary()
    out["psnr_min"], out["psnr_max"] = min(per_run), max(per_run)
    return out
