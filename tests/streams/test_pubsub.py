from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from streams import (
    Frame,
    Heartbeat,
    Latest,
    Observation,
    Publisher,
    Queue,
    Subscriber,
    parse_qos,
)
from streams.codec import encode
from tests.streams.helpers import sample_messages, wait_for


def _connected(pub: Publisher, sub: Subscriber, topic: str) -> None:
    """Publish probes until the subscriber hears one: ZeroMQ's slow-joiner problem."""
    for _ in range(200):
        pub.publish(topic, Heartbeat(node="probe"))
        if sub.recv(topic, timeout=0.02) is not None:
            while sub.recv(topic, timeout=0.05) is not None:
                pass
            return
    raise AssertionError("subscriber never connected")


@pytest.fixture(params=["inproc", "ipc", "tcp"])
def endpoint(request, tmp_path) -> str:
    return {
        "inproc": f"inproc://pubsub-{id(request)}",
        "ipc": f"ipc://{tmp_path}/pubsub.ipc",
        "tcp": "tcp://127.0.0.1:*",
    }[request.param]


def test_every_message_type_over_a_real_socket(endpoint) -> None:
    context = zmq.Context.instance() if endpoint.startswith("inproc") else None
    with (
        Publisher(endpoint, source="pub", context=context) as pub,
        Subscriber(pub.address, {"probe": Queue(10), "data": Queue(100)}, context=context) as sub,
    ):
        _connected(pub, sub, "probe")
        sent = sample_messages()
        for message in sent:
            pub.publish("data", message)
        got = [sub.recv("data", timeout=2.0) for _ in sent]
        assert [r.message for r in got] == sent
        assert [r.message.stamp.seq for r in got] == list(range(len(sent)))
        assert all(r.message.stamp.source == "pub" for r in got)


def test_latest_gives_a_slow_subscriber_the_newest_message() -> None:
    with (
        Publisher("tcp://127.0.0.1:*", source="fast") as pub,
        Subscriber(pub.address, {"obs": Latest()}) as sub,
    ):
        _connected(pub, sub, "obs")
        stats = sub.stats.topics["obs"]
        accounted = stats.received + stats.gaps  # every seq is received or a gap
        for round_ in range(3):
            # More messages than ZeroMQ's default high-water mark (1000) while we are busy.
            for step in range(3000):
                pub.publish("obs", Observation(state=np.zeros(3, np.float32), step=step))
            accounted += 3000
            # The slow consumer is busy elsewhere while the keeper thread takes all in.
            assert wait_for(lambda a=accounted: stats.received + stats.gaps >= a)
            newest = sub.recv("obs", timeout=1.0)
            assert newest is not None and newest.message.step == 2999, round_
            assert sub.recv("obs", timeout=0.05) is None  # nothing stale left behind
        stats = sub.stats.topics["obs"]
        assert stats.superseded + stats.gaps >= 3 * 2999 - 10
        assert stats.dropped == stats.superseded + stats.gaps


def test_queue_keeps_a_bounded_queue_and_counts_overflow() -> None:
    with (
        Publisher("tcp://127.0.0.1:*", source="p") as pub,
        Subscriber(pub.address, {"obs": Queue(5)}) as sub,
    ):
        _connected(pub, sub, "obs")
        received = sub.stats.topics["obs"].received
        for step in range(20):
            pub.publish("obs", Observation(state=np.zeros(1, np.float32), step=step))
        assert wait_for(lambda: sub.stats.topics["obs"].received >= received + 20)
        steps = []
        while (r := sub.recv("obs", timeout=0.05)) is not None:
            steps.append(r.message.step)
        assert steps == list(range(15, 20))
        assert sub.stats.topics["obs"].overflowed == 15


def test_seq_gaps_are_counted_as_drops() -> None:
    context = zmq.Context()
    raw = context.socket(zmq.PUB)
    port = raw.bind_to_random_port("tcp://127.0.0.1")
    with Subscriber(f"tcp://127.0.0.1:{port}", {"hb": Queue(100)}) as sub:
        for _ in range(200):  # wait for the subscription to reach the raw publisher
            raw.send_multipart(encode("hb", Heartbeat(node="x"), seq=0, source="s", t_sent=0.0))
            if sub.recv("hb", timeout=0.02):
                break
        while sub.recv("hb", timeout=0.05):
            pass
        stats = sub.stats.topics["hb"]
        received = stats.received
        for seq in (1, 2, 5, 6, 10):
            raw.send_multipart(encode("hb", Heartbeat(node="x"), seq=seq, source="s", t_sent=0.0))
        assert wait_for(lambda: stats.received >= received + 5)
        assert stats.gaps == 2 + 3
        raw.send_multipart(encode("hb", Heartbeat(node="x"), seq=0, source="s", t_sent=0.0))
        assert wait_for(lambda: stats.restarts >= 1)
    raw.close(linger=0)
    context.term()


GOOD = encode("obs", Observation(state=np.ones(2, np.float32)), seq=0, source="s", t_sent=0.0)


@contextlib.contextmanager
def _raw_publisher_and_subscriber():
    """A bare ZeroMQ PUB (it sends whatever bytes it is given) and a subscriber that has
    already received one good message from it."""
    context = zmq.Context()
    raw = context.socket(zmq.PUB)
    port = raw.bind_to_random_port("tcp://127.0.0.1")
    try:
        with Subscriber(f"tcp://127.0.0.1:{port}", {"obs": Queue(10)}) as sub:
            for _ in range(200):
                raw.send_multipart(GOOD)
                if sub.recv("obs", timeout=0.02):
                    break
            yield raw, sub
    finally:
        raw.close(linger=0)
        context.term()


