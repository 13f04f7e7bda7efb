"""Generate → reconstruct → guide over a camera path, wave by wave.

A `CameraPath` comes from the Explore simulator driven by controls (keys or a scripted
trajectory): the poses and times of every frame, and the simulator's own rendering as
ground truth for evaluation. The generator sees only frame 0; every later frame is
generated, conditioned on earlier generated frames, the camera motion and the memory's
guidance at the target pose. Frames are released in stream order as soon as all
frames before them exist, which is what a viewer shows and what latency is measured on.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from sim.envs import make_env
from world.generation.generator import (
    CONDITION_CHANNELS,
    GEOMETRY,
    RGBD,
    Conditioning,
    motion_vector,
    sample,
    to_model,
)
from world.generation.geometry import ANCHORED, anchored_warp, view_of
from world.generation.memory import FieldMemory
from world.generation.mmpl import Wave, check_schedule, segment_waves
from world.metrics import psnr


@dataclass
class CameraPath:
    poses: np.ndarray  # (F, 4, 4) camera-to-world, frame 0 is the start
    times: np.ndarray  # (F,) scene seconds
    intrinsics: np.ndarray  # (3, 3)
    truth: np.ndarray  # (F, 4, H, W) the simulator's RGB-D in model space

    def __len__(self) -> int:
        return len(self.poses)


def explore_path(actions: np.ndarray, seed: int = 0, image_size: int = 64) -> CameraPath:
    """Drive the Explore scene with `actions`; record frame 0 and one frame per action."""
    env = make_env("explore", max_episode_steps=len(actions) + 1)
    base = env.unwrapped
    env.reset(seed=seed)
    poses, times, frames = [], [], []
    try:
        for step in range(len(actions) + 1):
            image = base.render_camera("eye", image_size, image_size)
            poses.append(image.pose)
            times.append(base.time)
            frames.append(to_model(image.rgb, image.depth))
            if step < len(actions):
                env.step(np.asarray(actions[step], np.float32))
    finally:
        env.close()
    return CameraPath(np.array(poses), np.array(times), image.intrinsics, np.stack(frames))


@dataclass
class Released:
    index: int
    frame: np.ndarray  # (4, H, W) model space
    pose: np.ndarray
    time: float
    guidance: np.ndarray | None  # (5, H, W) what the memory rendered there, if anything


class WorldStream:
    """Generates a stream segment by segment as the camera path becomes known.

    `start` gives frame 0; each `add_segment` gives the poses and times of the next N
    frames and returns the frames it could release (in stream order); `flush` finishes
    what a pipelined schedule still holds back. `order` records every wave's frames.

    A generator trained with geometry gets frame 0 (the anchor) and its contexts warped
    into each target camera (needs `intrinsics`); `geometry=False` withholds the warp
    (zeros, as in training's unguided examples) to measure what it adds.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        sampling_steps: int,
        frames_per_segment: int,
        memory: FieldMemory | None = None,
        kind: str = "mmpl",
        fit: str = "planning",
        pipelined: bool = True,
        seed: int = 0,
        on_release: Callable[[Released], None] | None = None,
        intrinsics: np.ndarray | None = None,
        geometry: bool = True,
    ):
        self.geometry = bool(getattr(getattr(model, "config", None), "geometry", False))
        self.use_geometry = self.geometry and geometry
        if self.use_geometry and intrinsics is None:
            raise ValueError("a generator conditioned on geometry needs the camera intrinsics")
        self.intrinsics = None if intrinsics is None else np.asarray(intrinsics)
        self.anchors: list = []  # true frames as Views: warped first, never overwritten
        # Per target: did the memory's render reach the generator ("guided"), or not
        # ("withheld": no field yet, memory.py's anchor check, or the agreement below)?
        # And the latest agreements measured, in dB (bounded: the loop may run for hours).
        self.memory_use = {"guided": 0, "withheld": 0}
        self.agreement: deque[float] = deque(maxlen=1024)
        if fit not in ("planning", "all", "none"):
            raise ValueError(f"fit must be planning, all or none, got {fit!r}")
        check_schedule(kind)
        self.model, self.steps, self.n = model, sampling_steps, frames_per_segment
        self.memory, self.kind, self.fit, self.pipelined = memory, kind, fit, pipelined
        self.generator = torch.Generator().manual_seed(seed)
        self.frames: dict[int, np.ndarray] = {}
        self.guidance: dict[int, np.ndarray] = {}
        # Everything is keyed by frame index and pruned once released: bounded memory.
        self.poses: dict[int, np.ndarray] = {}
        self.times: dict[int, float] = {}
        self.order: list[list[int]] = []
        self.timings = {"generate": 0.0, "guidance": 0.0, "fit": 0.0, "warp": 0.0}
        self.on_release = on_release
        self._pending: Wave = []
        self._ready: list[Released] = []
        self._next_release = 0
        self._segment = 0

    def start(self, frame: np.ndarray, pose: np.ndarray, time_s: float) -> list[Released]:
        self.frames[0] = np.asarray(frame, np.float32)
        self.poses[0], self.times[0] = np.asarray(pose), float(time_s)
        self.anchors = [view_of(self.frames[0], pose)]
        self._release()
        if self.memory is not None and self.fit != "none":
            # The start frame is a real observation: the memory's first and best view.
            self.memory.add(
                self.frames[0][None], np.asarray(pose)[None], np.array([time_s]), anchor=True
            )
        return self._take()

    def add_segment(self, poses: np.ndarray, times: np.ndarray) -> list[Released]:
        if not self.frames:
            raise RuntimeError("call start() with the first frame before add_segment()")
        if len(poses) != self.n or len(times) != self.n:
            raise ValueError(f"a segment has {self.n} poses and times, got {len(poses)}")
        first = self._segment * self.n + 1
        for offset, (pose, time_s) in enumerate(zip(poses, times, strict=True)):
            self.poses[first + offset], self.times[first + offset] = np.asarray(pose), float(time_s)
        waves, self._pending = segment_waves(
            self.kind, self._segment, self.n, self._pending, self.pipelined
        )
        self._segment += 1
        for wave in waves:
            self._run(wave)
        return self._take()

    def flush(self) -> list[Released]:
        pending, self._pending = self._pending, []
        if pending:
            self._run(pending)
        return self._take()

    def _take(self) -> list[Released]:
        ready, self._ready = self._ready, []
        return ready

    def _run(self, wave: Wave) -> None:
        targets = [r.absolute(self.n)[0] for r in wave]
        self.order.append(targets)
        made = self._generate(wave)
        for index, frame in zip(targets, made, strict=True):
            self.frames[index] = frame
        self._release()  # before fitting: a viewer should not wait for the memory
        self._remember(wave, made)

    def _release(self) -> None:
        while self._next_release in self.frames:
            i = self._next_release
            item = Released(i, self.frames[i], self.poses[i], self.times[i], self.guidance.get(i))
            self._ready.append(item)
            if self.on_release is not None:
                self.on_release(item)
            self._next_release += 1
            # Bounded memory: a frame is needed only as context for the next segment.
            for old in [k for k in self.poses if k < i - 2 * self.n]:
                for table in (self.frames, self.guidance, self.poses, self.times):
                    table.pop(old, None)

    def _generate(self, wave: Wave) -> np.ndarray:
        poses, times = self.poses, self.times
        targets, images, motions = [], [], []
        for request in wave:
            index, a, b = request.absolute(self.n)
            b = b if b is not None and b >= 0 else None
            targets.append(index)
            context_b = self.frames[b] if b is not None else np.zeros_like(self.frames[a])
            images.append(np.concatenate([self.frames[a], context_b], 0))
            motions.append(
                motion_vector(
                    poses[index],
                    poses[a],
                    float(times[index] - times[a]),
                    poses[b] if b is not None else None,
                    float(times[index] - times[b]) if b is not None else 0.0,
                )
            )
        size = images[0].shape[-1]
        guidance = self._guidance(targets, size)
        conditions = [torch.from_numpy(np.stack(images)), guidance]
        if self.geometry:
            began = time.perf_counter()
            warps = self._warps(wave, size)
            self.timings["warp"] += time.perf_counter() - began
            # Anchoring, on the guidance side: where the true start frame lands, the
            # memory's render (a field fitted a few steps per frame, at 4-16 dB against
            # the truth in bench world) has nothing to add and, trusted, does harm;
            # elsewhere it must agree with the warp of the contexts to be used at all.
            seen = (warps[:, RGBD : RGBD + 1] == ANCHORED).float()
            guidance = guidance * self._agreeing(guidance, warps)[:, None, None, None]
            conditions = [conditions[0], guidance * (1.0 - seen), warps]
        images = torch.cat(conditions, 1)
        device = next(self.model.parameters()).device  # CPU here, CUDA on a GPU machine
        cond = Conditioning(images.to(device), torch.from_numpy(np.stack(motions)).to(device))
        noise = torch.randn((len(targets), RGBD, size, size), generator=self.generator)
        began = time.perf_counter()
        out = sample(self.model, cond, self.steps, noise.to(device)).cpu().numpy()
        self.timings["generate"] += time.perf_counter() - began
        return out

    def _agreeing(self, guidance: torch.Tensor, warps: torch.Tensor) -> torch.Tensor:
        """(B,) 1.0 for a target whose memory render may reach the generator: the field is
        `trusted` and its render agrees with the target's warp (PSNR of their RGB on the
        pixels both cover) by `min_agreement_psnr` or more, or they share no pixel.
        Else 0.0. Counted in `memory_use`."""
        claimed = guidance[:, 4] > 0.5
        rendered = claimed.flatten(1).any(1)
        if self.memory is not None and not self.memory.trusted():
            rendered[:] = False  # the field cannot render its own anchor: trust none of it
        keep = rendered.float()
        threshold = self.memory.config.min_agreement_psnr if self.memory is not None else 0.0
        both = claimed & (warps[:, RGBD] > 0)
        for i in np.flatnonzero(rendered.numpy()):
            if threshold > 0 and both[i].any():
                error = ((guidance[i, :3] - warps[i, :3]) / 2)[:, both[i]].pow(2).mean()
                self.agreement.append(psnr(float(error)))
                keep[i] = float(self.agreement[-1] >= threshold)
        if self.memory is not None:
            self.memory_use["guided"] += int(keep.sum())
            self.memory_use["withheld"] += len(keep) - int(keep.sum())
        return keep

    def _guidance(self, targets: list[int], size: int) -> torch.Tensor:
        """(B, 5, H, W): the memory rendered at the targets (zeros without a field)."""
        began = time.perf_counter()
        guidance = None
        if self.memory is not None:
            guidance = self.memory.guidance(
                np.array([self.poses[i] for i in targets]),
                np.array([self.times[i] for i in targets]),
            )
        if guidance is None:
            guidance = torch.zeros((len(targets), CONDITION_CHANNELS - 2 * RGBD, size, size))
        else:
            self.guidance.update(zip(targets, guidance.numpy(), strict=True))
        self.timings["guidance"] += time.perf_counter() - began
        return guidance

    def _warps(self, wave: Wave, size: int) -> torch.Tensor:
        """(B, 5, H, W): frame 0 and each request's contexts warped into its camera."""
        if not self.use_geometry:
            return torch.zeros((len(wave), GEOMETRY, size, size))
        out = []
        for request in wave:
            index, a, b = request.absolute(self.n)
            contexts = [c for c in (a, b) if c is not None and c > 0]  # frame 0 is the anchor
            generated = [view_of(self.frames[c], self.poses[c]) for c in contexts]
            pose = self.poses[index]
            out.append(anchored_warp(self.anchors, generated, self.intrinsics, pose, size))
        return torch.from_numpy(np.stack(out))

    def _remember(self, wave: Wave, made: np.ndarray) -> None:
        if self.memory is None or self.fit == "none":
            return
        keep = [i for i, r in enumerate(wave) if self.fit == "all" or r.planning]
        if not keep:
            return
        index = [wave[i].absolute(self.n)[0] for i in keep]
        began = time.perf_counter()
        self.memory.add(
            made[keep],
            np.array([self.poses[i] for i in index]),
            np.array([self.times[i] for i in index]),
        )
        self.timings["fit"] += time.perf_counter() - began


