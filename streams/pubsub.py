"""Publish/subscribe with per-topic QoS.

ZMQ_CONFLATE would give "latest only" but breaks multipart messages, and a PUB socket
whose queue is full drops the *newest* messages, the opposite of what a controller
wants. So a Subscriber drains its socket into per-topic buffers that keep either the
newest message (`Latest`) or a bounded queue (`Queue(depth)`):

- inside `recv()` the caller's thread drains and waits on the socket itself, so a
  message costs no thread hand-off on the latency path;
- once the caller has been away from `recv()` for a keeper period, a keeper thread
  drains every few milliseconds, so nothing piles up inside ZeroMQ and memory stays
  bounded.

One lock guards the socket, so only one thread touches it at a time.

Each publisher numbers its messages per topic: 0, 1, 2, ... A subscriber counts a gap in
that sequence as messages lost on the way, so drops are measured, not guessed.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import count

import zmq

from streams.codec import DEFAULT_MAX_MESSAGE_BYTES, Received, decode, encode
from streams.errors import DecodeError
from streams.logs import ThrottledLog
from streams.messages import Message
from streams.sockets import Endpoint, OwnedSocket, SocketUser

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Latest:
    """Keep only the newest message of the topic."""

    depth = 1

    def __str__(self) -> str:
        return "latest"


@dataclass(frozen=True)
class Queue:
    """Keep up to `depth` messages, dropping the oldest when full."""

    depth: int

    def __post_init__(self) -> None:
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"Queue.depth must be a positive integer, got {self.depth!r}")

    def __str__(self) -> str:
        return f"queue({self.depth})"


QoS = Latest | Queue
_QUEUE = re.compile(r"^queue\((\d+)\)$")


def parse_qos(text: str) -> QoS:
    """'latest' or 'queue(N)', as written in launch graphs."""
    text = text.strip()
    if text == "latest":
        return Latest()
    match = _QUEUE.match(text)
    if match:
        return Queue(int(match.group(1)))
    raise ValueError(f"QoS must be 'latest' or 'queue(N)', got {text!r}")


def hwm_for(queue_bytes: int, message_bytes: int, most: int = 1000) -> int:
    """Messages of `message_bytes` that fit in `queue_bytes`: at least 2, at most `most`."""
    return max(2, min(most, queue_bytes // max(1, message_bytes)))


class Publisher(SocketUser):
    """Sends typed messages; stamps seq (per topic), source and t_sent."""

    def __init__(
        self,
        endpoint: Endpoint | str,
        *,
        source: str,
        context: zmq.Context | None = None,
        send_hwm: int = 1000,
        queue_bytes: int | None = None,
        message_bytes: int | None = None,
    ):
        """`send_hwm` messages are queued per subscriber that does not keep up, then
        newer ones are dropped for it (it counts them as seq gaps). With `queue_bytes`
        and the size of the largest message this publisher sends, the queue is bounded in
        bytes instead: a stuck subscriber then costs at most `queue_bytes`. (ZeroMQ counts
        its queue in messages, per subscriber and for all topics together, and fixes it
        when the socket binds: hence the size up front.)"""
        if isinstance(endpoint, str):
            endpoint = Endpoint(endpoint, bind=True)
        if queue_bytes is not None:
            send_hwm = hwm_for(queue_bytes, message_bytes or 1, send_hwm)
        self.source = source
        self.send_hwm = send_hwm
        self._owned = OwnedSocket(zmq.PUB, [endpoint], context, {zmq.SNDHWM: send_hwm})
        self._seq: dict[str, count] = {}
        self._published: dict[str, int] = {}

    @property
    def address(self) -> str:
        return self._owned.last_endpoint()

    def publish(self, topic: str, message: Message) -> int:
        """Send `message` on `topic`; return its seq."""
        counter = self._seq.get(topic)
        if counter is None:
            counter = self._seq[topic] = count()
        seq = next(counter)
        frames = encode(
            topic,
            message,
            seq=seq,
            source=self.source,
            t_sent=time.monotonic(),
        )
        self._owned.socket.send_multipart(frames, copy=False)
        self._published[topic] = seq + 1
        return seq

    @property
    def published(self) -> dict[str, int]:
        """Messages published per topic so far (seq runs 0 .. published - 1)."""
        return dict(self._published)

    def send_frames(self, frames: list) -> None:
        """Send already-encoded frames unchanged (replay of a recording)."""
        self._owned.socket.send_multipart(frames, copy=False)


@dataclass
class TopicStats:
    """What happened to one topic's messages at this subscriber."""

    received: int = 0  # decoded and accepted
    gaps: int = 0  # lost before they reached us (holes in seq)
    superseded: int = 0  # replaced by a newer message under Latest
    overflowed: int = 0  # pushed out of a full Queue
    restarts: int = 0  # a source's seq went backwards: the publisher restarted

    @property
    def dropped(self) -> int:
        return self.gaps + self.superseded + self.overflowed