def test_malformed_messages_are_counted_and_the_stream_goes_on() -> None:
    with _raw_publisher_and_subscriber() as (raw, sub):
        errors_before = sub.stats.decode_errors
        raw.send_multipart([b"obs", b"\xc1 not msgpack"])
        raw.send_multipart([b"obs", GOOD[1]])  # declared array frame missing
        raw.send_multipart(GOOD)
        assert sub.recv("obs", timeout=1.0) is not None
        assert sub.stats.decode_errors - errors_before == 2


def test_a_flood_of_malformed_messages_logs_a_few_lines(caplog) -> None:
    with (
        _raw_publisher_and_subscriber() as (raw, sub),
        caplog.at_level(logging.WARNING, logger="streams.pubsub"),
    ):
        for _ in range(500):
            raw.send_multipart([b"obs", b"\xc1 not msgpack"])
        raw.send_multipart(GOOD)
        assert sub.recv("obs", timeout=2.0) is not None
        assert sub.stats.decode_errors == 500  # every one counted
        assert 10 <= len(caplog.messages) <= 12  # the first 10, then a summary a period


def test_an_oversized_message_is_refused_and_the_stream_goes_on(tmp_path) -> None:
    """One frame over the cap must not silence the publisher for good (ZMQ_MAXMSGSIZE on
    a subscriber would: libzmq drops the connection and never reconnects)."""
    with (
        Publisher(f"ipc://{tmp_path}/big", source="s") as pub,
        Subscriber(pub.address, {"obs": Queue(100)}, max_message_bytes=2_000) as sub,
    ):

        def small(step: int) -> None:
            pub.publish("obs", Observation(state=np.zeros(3, np.float32), step=step))

        assert wait_for(lambda: small(0) or sub.recv("obs", timeout=0.02) is not None, 5)
        pub.publish("obs", Observation(state=np.zeros(5_000, np.float32), step=1))  # 20 kB
        steps = []
        for step in range(2, 12):
            small(step)
            while (got := sub.recv("obs", timeout=0.05)) is not None:
                steps.append(got.message.step)
        assert steps[-1] == 11 and 1 not in steps
        assert sub.stats.decode_errors == 1


def test_topics_match_exactly_not_by_prefix() -> None:
    with (
        Publisher("tcp://127.0.0.1:*", source="p") as pub,
        Subscriber(pub.address, {"obs": Queue(10)}) as sub,
    ):
        _connected(pub, sub, "obs")
        pub.publish("obs_extra", Heartbeat(node="x"))
        pub.publish("obs", Heartbeat(node="y"))
        received = sub.recv(timeout=1.0)
        assert received.topic == "obs" and received.message.node == "y"
        assert sub.recv(timeout=0.1) is None


def test_parse_qos() -> None:
    assert parse_qos("latest") == Latest()
    assert parse_qos(" queue(8) ") == Queue(8)
    for bad in ("queue(0)", "queue(x)", "newest", ""):
        with pytest.raises(ValueError):
            parse_qos(bad)


def test_a_byte_budget_bounds_what_a_stuck_subscriber_costs_the_publisher(tmp_path) -> None:
    """A subscriber that stops reading makes the publisher queue for it; bounded in
    bytes, 400 frames of 0.7 MB cost at most the budget, not 280 MB."""

    def rss_mb() -> float:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    address = f"ipc://{tmp_path}/stuck"
    frame_bytes = 320 * 320 * (3 + 4)
    with Publisher(address, source="sim", queue_bytes=16_000_000, message_bytes=frame_bytes) as pub:
        assert pub.send_hwm == 16_000_000 // frame_bytes
        context = zmq.Context()
        stuck = context.socket(zmq.SUB)  # connected, subscribed, never reads
        stuck.setsockopt(zmq.RCVHWM, 1)
        stuck.setsockopt(zmq.SUBSCRIBE, b"")
        stuck.connect(address)
        time.sleep(0.3)
        before = rss_mb()
        for step in range(400):  # every frame its own buffers, as a camera's would be
            frame = Frame(
                rgb=np.full((320, 320, 3), step % 255, np.uint8),
                depth=np.full((320, 320), step, np.float32),
                intrinsics=np.eye(3),
                pose=np.eye(4),
            )
            pub.publish("frame", frame)
        grown = rss_mb() - before
        stuck.close(linger=0)
        context.term()
    assert grown < 16 + 40, grown  # the budget, and slack for the allocator and sockets


def test_a_byte_budget_bounds_what_a_subscriber_buffers() -> None:
    image = np.zeros((300, 1000), np.uint8)  # ~0.3 MB each
    with (
        Publisher("tcp://127.0.0.1:*", source="p") as pub,
        Subscriber(pub.address, {"obs": Queue(1000)}, max_buffered_bytes=1_000_000) as sub,
    ):
        _connected(pub, sub, "obs")
        received = sub.stats.topics["obs"].received
        for step in range(20):
            pub.publish("obs", Observation(state=np.zeros(1, np.float32), images={"c": image},
                                           step=step))  # fmt: skip
        assert wait_for(lambda: sub.stats.topics["obs"].received >= received + 20)
        assert sub.buffered_bytes <= 1_000_000
        steps = []
        while (r := sub.recv("obs", timeout=0.05)) is not None:
            steps.append(r.message.step)
        assert steps == list(range(17, 20))  # the newest three fit
        assert sub.stats.topics["obs"].overflowed == 17
        assert sub.buffered_bytes == 0