@dataclass
class RolloutResult:
    frames: np.ndarray  # (F, 4, H, W) model space; frame 0 is the given start frame
    released_at: np.ndarray  # (F,) seconds from the start at which frame i was released
    order: list[list[int]]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    # (5, H, W) what the memory rendered at frame i when it was generated, if anything
    guidance: dict[int, np.ndarray] = field(default_factory=dict)
    memory_use: dict[str, int] = field(default_factory=dict)  # WorldStream.memory_use

    @property
    def fps(self) -> float:
        return (len(self.frames) - 1) / self.seconds

    @property
    def first_frame_latency(self) -> float:
        return float(self.released_at[1])


def rollout(stream: WorldStream, path: CameraPath) -> RolloutResult:
    """Run a whole camera path through a fresh stream; path length is 1 + k·N frames."""
    n = stream.n
    if (len(path) - 1) % n:
        raise ValueError(f"a path of {len(path)} frames is not 1 + k x {n}")
    frames = np.zeros_like(path.truth)
    released_at = np.full(len(path), np.nan)
    guidance: dict[int, np.ndarray] = {}
    start = time.perf_counter()

    def keep(item: Released) -> None:
        frames[item.index] = item.frame
        released_at[item.index] = time.perf_counter() - start
        if item.guidance is not None:
            guidance[item.index] = item.guidance

    stream.on_release = keep
    stream.start(path.truth[0], path.poses[0], path.times[0])
    for s in range(0, len(path) - 1, n):
        stream.add_segment(path.poses[s + 1 : s + 1 + n], path.times[s + 1 : s + 1 + n])
    stream.flush()
    seconds = time.perf_counter() - start
    timings, use = dict(stream.timings), dict(stream.memory_use)
    return RolloutResult(frames, released_at, stream.order, seconds, timings, guidance, use)