@dataclass
class SubscriberStats:
    decode_errors: int = 0
    topics: dict[str, TopicStats] = field(default_factory=dict)


def _size(received: Received) -> int:
    """Bytes a received message holds: its frames as they arrived."""
    return sum(len(frame) for frame in received.frames)


class Subscriber(SocketUser):
    """Receives typed messages on chosen topics, each with its own QoS."""

    def __init__(
        self,
        endpoints: Endpoint | str | Iterable[Endpoint | str],
        topics: Mapping[str, QoS],
        *,
        context: zmq.Context | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_buffered_bytes: int | None = None,
    ):
        """With `max_buffered_bytes`, the messages buffered across topics stay under that
        many bytes: the oldest is dropped (counted as `overflowed`) to make room.

        `max_message_bytes` is checked by the decoder, after ZeroMQ received the message:
        ZMQ_MAXMSGSIZE would refuse it before allocating, but libzmq then cuts the
        connection to that publisher for good (a protocol error is never reconnected), so
        one oversized frame would silence a legitimate stream. The request/reply server,
        whose peers reconnect themselves, sets it."""
        if not topics:
            raise ValueError("subscribe to at least one topic")
        if isinstance(endpoints, Endpoint | str):
            endpoints = [endpoints]
        resolved = [Endpoint(e, bind=False) if isinstance(e, str) else e for e in endpoints]
        # No ZMQ_MAXMSGSIZE here, on purpose (see above): the decoder refuses the frame.
        self._owned = OwnedSocket(zmq.SUB, resolved, context)
        self._byte_budget = max_buffered_bytes
        self.buffered_bytes = 0
        for topic in topics:
            self._owned.socket.setsockopt_string(zmq.SUBSCRIBE, topic)
        self._qos = dict(topics)
        self._max_bytes = max_message_bytes
        self._warnings = ThrottledLog(log)  # counters stay exact; the log stays short
        self._buffers: dict[str, deque[tuple[int, Received]]] = {t: deque() for t in topics}
        self._last_seq: dict[tuple[str, str], int] = {}
        self._arrivals = count()
        self.stats = SubscriberStats(topics={t: TopicStats() for t in topics})
        self._lock = threading.Lock()
        self._callers = 0
        self._left_recv = 0.0  # monotonic time the caller last left recv()
        self._stop = threading.Event()
        self._keeper = threading.Thread(
            target=self._keep_draining, name="warmloop-sub", daemon=True
        )
        self._keeper.start()

    # The keeper moves at most DRAIN_BATCH messages per KEEPER_PERIOD (51,200 msg/s), far
    # above a robot's streams; past that, ZeroMQ's own high-water marks apply.
    KEEPER_PERIOD = 0.005  # seconds
    DRAIN_BATCH = 256  # messages moved per drain

    @property
    def address(self) -> str:
        return self._owned.last_endpoint()

    def recv(self, topic: str | None = None, timeout: float | None = None) -> Received | None:
        """The next message (of `topic`, or of any topic in arrival order); None on timeout."""
        if topic is not None and topic not in self._buffers:
            raise KeyError(f"not subscribed to topic {topic!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        self._callers += 1  # tells the keeper to stand aside (see _keep_draining)
        with self._lock:
            self._callers -= 1
            try:
                return self._recv_locked(topic, deadline)
            finally:
                self._left_recv = time.monotonic()

    def _recv_locked(self, topic: str | None, deadline: float | None) -> Received | None:
        socket = self._owned.socket
        ready = False  # poll said a message is waiting: no need to ask EVENTS again
        while True:
            # A queued message is served as it is; a Latest topic first takes in
            # whatever arrived, so that it returns the newest. After a poll nothing for
            # `topic` is buffered (we hold the lock): only a drain can serve it.
            if ready or not self._queued(topic):
                self._drain(ready=ready)
            item = self._pop(topic)
            if item is not None:
                return item
            remaining = 0.1 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return None
            wait_ms = max(1, int(min(remaining, 0.1) * 1000))
            ready = bool(zmq.zmq_poll([(socket, zmq.POLLIN)], wait_ms))

    # _queued and _pop run for every message: plain loops, no generators or lambdas.
    def _queued(self, topic: str | None) -> bool:
        if topic is not None:
            return bool(self._buffers[topic]) and type(self._qos[topic]) is Queue
        for name, buffer in self._buffers.items():
            if buffer and type(self._qos[name]) is Queue:
                return True
        return False

    def _pop(self, topic: str | None) -> Received | None:
        if topic is not None:
            buffer = self._buffers[topic]
            return self._take(buffer) if buffer else None
        oldest = None  # the buffer whose head arrived first
        for buffer in self._buffers.values():
            if buffer and (oldest is None or buffer[0][0] < oldest[0][0]):
                oldest = buffer
        return None if oldest is None else self._take(oldest)

    def _take(self, buffer: deque) -> Received:
        received = buffer.popleft()[1]
        if self._byte_budget is not None:
            self.buffered_bytes -= _size(received)
        return received

    def _keep_draining(self) -> None:
        # The keeper never spins: it holds the GIL while it decodes, and a busy keeper
        # would stall the caller's own work (its control loop, its publishing).
        while not self._stop.wait(self.KEEPER_PERIOD):
            # A caller inside recv() drains the socket itself; one waiting for the lock
            # goes first; one that called within the period is consuming, and a batch
            # drained behind its back would only hold frames alive and take the GIL.
            idle = time.monotonic() - self._left_recv > self.KEEPER_PERIOD
            if idle and self._callers == 0 and self._lock.acquire(blocking=False):
                try:
                    self._drain()
                finally:
                    self._lock.release()

    def _drain(self, ready: bool = False) -> bool:
        """Move what ZeroMQ holds into the topic buffers; True if more may be waiting.

        `ready`: a poll just said a message is waiting. Call with the lock held.
        """
        socket = self._owned.socket
        if socket.closed:
            return False
        # Asking EVENTS is cheaper than letting recv raise zmq.Again on an empty socket.
        # The batch bound keeps a flood from holding the caller here forever.
        for _ in range(self.DRAIN_BATCH):
            if not ready and not socket.get(zmq.EVENTS) & zmq.POLLIN:
                return False
            ready = False
            self._accept(socket.recv_multipart(copy=False))
        return True

    def _accept(self, frames: list) -> None:
        try:
            received = decode(frames, max_bytes=self._max_bytes, t_received=time.monotonic())
        except DecodeError as exc:
            self.stats.decode_errors += 1
            self._warnings.warning(
                "malformed", "dropped a malformed message (%d so far): %s",
                self.stats.decode_errors, exc,
            )  # fmt: skip
            return
        if received.topic not in self._buffers:
            return  # ZeroMQ subscriptions match prefixes; we want exact topics
        topic_stats = self.stats.topics[received.topic]
        self._count_sequence(received, topic_stats)
        topic_stats.received += 1
        buffer = self._buffers[received.topic]
        if len(buffer) >= self._qos[received.topic].depth:
            self._take(buffer)
            if isinstance(self._qos[received.topic], Latest):
                topic_stats.superseded += 1
            else:
                topic_stats.overflowed += 1
        buffer.append((next(self._arrivals), received))
        if self._byte_budget is not None:
            self.buffered_bytes += _size(received)
            self._keep_within_budget()

    def _keep_within_budget(self) -> None:
        """Drop the oldest buffered messages, of any topic, until under the byte budget;
        the newest one stays, whatever its size."""
        while self.buffered_bytes > self._byte_budget:
            waiting = [(b[0][0], t) for t, b in self._buffers.items() if b]
            if sum(len(b) for b in self._buffers.values()) <= 1:
                return
            name = min(waiting)[1]
            self._take(self._buffers[name])
            self.stats.topics[name].overflowed += 1

    def _count_sequence(self, received: Received, topic_stats: TopicStats) -> None:
        stamp = received.message.stamp
        key = (received.topic, stamp.source)
        last = self._last_seq.get(key)
        if last is not None:
            if stamp.seq > last + 1:
                topic_stats.gaps += stamp.seq - last - 1
            elif stamp.seq <= last:
                topic_stats.restarts += 1
        self._last_seq[key] = stamp.seq

    def close(self) -> None:
        self._stop.set()
        self._keeper.join(timeout=2.0)
        with self._lock:
            self._owned.close()
