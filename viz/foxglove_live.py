"""`warmloop view --foxglove ENDPOINT ...`: live topics to the Foxglove app over WebSocket.

A node that subscribes to publishers' topics and serves them with Foxglove's own
WebSocket server (`foxglove-sdk`, the `[record]` extra), as the same companion channels
a recording gets (streams/foxglove_channels.py): camera images, depth, calibration and
camera poses for frames, the reconstruction node's `points` as a `foxglove.PointCloud`,
JSON for the rest. A TriPlanes snapshot also becomes a point cloud on
`/triplanes/points`, sampled at its newest time the way `warmloop view` draws it (for a
source that publishes no `points`). In the Foxglove app: *Open connection* →
*Foxglove WebSocket* → `ws://HOST:PORT` (default ws://127.0.0.1:8765).

It binds to loopback unless told otherwise: the Foxglove WebSocket protocol has no
authentication, so serving beyond this machine exposes every topic to anyone who can
reach the port.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from runtime.node import Node
from streams import Latest, PointCloud, Subscriber, TriPlanes, parse_endpoint
from streams.foxglove_channels import companions, point_cloud_companion

log = logging.getLogger(__name__)

LIVE_TOPICS = (
    "frame",
    "guidance",
    "triplanes",
    "points",
    "observation",
    "action",
    "episode",
    "heartbeat",
)
POINT_RESOLUTION = 40  # grid cells per axis sampled for the reconstruction's point cloud


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
            cloud = triplanes_points(received.message)
            extras.append(point_cloud_companion(f"/{received.topic}/points", cloud, log_time))
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


def triplanes_points(message: TriPlanes) -> PointCloud:
    """The field's dense cells at its newest time, for a source that sends no points."""
    from world.reconstruction.exchange import from_message, point_cloud_message

    return point_cloud_message(from_message(message), message.t_end, POINT_RESOLUTION)
