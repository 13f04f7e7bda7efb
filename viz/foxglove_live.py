"""`warmloop view --foxglove ENDPOINT ...`: live topics to the Foxglove app over WebSocket.

A node that subscribes to publishers' topics and serves them with Foxglove's own
WebSocket server (`foxglove-sdk`, the `[record]` extra), as the same companion channels
a recording gets (streams/foxglove_channels.py): camera images, depth, calibration and
camera poses for frames, JSON for the rest; and the 4D reconstruction (TriPlanes) as a
`foxglove.PointCloud` on `/triplanes/points`, sampled at its newest time the way
`warmloop view` draws it (a recorder does not evaluate fields, so recordings have no
point cloud). In the Foxglove app: *Open connection* →
*Foxglove WebSocket* → `ws://HOST:PORT` (default ws://127.0.0.1:8765).

It binds to loopback unless told otherwise: the Foxglove WebSocket protocol has no
authentication, so serving beyond this machine exposes every topic to anyone who can
reach the port.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from runtime.node import Node
from streams import Latest, Subscriber, TriPlanes, parse_endpoint
from streams.foxglove_channels import (
    WORLD_FRAME,
    Companion,
    companions,
    foxglove_stamp,
    protobuf_companion,
)

log = logging.getLogger(__name__)

LIVE_TOPICS = (
    "frame",
    "guidance",
    "triplanes",
    "observation",
    "action",
    "episode",
    "heartbeat",
)
POINT_RESOLUTION = 40  # grid cells per axis sampled for the reconstruction's point cloud
# x, y, z as float32, then red, green, blue, alpha as uint8: 16 bytes a point.
POINT_DTYPE = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1"), ("a", "u1")]
)


@dataclass
class FoxgloveLiveConfig:
    sources: list[str]
    topics: tuple[str, ...] = LIVE_TOPICS
    host: str = "127.0.0.1"
    port: int = 8765  # Foxglove's default; 0 picks a free port


class FoxgloveLive(Node):
    name = "foxglove"

    def __init__(self, config: FoxgloveLiveConfig):
        super().__init__()
        self.config = config
        self.channels: dict[str, object] = {}
        self.port: int | None = None

    def configure(self) -> None:
        import foxglove

        self._foxglove = foxglove
        self.server = foxglove.start_server(
            name="warmloop", host=self.config.host, port=self.config.port
        )
        self.port = self.server.port
        log.info("Foxglove WebSocket on ws://%s:%d", self.config.host, self.port)
        self.subscribers = [
            Subscriber(parse_endpoint(s, bind=False), {t: Latest() for t in self.config.topics})
            for s in self.config.sources
        ]

    def loop(self) -> None:
        while not self.stopping:
            served = 0
            for subscriber in self.subscribers:
                for topic in self.config.topics:
                    received = subscriber.recv(topic, timeout=0)
                    if received is not None:
                        self.serve(received)
                        served += 1
            if not served:
                time.sleep(0.005)
            self.heartbeat()

    def serve(self, received) -> None:
        """Log one received message's companions on the live channels."""
        log_time = time.time_ns()
        extras = companions(received.topic, received.message, log_time)
        if isinstance(received.message, TriPlanes):
            extras.append(point_cloud_companion(received.topic, received.message, log_time))
        for extra in extras:
            self._channel(extra).log(extra.data, log_time=log_time)
        self.counters["served"] += 1

    def _channel(self, extra):
        channel = self.channels.get(extra.topic)
        if channel is None:
            schema = (
                self._foxglove.Schema(
                    name=extra.schema_name, encoding=extra.schema_encoding, data=extra.schema_data
                )
                if extra.schema_data
                else None
            )
            channel = self._foxglove.Channel(
                extra.topic, schema=schema, message_encoding=extra.message_encoding
            )
            self.channels[extra.topic] = channel
        return channel

    def shutdown(self) -> None:
        if hasattr(self, "server"):
            self.server.stop()
        for subscriber in getattr(self, "subscribers", []):
            subscriber.close()


def point_cloud_companion(topic: str, message: TriPlanes, log_time_ns: int) -> Companion:
    """The field's dense cells at its newest time, coloured, as a foxglove.PointCloud."""
    from foxglove import messages as fox

    from world.reconstruction.exchange import from_message, point_cloud

    points, colours = point_cloud(from_message(message), message.t_end, POINT_RESOLUTION, None)
    packed = np.zeros(len(points), POINT_DTYPE)
    for axis, name in enumerate("xyz"):
        packed[name] = points[:, axis]
    for channel, name in enumerate("rgb"):
        packed[name] = np.clip(colours[:, channel] * 255, 0, 255).astype(np.uint8)
    packed["a"] = 255
    kinds = fox.PackedElementFieldNumericType
    names = {"r": "red", "g": "green", "b": "blue", "a": "alpha"}
    fields = [
        fox.PackedElementField(
            name=names.get(name, name),
            offset=POINT_DTYPE.fields[name][1],
            type=kinds.Float32 if name in "xyz" else kinds.Uint8,
        )
        for name in POINT_DTYPE.names
    ]
    cloud = fox.PointCloud(
        timestamp=foxglove_stamp(log_time_ns),
        frame_id=WORLD_FRAME,
        pose=fox.Pose(
            position=fox.Vector3(x=0, y=0, z=0), orientation=fox.Quaternion(x=0, y=0, z=0, w=1)
        ),
        point_stride=POINT_DTYPE.itemsize,
        fields=fields,
        data=packed.tobytes(),
    )
    return protobuf_companion(f"/{topic}/points", cloud)
