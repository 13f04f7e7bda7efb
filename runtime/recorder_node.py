"""The recorder node: every message of the chosen topics from the chosen publishers, to MCAP.

Connects to each --connect endpoint (a node's publisher), writes what arrives with
streams.recording.McapWriter, and on SIGINT/SIGTERM drains what already arrived and
closes the file readable. When --out exists already (a restart after a crash), it
writes OUT.1.mcap (then .2, ...) instead: a recording is never truncated. It publishes
its own heartbeats (messages written) when given --publish. Read a recording with
`warmloop replay FILE --info`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from runtime.node import Node, NodeType, node_main
from streams import Publisher, Queue, Subscriber, parse_endpoint
from streams.recording import McapWriter

log = logging.getLogger(__name__)


@dataclass
class RecorderConfig:
    out: Path = field(metadata={"help": "the MCAP file to write"})
    connect: list[str] = field(
        default_factory=list, metadata={"help": "a publisher endpoint (repeat: several)"}
    )
    topics: list[str] = field(
        default_factory=list, metadata={"help": "a topic to record (required; repeat: several)"}
    )
    publish: str = field(default="", metadata={"help": "bind here for heartbeats"})
    depth: int = 10_000  # messages buffered per topic while the writer is busy
    queue_mb: float = 256.0  # bytes buffered across topics: past it the oldest are dropped
    flush_s: float = 0.5  # longest a message waits in memory before its chunk is written
    foxglove: bool = field(
        default=False,
        metadata={"help": "also write Foxglove-native channels (images, calibration, /tf, JSON)"},
    )
    summary: str = ""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if not self.connect or not self.topics:
            raise ValueError(
                "a recorder needs at least one --connect and one --topics, got "
                f"connect={self.connect} topics={self.topics}"
            )
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        if self.queue_mb <= 0 or self.flush_s <= 0:
            raise ValueError(
                f"queue_mb and flush_s must be positive, got {self.queue_mb}, {self.flush_s}"
            )


def fresh_path(path: Path) -> Path:
    """`path` when nothing is there, else the first free PATH.1.mcap, PATH.2.mcap, ...:
    a restarted recorder starts a new file and never truncates what the last one wrote."""
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}.{number}{path.suffix}")
    return candidate


class RecorderNode(Node):
    name = "recorder"

    def __init__(self, config: RecorderConfig):
        super().__init__()
        self.config = config

    def configure(self) -> None:
        # One subscriber per publisher: each may have its own CURVE server key.
        self.subscribers = [
            Subscriber(
                parse_endpoint(spec, bind=False),
                {topic: Queue(self.config.depth) for topic in self.config.topics},
                max_buffered_bytes=int(self.config.queue_mb * 2**20),
            )
            for spec in self.config.connect
        ]
        self.path = fresh_path(Path(self.config.out))
        if self.path != Path(self.config.out):
            log.info(
                "%s exists (a restart never overwrites): recording into %s",
                self.config.out,
                self.path,
            )
        self.writer = McapWriter(
            self.path, flush_s=self.config.flush_s, foxglove=self.config.foxglove
        )
        if self.config.publish:
            self.publisher = Publisher(
                parse_endpoint(self.config.publish, bind=True), source="recorder"
            )

    def loop(self) -> None:
        while not self.stopping:
            if not self._drain():
                self.writer.flush_if_due()  # a quiet stream still reaches the disk
                time.sleep(0.005)  # the subscribers' keeper threads buffer meanwhile
            self._report_drops()
            self.heartbeat()
        self._drain()

    def _report_drops(self) -> None:
        dropped = sum(t.overflowed for s in self.subscribers for t in s.stats.topics.values())
        if dropped > self.counters["dropped"]:
            self.warnings.warning(
                "dropped", "recorder: %d message(s) dropped so far: the writer fell behind "
                "(queue %s MB, depth %d per topic)", dropped, self.config.queue_mb,
                self.config.depth,
            )  # fmt: skip
            self.counters["dropped"] = dropped

    def _drain(self) -> bool:
        wrote = False
        for subscriber in self.subscribers:
            while self._write(subscriber.recv(timeout=0.0)):
                wrote = True
        return wrote

    def _write(self, received) -> bool:
        if received is None:
            return False
        self.writer.write(received)
        self.counters["written"] += 1
        if self.counters["written"] == 1:  # a sign of life for whoever waits on us
            log.info("first message: %r", received.topic)
        return True

    def shutdown(self) -> None:
        for subscriber in getattr(self, "subscribers", []):
            subscriber.close()
        self.close("writer", "publisher")
        log.info("recorder: %d messages in %s", self.counters["written"], getattr(self, "path", ""))

    def status(self) -> dict[str, float]:
        return {
            "decode_errors": sum(s.stats.decode_errors for s in getattr(self, "subscribers", []))
        }


NODE_TYPES = {
    "recorder": NodeType(
        RecorderConfig,
        binds=frozenset({"publish"}),
        connects=frozenset({"connect"}),
        lists=frozenset({"connect", "topics"}),
    )
}


def main(argv: list[str] | None = None) -> int:
    return node_main(
        argv, "python -m runtime.recorder_node", __doc__, NODE_TYPES["recorder"], RecorderNode
    )


if __name__ == "__main__":
    raise SystemExit(main())
