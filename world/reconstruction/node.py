"""The reconstruction node: Frames in, a live tri-plane field out.

Consumes (connects to --frames):  frame      Frame (RGB-D, intrinsics, pose, scene time);
                                             --topic names another topic (keyframe)
Publishes (binds --publish):      triplanes  TriPlanes snapshot, --publish-hz per second
                                  points     PointCloud with each snapshot: the dense
                                             cells at the newest frame's time, on a grid
                                             of --points-resolution³ (0: none)
                                  heartbeat  updates, frames, updates_per_s, psnr_batch

Each incoming frame becomes a keyframe (the buffer is bounded: memory stays flat
however long the stream runs) followed by --steps-per-frame optimisation steps; while
no frame arrives it keeps optimising over the buffer. Frames that arrive while it is
busy wait in a short queue; when the queue overflows the oldest are dropped (counted),
so the field follows the newest view rather than falling behind.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from runtime.node import Node, NodeType, node_main, require
from streams import Frame, PointCloud, Publisher, Queue, Subscriber, encode, parse_endpoint
from world.reconstruction.exchange import point_cloud_message, to_message
from world.reconstruction.field import EXPLORE_BOUNDS, FieldConfig, TriPlaneField
from world.reconstruction.fit import FitConfig, OnlineFitter

log = logging.getLogger(__name__)


@dataclass
class ReconstructionConfig:
    frames: str = "tcp://127.0.0.1:5570"  # a publisher of Frame messages
    topic: str = "frame"  # the world node publishes the frames to fit as "keyframe"
    publish: str = "tcp://127.0.0.1:5571"
    resolution: int = 64
    channels: int = 16
    time_steps: int = 8
    t_end: float = 30.0  # the time range the deformation planes cover: [0, t_end]
    deform: bool = True
    steps_per_frame: int = 4
    rays_per_step: int = 1024
    samples: int = 32
    frames_per_step: int = 7  # keyframes a step's buffer rays come from (fit.py)
    keyframes: int = 32
    lr_planes: float = 0.03  # the world loop's memory uses 0.1: useful sooner, see memory.py
    publish_hz: float = 1.0
    points_resolution: int = 32  # grid per axis for the PointCloud beside each snapshot
    device: str = "cpu"
    threads: int = 1  # torch threads: one per process when sim, viewer and this share 2 cores
    queue_mb: float = 64.0  # what a subscriber that stops reading may hold queued here
    summary: str = ""

    def __post_init__(self) -> None:
        require(
            [
                (self.publish_hz > 0, f"publish_hz must be positive, got {self.publish_hz}"),
                (self.t_end > 0, f"t_end must be positive, got {self.t_end}"),
                (
                    self.steps_per_frame >= 0,
                    f"steps_per_frame must be >= 0, got {self.steps_per_frame}",
                ),
                (self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
                (self.queue_mb > 0, f"queue_mb must be positive, got {self.queue_mb}"),
                (
                    self.points_resolution == 0 or self.points_resolution >= 2,
                    f"points_resolution must be 0 or >= 2, got {self.points_resolution}",
                ),
            ]
        )


class ReconstructionNode(Node):
    name = "reconstruction"

    def __init__(self, config: ReconstructionConfig):
        super().__init__()
        self.config = config
        self.handlers = {Frame: self._on_frame}
        self._last_publish = 0.0
        self._scene_time = 0.0  # of the newest frame: the time the point cloud shows

    def configure(self) -> None:
        c = self.config
        field_config = FieldConfig(
            resolution=c.resolution, channels=c.channels, time_steps=c.time_steps, deform=c.deform
        )
        self.field = TriPlaneField(field_config, torch.tensor(EXPLORE_BOUNDS), (0.0, c.t_end))
        self.field.to(c.device)
        fit = FitConfig(
            rays_per_step=c.rays_per_step,
            samples=c.samples,
            frames_per_step=c.frames_per_step,
            keyframes=c.keyframes,
            lr_planes=c.lr_planes,
        )
        self.fitter = OnlineFitter(self.field, fit)
        self.subscriber = Subscriber(parse_endpoint(c.frames, bind=False), {c.topic: Queue(4)})
        snapshot = encode("triplanes", to_message(self.field), seq=0, source="", t_sent=0.0)
        self.publisher = Publisher(
            parse_endpoint(c.publish, bind=True),
            source="reconstruction",
            queue_bytes=int(c.queue_mb * 1e6),
            message_bytes=sum(len(memoryview(f).cast("B")) for f in snapshot),
        )
        self.last_losses: dict[str, float] = {}

    def loop(self) -> None:
        while not self.stopping:
            wait = 0.0 if self.fitter.buffer else 0.1
            received = self.subscriber.recv(self.config.topic, timeout=wait)
            if self.dispatch(received):
                for _ in range(self.config.steps_per_frame):
                    self._update()
            elif self.fitter.buffer:
                self._update()
            self._maybe_publish()
            self.heartbeat()

    def _on_frame(self, frame: Frame) -> None:
        self.fitter.add_frame(
            frame.rgb, frame.depth, frame.intrinsics, frame.pose, frame.scene_time
        )
        self._scene_time = frame.scene_time
        self.counters["frames"] += 1

    def _update(self) -> None:
        self.last_losses = self.fitter.step()
        self.counters["updates"] += 1

    def _maybe_publish(self) -> None:
        now = time.monotonic()
        if self.fitter.steps and now - self._last_publish >= 1.0 / self.config.publish_hz:
            self._last_publish = now
            self.publisher.publish("triplanes", to_message(self.field))
            self.counters["snapshots"] += 1
            if self.config.points_resolution:
                self.publisher.publish("points", self._points())

    def _points(self) -> PointCloud:
        time_s = min(max(self._scene_time, 0.0), self.config.t_end)
        return point_cloud_message(self.field, time_s, self.config.points_resolution)

    def status(self) -> dict[str, float]:
        if not hasattr(self, "fitter") or not self.fitter.step_seconds:
            return {}
        return {
            "updates_per_s": 1.0 / float(np.mean(self.fitter.step_seconds)),
            "keyframes": len(self.fitter.buffer),
            "dropped_frames": self.subscriber.stats.topics[self.config.topic].overflowed
            if self.config.topic in self.subscriber.stats.topics
            else 0,
            **self.last_losses,
        }

    def shutdown(self) -> None:
        self.close("subscriber", "publisher")


NODE_TYPES = {
    "reconstruction": NodeType(
        ReconstructionConfig, binds=frozenset({"publish"}), connects=frozenset({"frames"})
    )
}


def main(argv: list[str] | None = None) -> int:
    return node_main(
        argv,
        "python -m world.reconstruction.node",
        __doc__,
        NODE_TYPES["reconstruction"],
        ReconstructionNode,
    )


if __name__ == "__main__":
    raise SystemExit(main())
