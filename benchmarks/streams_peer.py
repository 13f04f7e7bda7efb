"""The far end of `warmloop bench streams`, run as its own process.

It connects a SUB to the benchmark's ping endpoint and a PUB to its pong endpoint and
serves four topics: `ping` (echo back as `pong`), `blast` (count, per run id), `report`
(send the run's count and the time between its first and last blast as `stats`; asking
twice is harmless, so a report lost to a full queue is simply asked again) and `stop`.
The `warmloop` flavour uses Publisher/Subscriber; the `bare` flavour uses raw pyzmq
multipart, which is the baseline every figure is compared with. Both read a ping the way
a receiver would (bare: unpack the header, view the buffer with np.frombuffer) and send
the pong as a new message, so each hop of a round trip is one send and one receive.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

from streams.messages import Heartbeat
from streams.pubsub import Publisher, Queue, Subscriber
from streams.security import CurveClient
from streams.sockets import Endpoint, OwnedSocket

TOPICS = ("ping", "blast", "report", "stop")


class _Counter:
    """Counts the blasts of the current run; a new run id starts a new count."""

    def __init__(self) -> None:
        self.run, self.count, self.first, self.last = -1, 0, 0.0, 0.0

    def tick(self, run: int) -> None:
        now = time.perf_counter()
        if run != self.run:
            self.run, self.count, self.first = run, 0, now
        self.count, self.last = self.count + 1, now

    def report(self) -> dict[str, float]:
        return {"run": self.run, "count": self.count, "seconds": self.last - self.first}


def run_warmloop(ping: Endpoint, pong: Endpoint) -> None:
    subscriber = Subscriber(
        ping, {"ping": Queue(16), "blast": Queue(4096), "report": Queue(4), "stop": Queue(1)}
    )
    publisher = Publisher(pong, source="bench-peer")
    counter = _Counter()
    try:
        while True:
            received = subscriber.recv(timeout=30.0)
            if received is None or received.topic == "stop":
                return
            if received.topic == "ping":
                publisher.publish("pong", received.message)
            elif received.topic == "blast":
                counter.tick(received.message.step)
            else:
                publisher.publish("stats", Heartbeat(node="bench-peer", counters=counter.report()))
    finally:
        subscriber.close()
        publisher.close()


def _read_bare(frames: list[zmq.Frame]) -> tuple[dict, np.ndarray]:
    header = msgpack.unpackb(frames[1].bytes)
    return header, np.frombuffer(frames[2].buffer, header["dtype"]).reshape(header["shape"])


def run_bare(ping: Endpoint, pong: Endpoint) -> None:
    sub = OwnedSocket(zmq.SUB, [ping])
    for topic in TOPICS:
        sub.socket.setsockopt_string(zmq.SUBSCRIBE, topic)
    pub = OwnedSocket(zmq.PUB, [pong])
    counter = _Counter()
    try:
        while sub.socket.poll(30_000):
            frames = sub.socket.recv_multipart(copy=False)
            topic = frames[0].bytes
            if topic == b"stop":
                return
            if topic == b"ping":  # read it as any receiver would, then send it back
                header, array = _read_bare(frames)
                pong = [b"pong", msgpack.packb(header), array.data]
                pub.socket.send_multipart(pong, copy=False)
            elif topic.startswith(b"blast"):  # b"blast:RUN"
                _read_bare(frames)
                counter.tick(int(topic[6:]))
            else:
                pub.socket.send_multipart([b"stats", json.dumps(counter.report()).encode()])
    finally:
        sub.close()
        pub.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streams_peer")
    parser.add_argument("flavour", choices=["warmloop", "bare"])
    parser.add_argument("ping")
    parser.add_argument("pong")
    parser.add_argument("--curve-secret", type=Path, help="this peer's secret key file")
    parser.add_argument("--curve-server", type=Path, help="the server's public key file")
    args = parser.parse_args(argv)
    curve = CurveClient(args.curve_secret, args.curve_server) if args.curve_secret else None
    ping = Endpoint(args.ping, bind=False, curve=curve)
    pong = Endpoint(args.pong, bind=False, curve=curve)
    (run_warmloop if args.flavour == "warmloop" else run_bare)(ping, pong)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
