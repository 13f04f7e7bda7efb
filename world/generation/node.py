"""The world node: generate → reconstruct → guide, continuously, over ZeroMQ.

Publishes (binds --publish):  frame       every generated Frame, in stream order
                              keyframe    the frames to fit (planning frames, or all)
                              guidance    the memory's render at each generated pose
                              heartbeat   frames, fps, first-frame latency, timings
Consumes (connects --memory): triplanes   TriPlanes snapshots of a reconstruction node
                                          that fits our `keyframe` topic
                              heartbeat   its first tells --memory-wait-s it is up

Consumes (connects --controls, when it is an endpoint):
                              controls    Controls: the keys a user holds (warmloop drive)

--memory "" keeps the memory in this process instead (fitting here, slower), and
--memory none runs without memory. --controls is a camera trajectory (loop, orbit,
random_walk), a key script such as "w*8,left*4,w+d*8" (keys of sim/tasks/explore.py
KEYMAP, `+` for keys held together, `*N` for N frames), or the endpoint of a Controls
publisher such as `warmloop drive`: the camera then moves with the keys held live.
The Explore simulator turns controls into camera poses and gives the start frame;
every later frame is generated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.node import Node, NodeType, node_main, require
from runtime.video import ImageSink
from sim import trajectories
from sim.envs import make_env
from sim.tasks.explore import keys_to_action
from streams import (
    Controls,
    Frame,
    Latest,
    Publisher,
    Queue,
    Subscriber,
    TriPlanes,
    parse_endpoint,
)
from training.checkpoint import CheckpointError
from world.generation import checkpoint as generator_checkpoint
from world.generation.generator import from_model, to_model
from world.generation.memory import FieldMemory, LocalMemory, MemoryConfig
from world.generation.rollout import Released, WorldStream
from world.reconstruction.exchange import from_message


@dataclass
class WorldNodeConfig:
    checkpoint: str = "checkpoints/explore-student"
    publish: str = "tcp://127.0.0.1:5572"
    memory: str = ""  # a TriPlanes publisher; "" = fit in this process; "none" = no memory
    # Seconds to hold the start frame until the memory node is heard from (0: don't).
    memory_wait_s: float = 0.0
    controls: str = "loop"
    segments: int = 8  # 0 = until stopped
    frames_per_segment: int = 8
    schedule: str = "mmpl"
    fit: str = "planning"
    sampling_steps: int = 0  # 0 = the checkpoint's own
    guidance_size: int = 32
    max_fps: float = 0.0  # pace the stream for a display; 0 = as fast as it generates
    device: str = "cpu"  # the generator's; the memory renders on the CPU
    seed: int = 0
    video: str = ""  # MP4: generated frame beside the memory's render
    threads: int = 1
    summary: str = ""

    def __post_init__(self) -> None:
        require(
            [
                (self.segments >= 0, f"segments must be >= 0, got {self.segments}"),
                (
                    self.frames_per_segment >= 1,
                    f"frames_per_segment must be >= 1, got {self.frames_per_segment}",
                ),
                (self.max_fps >= 0, f"max_fps must be >= 0, got {self.max_fps}"),
                (
                    self.memory_wait_s >= 0,
                    f"memory_wait_s must be >= 0, got {self.memory_wait_s}",
                ),
                (self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
            ]
        )


def parse_controls(text: str, steps: int, seed: int = 0) -> np.ndarray:
    """(steps, 5) camera actions from a trajectory name or a key script (repeated)."""
    if text in trajectories.TRAJECTORIES:
        return trajectories.make(text, np.random.default_rng(seed), steps)
    actions = []
    for token in filter(None, (t.strip() for t in text.split(","))):
        keys, _, count = token.partition("*")
        try:
            repeat = int(count) if count else 1
        except ValueError:
            raise ValueError(f"controls: bad repeat count in {token!r}") from None
        action = keys_to_action([] if keys == "idle" else keys.split("+"))
        actions.extend([action] * repeat)
    if not actions:
        raise ValueError(f"controls {text!r}: neither a trajectory nor a key script")
    return np.array([actions[i % len(actions)] for i in range(steps)], np.float32)


class WorldNode(Node):
    name = "world"

    def __init__(self, config: WorldNodeConfig):
        super().__init__()
        self.config = config
        self.handlers = {TriPlanes: self._on_triplanes, Controls: self._on_controls}
        self.held = np.zeros(5, np.float32)  # live controls: the keys held now

    def configure(self) -> None:
        c = self.config
        try:
            saved = generator_checkpoint.load(Path(c.checkpoint))
        except CheckpointError as exc:
            raise ValueError(str(exc)) from None
        self.model = saved.build(c.device)
        steps = c.sampling_steps or saved.sampling_steps
        self.env = make_env("explore", max_episode_steps=10**9)
        size = saved.config.image_size
        self.env.reset(seed=c.seed)
        start = self.env.unwrapped.render_camera("eye", size, size)
        self.intrinsics = start.intrinsics
        memory_config = MemoryConfig(image_size=size, guidance_size=c.guidance_size)
        self.publisher = Publisher(parse_endpoint(c.publish, bind=True), source="world")
        self.subscriber = None
        if c.memory == "none":
            memory = None
        elif c.memory:
            memory = FieldMemory(self.intrinsics, memory_config)
            self.subscriber = Subscriber(
                parse_endpoint(c.memory, bind=False),
                {"triplanes": Queue(1), "heartbeat": Latest()},
            )
        else:
            memory = LocalMemory(self.intrinsics, memory_config, seed=c.seed)
        if memory is not None:
            memory.on_add = self._publish_keyframes
        self.memory = memory
        self.keys = None
        if "://" in c.controls:
            self.keys = Subscriber(parse_endpoint(c.controls, bind=False), {"controls": Latest()})
            self.controls = None
        else:
            horizon = (c.segments or 1000) * c.frames_per_segment
            self.controls = parse_controls(c.controls, horizon, c.seed)
        self.stream = WorldStream(
            self.model,
            steps,
            c.frames_per_segment,
            memory,
            c.schedule,
            c.fit,
            seed=c.seed,
            on_release=self._publish,
            intrinsics=self.intrinsics,
        )
        self.video = self._open_video()
        if self.subscriber is not None and c.memory_wait_s > 0:
            self._wait_for_memory(c.memory_wait_s)
        self.started = time.perf_counter()
        self.first_frame_s = float("nan")
        self.stream.start(to_model(start.rgb, start.depth), start.pose, self.env.unwrapped.time)

    def _wait_for_memory(self, timeout_s: float) -> None:
        """Hold the start frame until the memory node speaks. It subscribes to our
        keyframes before it publishes anything, so once its heartbeat arrives it will
        see the start frame; a ZeroMQ subscriber that joins late misses what went before,
        and a short run could end before a memory that started slower ever saw a frame."""
        if self.subscriber.recv("heartbeat", timeout=timeout_s) is None:
            self.counters["memory_wait_timeouts"] += 1
            self.warnings.warning(
                "memory_wait",
                "world: no memory node heard within %.0f s; starting without it",
                timeout_s,
            )

    def _open_video(self):
        if not self.config.video:
            return None
        return ImageSink(None, Path(self.config.video), fps=10.0)

    def loop(self) -> None:
        c, segment = self.config, 0
        while not self.stopping and (c.segments == 0 or segment < c.segments):
            self._receive()
            poses, times = self._camera_path(segment)
            self.stream.add_segment(poses, times)
            segment += 1
            self.heartbeat()
        self.stream.flush()

    def _camera_path(self, segment: int) -> tuple[np.ndarray, np.ndarray]:
        n, base = self.config.frames_per_segment, self.env.unwrapped
        poses, times = [], []
        for i in range(n):
            if self.controls is None:
                action = self.held
            else:
                action = self.controls[(segment * n + i) % len(self.controls)]
            self.env.step(action)
            poses.append(base.camera_pose("eye"))
            times.append(base.time)
        return np.array(poses), np.array(times)

    def _receive(self) -> None:
        if self.subscriber is not None:
            while self.dispatch(self.subscriber.recv("triplanes", timeout=0.0)):
                pass
        if self.keys is not None:
            while self.dispatch(self.keys.recv("controls", timeout=0.0)):
                pass

    def _on_controls(self, message: Controls) -> None:
        try:
            self.held = keys_to_action(message.keys.split("+") if message.keys else [])
        except ValueError as exc:
            self.counters["bad_controls"] += 1
            self.warnings.warning("bad_controls", "world: ignoring controls: %s", exc)
            return
        self.counters["controls"] += 1

    def _on_triplanes(self, message: TriPlanes) -> None:
        try:
            self.memory.field = from_message(message)
        except ValueError as exc:
            self.counters["bad_snapshots"] += 1
            self.warnings.warning("bad_snapshots", "world: ignoring a TriPlanes snapshot: %s", exc)
            return
        self.counters["snapshots"] += 1

    def _frame(self, frame: np.ndarray, pose: np.ndarray, time_s: float, camera: str) -> Frame:
        rgb, depth = from_model(frame)
        return Frame(
            rgb=rgb,
            intrinsics=self.intrinsics,
            pose=np.asarray(pose, np.float64),
            depth=depth,
            scene_time=float(time_s),
            camera=camera,
        )

    def _publish(self, item: Released) -> None:
        self.publisher.publish("frame", self._frame(item.frame, item.pose, item.time, "generated"))
        if item.guidance is not None:
            self.publisher.publish(
                "guidance", self._frame(item.guidance[:4], item.pose, item.time, "memory")
            )
        if item.index > 0:
            self.counters["frames"] += 1
            if self.counters["frames"] == 1:
                self.first_frame_s = time.perf_counter() - self.started
        if self.video is not None:
            self.video.write(side_by_side(item))
        if self.config.max_fps > 0:
            due = self.started + item.index / self.config.max_fps
            time.sleep(max(0.0, due - time.perf_counter()))

    def _publish_keyframes(self, frames: np.ndarray, poses: np.ndarray, times: np.ndarray):
        for frame, pose, time_s in zip(frames, poses, times, strict=True):
            self.publisher.publish("keyframe", self._frame(frame, pose, time_s, "generated"))
            self.counters["keyframes"] += 1

    def status(self) -> dict[str, float]:
        if not hasattr(self, "stream") or not self.counters["frames"]:
            return {}
        elapsed = time.perf_counter() - self.started
        return {
            "fps": self.counters["frames"] / elapsed,
            "first_frame_latency_ms": 1000 * self.first_frame_s,
            "held_frames": len(self.stream.frames),
            # What the generator alone could sustain: sampling plus guidance rendering.
            "generation_fps": self.counters["frames"]
            / max(1e-9, self.stream.timings["generate"] + self.stream.timings["guidance"]),
            **{f"{k}_s": v for k, v in self.stream.timings.items()},
            # Targets whose memory render reached the generator, or a trust gate stopped.
            **{f"memory_{k}_targets": v for k, v in self.stream.memory_use.items()},
        }

    def shutdown(self) -> None:
        self.close("subscriber", "keys", "publisher", "video", "env")


def side_by_side(item: Released) -> np.ndarray:
    """Generated RGB | memory RGB (black until the memory has something), 2x upscaled."""
    rgb, _ = from_model(item.frame)
    memory = from_model(item.guidance[:4])[0] if item.guidance is not None else np.zeros_like(rgb)
    image = np.concatenate([rgb, memory], 1)
    return image.repeat(2, 0).repeat(2, 1)


NODE_TYPES = {
    "world": NodeType(WorldNodeConfig, binds=frozenset({"publish"}), connects=frozenset({"memory"}))
}


def main(argv: list[str] | None = None) -> int:
    return node_main(
        argv, "python -m world.generation.node", __doc__, NODE_TYPES["world"], WorldNode
    )


if __name__ == "__main__":
    raise SystemExit(main())
