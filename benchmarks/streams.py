"""`warmloop bench streams`: warmloop streams against bare pyzmq, in the same run.

For each transport (tcp loopback, ipc) a peer process of each flavour echoes pings and
counts blasts (see benchmarks/streams_peer.py). One-way latency is half the round trip;
warmloop and bare blocks alternate so that machine noise hits both alike. Throughput is
the rate at which the peer receives a burst. CURVE runs are reported separately.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np
import zmq

from benchmarks.harness import BenchResult
from streams.codec import decode, encode
from streams.messages import Heartbeat, Observation
from streams.pubsub import Publisher, Queue, Subscriber
from streams.security import CurveServer, generate_keys
from streams.sockets import Endpoint, OwnedSocket


def _payloads() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "64b": rng.normal(size=16).astype(np.float32),
        "rgb": rng.integers(0, 255, (480, 640, 3), dtype=np.uint8),
        "depth": rng.uniform(0.2, 5.0, (480, 640)).astype(np.float32),
    }


def _observation(name: str, array: np.ndarray) -> Observation:
    if name == "64b":
        return Observation(state=array)
    return Observation(state=np.zeros(0, np.float32), images={name: array})


class _Side:
    """The benchmark's end of one peer: binds ping (PUB) and pong (SUB), spawns the peer."""

    flavour = ""

    def __init__(self, ping: str, pong: str, curve: dict | None):
        server = curve["server"] if curve else None
        self.ping_endpoint = Endpoint(ping, bind=True, curve=server)
        self.pong_endpoint = Endpoint(pong, bind=True, curve=server)
        self.run = 0
        self._open()
        args = [
            sys.executable,
            "-m",
            "benchmarks.streams_peer",
            self.flavour,
            self._ping_address(),
            self._pong_address(),
        ]
        if curve:
            args += ["--curve-secret", str(curve["secret"]), "--curve-server", str(curve["public"])]
        self.process = subprocess.Popen(args)
        self._handshake()

    def _handshake(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.round_trip("ping", _observation("64b", np.zeros(16, np.float32)), 0.05):
                while self.receive_pong(0.1):  # late answers to earlier pings
                    pass
                return
        raise RuntimeError(f"{self.flavour} peer did not answer")

    def latency_us(self, message: Observation, samples: int) -> list[float]:
        out = []
        for _ in range(samples):
            start = time.perf_counter()
            if not self.round_trip("ping", message, 2.0):
                raise RuntimeError("lost a ping")
            out.append((time.perf_counter() - start) / 2 * 1e6)
        return out

    def throughput(self, message: Observation, count: int) -> tuple[float, int]:
        """Blast `count` messages; the peer's receive rate and how many it received."""
        self.run += 1
        for _ in range(count):
            self.blast(self.run, message)
        for _ in range(60):  # a report can be dropped by a full PUB queue: ask again
            stats = self.report(timeout=1.0)
            if stats is not None and stats["run"] == self.run:
                return (stats["count"] - 1) / max(stats["seconds"], 1e-9), int(stats["count"])
        raise RuntimeError(f"{self.flavour} peer never reported run {self.run}")

    def stop(self) -> None:
        self.send("stop", _observation("64b", np.zeros(16, np.float32)))
        self.process.wait(timeout=10)
        self._close()


class _WarmloopSide(_Side):
    flavour = "warmloop"

    def _open(self) -> None:
        self.pub = Publisher(self.ping_endpoint, source="bench")
        self.sub = Subscriber(self.pong_endpoint, {"pong": Queue(16), "stats": Queue(4)})

    def _ping_address(self) -> str:
        return self.pub.address

    def _pong_address(self) -> str:
        return self.sub.address

    def send(self, topic: str, message: Observation) -> None:
        self.pub.publish(topic, message)

    def round_trip(self, topic: str, message: Observation, timeout: float) -> bool:
        self.pub.publish(topic, message)
        return self.receive_pong(timeout)

    def receive_pong(self, timeout: float) -> bool:
        return self.sub.recv("pong", timeout=timeout) is not None

    def blast(self, run: int, message: Observation) -> None:
        message.step = run  # the run id travels in the message itself
        self.pub.publish("blast", message)

    def report(self, timeout: float) -> dict | None:
        self.send("report", _observation("64b", np.zeros(16, np.float32)))
        received = self.sub.recv("stats", timeout=timeout)
        if received is None or not isinstance(received.message, Heartbeat):
            return None
        return received.message.counters

    def _close(self) -> None:
        self.pub.close()
        self.sub.close()


class _BareSide(_Side):
    """Raw multipart: topic, a prebuilt header, the buffer; np.frombuffer on receipt."""

    flavour = "bare"

    def _open(self) -> None:
        self.pub = OwnedSocket(zmq.PUB, [self.ping_endpoint])
        self.sub = OwnedSocket(zmq.SUB, [self.pong_endpoint])
        for topic in (b"pong", b"stats"):
            self.sub.socket.setsockopt(zmq.SUBSCRIBE, topic)

    def _ping_address(self) -> str:
        return self.pub.last_endpoint()

    def _pong_address(self) -> str:
        return self.sub.last_endpoint()

    @staticmethod
    def _frames(topic: str, message: Observation) -> list:
        array = message.state if not message.images else next(iter(message.images.values()))
        header = msgpack.packb({"dtype": array.dtype.str, "shape": list(array.shape)})
        return [topic.encode(), header, array.data]

    def send(self, topic: str, message: Observation) -> None:
        self.pub.socket.send_multipart(self._frames(topic, message), copy=False)

    def round_trip(self, topic: str, message: Observation, timeout: float) -> bool:
        self.send(topic, message)
        return self.receive_pong(timeout)

    def receive_pong(self, timeout: float) -> bool:
        if not self.sub.socket.poll(int(timeout * 1000)):
            return False
        frames = self.sub.socket.recv_multipart(copy=False)
        header = msgpack.unpackb(frames[1].bytes)
        np.frombuffer(frames[2].buffer, dtype=header["dtype"]).reshape(header["shape"])
        return True

    def blast(self, run: int, message: Observation) -> None:
        self.send(f"blast:{run}", message)

    def report(self, timeout: float) -> dict | None:
        self.send("report", _observation("64b", np.zeros(16, np.float32)))
        if not self.sub.socket.poll(int(timeout * 1000)):
            return None
        return json.loads(self.sub.socket.recv_multipart()[1])

    def _close(self) -> None:
        self.pub.close()
        self.sub.close()


@dataclass
class _Plan:
    latency_samples: dict[str, int]
    blast_counts: dict[str, int]
    rounds: int
    overhead_repeats: int  # encode + decode rounds per in-process timing block


def _endpoints(transport: str, tmp: Path, tag: str) -> tuple[str, str]:
    if transport == "tcp":
        return "tcp://127.0.0.1:*", "tcp://127.0.0.1:*"
    return f"ipc://{tmp}/{tag}-ping", f"ipc://{tmp}/{tag}-pong"


def _measure(
    sides: dict[str, _Side],
    payloads: dict[str, np.ndarray],
    plan: _Plan,
    suffix: str,
    figures: dict,
    with_throughput: bool = True,
) -> None:
    for name, array in payloads.items():
        message = _observation(name, array)
        blocks: dict[str, list[list[float]]] = {f: [] for f in sides}
        for _ in range(plan.rounds):  # alternate blocks so that noise hits both flavours
            for flavour, side in sides.items():
                blocks[flavour].append(side.latency_us(message, plan.latency_samples[name]))
        key = f"{name}_{suffix}"
        for flavour, values in blocks.items():
            prefix = "" if flavour == "warmloop" else "bare_"
            pooled = np.concatenate(values)
            figures[f"{prefix}latency_p50_us_{key}"] = float(np.percentile(pooled, 50))
            figures[f"{prefix}latency_p99_us_{key}"] = float(np.percentile(pooled, 99))
        # Median over pairs of a warmloop block's p50 / the bare block's right after it.
        figures[f"latency_ratio_{key}"] = float(
            np.median([np.median(w) / np.median(b) for w, b in zip(*blocks.values(), strict=True)])
        )
        if not with_throughput:
            continue
        rates: dict[str, list[float]] = {f: [] for f in sides}
        for _ in range(plan.rounds):
            for flavour, side in sides.items():
                rates[flavour].append(side.throughput(message, plan.blast_counts[name])[0])
        for flavour, values in rates.items():
            prefix = "" if flavour == "warmloop" else "bare_"
            figures[f"{prefix}throughput_msgs_per_s_{key}"] = float(np.median(values))
        # Each warmloop block against the bare block run right after it: the machine's
        # slow drifts (other tenants, memory bandwidth) cancel within a pair.
        pairs = np.array(rates["warmloop"]) / np.array(rates["bare"])
        figures[f"throughput_ratio_{key}"] = float(np.median(pairs))


def _timed_us(action, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        action()
    return (time.perf_counter() - start) / repeats * 1e6


def _overhead(payloads: dict[str, np.ndarray], plan: _Plan, figures: dict) -> None:
    """warmloop's encode + decode against bare's (msgpack header, np.frombuffer), in
    process and interleaved: the Python work per message, without sockets."""
    for name in ("64b", "rgb"):
        warmloop_round, bare_round = _rounds(_observation(name, payloads[name]))
        added = []
        for _ in range(max(7, plan.rounds)):
            ours_us = _timed_us(warmloop_round, plan.overhead_repeats)
            added.append(ours_us - _timed_us(bare_round, plan.overhead_repeats))
        figures[f"overhead_us_p50_{name}"] = float(np.median(added))


def _rounds(message: Observation) -> tuple:
    """One encode + decode of `message` by warmloop, and by the bare baseline."""
    ours = [bytes(f) if i < 2 else f for i, f in enumerate(_encoded(message))]
    array = message.state if not message.images else next(iter(message.images.values()))
    bare_header = msgpack.packb({"dtype": array.dtype.str, "shape": list(array.shape)})

    def warmloop_round() -> None:
        _encoded(message)
        decode(ours)

    def bare_round() -> None:
        _BareSide._frames("obs", message)
        header = msgpack.unpackb(bare_header)
        np.frombuffer(array.data, dtype=header["dtype"]).reshape(header["shape"])

    return warmloop_round, bare_round


def _encoded(message: Observation) -> list:
    return encode("obs", message, seq=1, source="bench", t_sent=0.0)


def _curve_keys(tmp: Path) -> dict:
    public, secret = generate_keys(tmp / "server", "server")
    peer_public, peer_secret = generate_keys(tmp / "peer", "peer")
    allowed = tmp / "allowed"
    allowed.mkdir()
    (allowed / peer_public.name).write_bytes(peer_public.read_bytes())
    return {"server": CurveServer(secret, allowed), "secret": peer_secret, "public": public}


def _run_transport(
    transport: str, payloads: dict, plan: _Plan, tmp: Path, figures: dict, curve: dict | None = None
) -> None:
    suffix = transport + ("_curve" if curve else "")
    sides: dict[str, _Side] = {}
    try:
        for cls in (_WarmloopSide, _BareSide):
            ping, pong = _endpoints(transport, tmp, f"{cls.flavour}-{suffix}")
            sides[cls.flavour] = cls(ping, pong, curve)
        _measure(sides, payloads, plan, suffix, figures, with_throughput=curve is None)
    finally:
        for side in sides.values():
            side.stop()


SIZES = {
    "full": _Plan(
        {"64b": 400, "rgb": 200, "depth": 150},
        {"64b": 50_000, "rgb": 2_000, "depth": 1_000},
        rounds=10,
        overhead_repeats=20_000,
    ),
    "quick": _Plan(
        {"64b": 100, "rgb": 50, "depth": 30},
        {"64b": 10_000, "rgb": 300, "depth": 200},
        rounds=7,
        overhead_repeats=2_000,
    ),
    "smoke": _Plan({"64b": 10, "rgb": 5, "depth": 5}, {"64b": 200, "rgb": 10, "depth": 10}, 1, 200),
}


def run(size: str, checkpoints: Path | None = None) -> BenchResult:
    del checkpoints  # the transport needs no model
    payloads = _payloads()
    plan = SIZES[size]
    figures: dict = {}
    _overhead(payloads, plan, figures)
    with tempfile.TemporaryDirectory(prefix="warmloop-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for transport in ("tcp", "ipc"):
            _run_transport(transport, payloads, plan, tmp, figures)
        _run_transport("tcp", {"rgb": payloads["rgb"]}, plan, tmp, figures, curve=_curve_keys(tmp))
    return BenchResult(figures=figures, table=_table(figures), notes=_notes(plan))


def _table(f: dict) -> list[list[str]]:
    rows = [
        [
            "payload / transport",
            "p50 µs",
            "p99 µs",
            "bare p50 µs",
            "bare p99 µs",
            "latency ratio",
            "msgs/s",
            "bare msgs/s",
            "throughput ratio",
        ]
    ]
    for key in (
        "64b_tcp",
        "rgb_tcp",
        "depth_tcp",
        "64b_ipc",
        "rgb_ipc",
        "depth_ipc",
        "rgb_tcp_curve",
    ):
        tp = f.get(f"throughput_msgs_per_s_{key}")
        rows.append(
            [
                key,
                f"{f[f'latency_p50_us_{key}']:.0f}",
                f"{f[f'latency_p99_us_{key}']:.0f}",
                f"{f[f'bare_latency_p50_us_{key}']:.0f}",
                f"{f[f'bare_latency_p99_us_{key}']:.0f}",
                f"{f[f'latency_ratio_{key}']:.2f}",
                "-" if tp is None else f"{tp:.0f}",
                "-" if tp is None else f"{f[f'bare_throughput_msgs_per_s_{key}']:.0f}",
                "-" if tp is None else f"{f[f'throughput_ratio_{key}']:.2f}",
            ]
        )
    for name in ("64b", "rgb"):
        added = f"added {f[f'overhead_us_p50_{name}']:.1f} µs encode+decode"
        rows.append([f"{name} in process", added, "-", "-", "-", "-", "-", "-", "-"])
    return rows


def _notes(plan: _Plan) -> list[str]:
    return [
        "One-way latency = round trip / 2 between this process and a peer process; "
        f"{plan.rounds} alternating blocks per flavour, samples per block {plan.latency_samples}.",
        "Payloads: 64b = 16 float32 state; rgb = 640×480×3 uint8; depth = 640×480 float32, "
        "each in an Observation message.",
        "Bare = raw pyzmq multipart (topic, prebuilt header, buffer) with np.frombuffer on "
        "receipt; warmloop adds the validated header, per-topic QoS thread and seq tracking.",
        "Throughput = rate at which the peer receives a burst (median of blocks); "
        "throughput ratio = median over rounds of warmloop block / the bare block run "
        "right after it; latency ratio = median over rounds of the same pairs' p50s. "
        "Targets (#17): rgb_tcp latency ratio ≤ 1.10, throughput ratio ≥ 0.95.",
        "In process: warmloop's encode + decode of one Observation minus bare's (msgpack "
        "header, np.frombuffer), median of at least 7 interleaved blocks; target for rgb "
        "≤ 5 µs. The header is decoded and type-checked by msgspec (C); the schema's own "
        "checks (finiteness, ranks, cross-field rules) and building the message stay Python.",
        "rgb_tcp_curve: both flavours encrypted and authenticated with CURVE.",
        "Bare peers read each message as a receiver would (unpack the header, np.frombuffer) "
        "and send the pong as a new message, as the warmloop peers do.",
        "Where warmloop trails bare: its Python work per message (the in-process rows, "
        "measured in a warm loop); inside the ping-pong, right after a process wakes from "
        "poll with cold caches, the same work costs several times more. Small messages at "
        "flood rates are limited by the same decode.",
        "Under an rgb blast both peers spend most of their time waiting in poll (cProfile "
        "of the peer): the receiver keeps up, and the rate is set by the sender and "
        "ZeroMQ's copying threads, which share the 2 cores with warmloop's extra work per "
        "message.",
    ]
