"""The recorder node: every message of the chosen topics from the chosen publishers, to MCAP.

Connects to each --connect endpoint (a node's publisher), writes what arrives with
streams.recording.McapWriter, and on SIGINT/SIGTERM drains what already arrived and
closes the file readable. It publishes its own heartbeats (messages written) when given
--publish. Read a recording with `warmloop replay FILE --info`.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from runtime.node import Node, run_node
from streams import Publisher, Queue, Subscriber, parse_endpoint
from streams.recording import McapWriter

log = logging.getLogger(__name__)


@dataclass
class RecorderConfig:
    out: Path
    connect: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    publish: str = ""  # bound, for heartbeats; empty: none
    depth: int = 10_000
    summary: str = ""

    def __post_init__(self) -> None:
        if not self.connect or not self.topics:
            raise ValueError("a recorder needs at least one --connect and one --topic")


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
            )
            for spec in self.config.connect
        ]
        self.writer = McapWriter(Path(self.config.out))
        if self.config.publish:
            self.publisher = Publisher(
                parse_endpoint(self.config.publish, bind=True), source="recorder"
            )

    def loop(self) -> None:
        while not self.stopping:
            if not self._drain():
                time.sleep(0.005)  # the subscribers' keeper threads buffer meanwhile
            self.heartbeat()
        self._drain()

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
        return True

    def shutdown(self) -> None:
        for subscriber in getattr(self, "subscribers", []):
            subscriber.close()
        self.close("writer", "publisher")
        log.info("recorder: %d messages in %s", self.counters["written"], self.config.out)

    def status(self) -> dict[str, float]:
        return {
            "decode_errors": sum(s.stats.decode_errors for s in getattr(self, "subscribers", []))
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.recorder_node", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="the MCAP file to write")
    parser.add_argument("--connect", action="append", default=[], help="a publisher endpoint")
    parser.add_argument("--topics", action="append", default=[], help="a topic to record")
    parser.add_argument("--publish", default="", help="bind here for heartbeats")
    parser.add_argument("--summary", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = RecorderConfig(**vars(args))
    except ValueError as exc:
        log.error("recorder: %s", exc)
        return 2
    return run_node(RecorderNode(config), Path(args.summary) if args.summary else None)


if __name__ == "__main__":
    raise SystemExit(main())
