"""Record topics to MCAP files and read them back.

Each MCAP message holds one warmloop message exactly as it crossed the wire: a msgpack
array of the frames after the topic (header, then buffers). The topic is the MCAP
channel. log_time is the receive time as wall-clock UTC nanoseconds (what MCAP tools
expect); publish_time the sender's t_sent (its monotonic clock), so a replay can
reproduce the original timing; the sender's own seq and monotonic capture time stay in
the message. `sequence` counts per channel from 1. Chunks are zstd-compressed and
written out at least every `flush_s` seconds (default 0.5) or 1 MiB, whichever comes
first, so a recorder killed with SIGKILL loses well under a second; the cut
file is read back chunk by chunk. Foxglove opens the files; a reader in any language
decodes them with docs/protocol.md. With `foxglove=True` each message also gets
Foxglove-native companion channels (images, calibration, transforms, JSON for plots:
streams/foxglove_channels.py), which warmloop's readers skip.
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
from mcap.exceptions import McapError
from mcap.reader import NonSeekingReader, make_reader
from mcap.writer import Writer

from streams.codec import DEFAULT_MAX_MESSAGE_BYTES, Received, decode
from streams.errors import DecodeError
from streams.foxglove_channels import COMPANION_ENCODINGS
from streams.messages import Heartbeat
from streams.pubsub import Queue, Subscriber
from streams.sockets import Endpoint

log = logging.getLogger(__name__)

MESSAGE_ENCODING = "warmloop-multipart"
MCAP_MAGIC = b"\x89MCAP0\r\n"  # the 8 bytes every MCAP file starts with
PROFILE = "warmloop"


def _ns(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


def wall_clock_offset_ns() -> int:
    """Wall-clock UTC minus monotonic time, in ns, read once: adding one fixed offset keeps
    log times in receive order (reading both clocks per message would jitter them)."""
    return time.time_ns() - time.monotonic_ns()


# Seconds of data a recorder may hold before writing a chunk out: half the 1 s a kill -9
# may cost, so that delivery delays on a loaded machine fit within it.
FLUSH_S = 0.5


class McapWriter:
    """Appends received messages to an MCAP file; `close()` leaves it readable.

    A chunk goes to disk when it reaches 1 MiB or when `flush_s` seconds passed since the
    last one (checked on each write and on `flush_if_due()`, which an idle recorder
    calls), so what a crash can lose is bounded in time as well as in bytes."""

    def __init__(self, path: Path, flush_s: float = FLUSH_S, foxglove: bool = False):
        self.path = Path(path)
        self.foxglove = foxglove  # also write Foxglove-native companions (foxglove_channels)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._writer = Writer(self._stream)
        self._writer.start(profile=PROFILE, library="warmloop")
        self._channels: dict[str, int] = {}
        self._schemas: dict[str, int] = {}
        self._sequence: dict[int, int] = {}
        self._wall_offset_ns = wall_clock_offset_ns()
        self.written = 0
        self.companion_errors = 0
        self.flush_s = flush_s
        self._pending = 0  # messages written since the last flush
        self._flushed_at = time.monotonic()
        self._closed = False

    def _channel(
        self,
        topic: str,
        schema: str,
        encoding: str = MESSAGE_ENCODING,
        schema_encoding: str = "",
        schema_data: bytes = b"",
    ) -> int:
        if topic not in self._channels:
            if schema not in self._schemas:
                self._schemas[schema] = (
                    self._writer.register_schema(
                        name=schema, encoding=schema_encoding, data=schema_data
                    )
                    if schema or schema_data
                    else 0  # schemaless JSON: MCAP's schema id 0
                )
            self._channels[topic] = self._writer.register_channel(
                topic=topic, message_encoding=encoding, schema_id=self._schemas[schema]
            )
        return self._channels[topic]

    def _add(self, channel: int, log_time: int, publish_time: int, data: bytes) -> None:
        self._sequence[channel] = self._sequence.get(channel, 0) + 1
        self._writer.add_message(
            channel_id=channel,
            log_time=log_time,
            publish_time=publish_time,
            data=data,
            sequence=self._sequence[channel] & 0xFFFFFFFF,
        )

    def write(self, received: Received) -> None:
        message = received.message
        payload = msgpack.packb(
            [bytes(memoryview(getattr(f, "buffer", f))) for f in received.frames[1:]],
            use_bin_type=True,
        )
        log_time = max(0, self._wall_offset_ns + _ns(received.t_received))
        publish_time = _ns(message.stamp.t_sent if message.stamp else 0.0)
        self._add(self._channel(received.topic, message.SCHEMA), log_time, publish_time, payload)
        if self.foxglove:
            self._write_companions(received, log_time, publish_time)
        self.written += 1
        self._pending += 1
        self.flush_if_due()

    def _write_companions(self, received: Received, log_time: int, publish_time: int) -> None:
        """Foxglove-native companions, best effort: the lossless record is already
        written, so a message they cannot show (say, a NaN counter JSON cannot hold) is
        counted in `companion_errors` and never costs the recording."""
        from streams.foxglove_channels import companions

        try:
            extras = companions(received.topic, received.message, log_time)
        except (ValueError, TypeError, OverflowError) as exc:
            self.companion_errors += 1
            if self.companion_errors <= 10:
                log.warning("no Foxglove companion for %s: %s", received.topic, exc)
            return
        for extra in extras:
            channel = self._channel(
                extra.topic,
                extra.schema_name,
                extra.message_encoding,
                extra.schema_encoding,
                extra.schema_data,
            )
            self._add(channel, log_time, publish_time, extra.data)

    def flush_if_due(self) -> None:
        """Write the chunk in progress out when it holds `flush_s` seconds of data."""
        if self._pending and time.monotonic() - self._flushed_at >= self.flush_s:
            self._writer.flush()
            self._pending = 0
            self._flushed_at = time.monotonic()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.finish()
        self._stream.close()


@dataclass
class RecordedMessage:
    topic: str
    log_time_ns: int
    frames: list[bytes] = field(repr=False)

    def decode(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Received:
        return decode(self.frames, max_bytes=max_bytes, t_received=self.log_time_ns / 1e9)


def read_recording(path: Path, topics: Iterable[str] | None = None) -> Iterator[RecordedMessage]:
    """Messages of an MCAP recording in log-time order, as raw frames (topic first).

    A file cut short (a recorder killed before it closed the file: no summary section)
    is read front to back instead, and yields every message of its complete chunks, in
    the order written; `is_truncated` tells which case a file is.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recording {path} not found")
    truncated = is_truncated(path)
    with open(path, "rb") as stream:
        try:
            if truncated:
                yield from _read_truncated(path, stream, topics)
            else:
                yield from _read_stream(path, stream, topics)
        except McapError as exc:
            raise DecodeError(f"{path}: not a readable MCAP file: {exc}") from None


def is_truncated(path: Path) -> bool:
    """True for an MCAP file that starts well but has no summary (it was never closed);
    DecodeError for a file that is not MCAP at all."""
    with open(path, "rb") as stream:
        start = stream.read(8)
        if not start:  # killed before its first write reached the disk
            return True
        if start != MCAP_MAGIC:
            raise DecodeError(f"{path}: not a readable MCAP file: no MCAP magic")
        stream.seek(0)
        try:
            return make_reader(stream).get_summary() is None
        except (McapError, OSError, ValueError, struct.error):
            return True


def _read_truncated(
    path: Path, stream: BinaryIO, topics: Iterable[str] | None
) -> Iterator[RecordedMessage]:
    """The complete records of a cut file, front to back, until the cut."""
    if not stream.read(1):
        return  # an empty file: nothing was written
    stream.seek(0)
    reader = NonSeekingReader(stream, validate_crcs=True)
    # In the order written: log-time order would read the whole file first, and a cut
    # file's end raises before a single message came out.
    messages = reader.iter_messages(
        topics=None if topics is None else list(topics), log_time_order=False
    )
    while True:
        try:
            _schema, channel, message = next(messages)
        except StopIteration:
            return
        except (McapError, EOFError, ValueError, struct.error, zstd_error()):
            log.info("%s: cut short; every complete chunk before the cut was read", path)
            return
        if not _companion(channel):
            yield _recorded(path, channel, message)


def _read_stream(
    path: Path, stream: BinaryIO, topics: Iterable[str] | None
) -> Iterator[RecordedMessage]:
    reader = make_reader(stream)
    wanted = None if topics is None else list(topics)
    for _schema, channel, message in reader.iter_messages(topics=wanted, log_time_order=True):
        if not _companion(channel):
            yield _recorded(path, channel, message)


def _companion(channel) -> bool:
    """A Foxglove-native companion channel (streams/foxglove_channels.py): for Foxglove's
    panels, not a warmloop message."""
    return channel.message_encoding in COMPANION_ENCODINGS


def _recorded(path: Path, channel, message) -> RecordedMessage:
    if channel.message_encoding != MESSAGE_ENCODING:
        raise DecodeError(
            f"{path}: channel {channel.topic!r} has encoding "
            f"{channel.message_encoding!r}, not {MESSAGE_ENCODING!r}"
        )
    try:
        parts = msgpack.unpackb(message.data, raw=False)
    except Exception as exc:  # msgpack raises several types on garbage
        raise DecodeError(f"{path}: unreadable message payload: {exc}") from None
    if not isinstance(parts, list) or not all(isinstance(p, bytes) for p in parts):
        raise DecodeError(f"{path}: message payload is not a list of frames")
    return RecordedMessage(channel.topic, message.log_time, [channel.topic.encode(), *parts])


def zstd_error() -> type[Exception]:
    """The exception zstd raises on a cut frame (the mcap package's own dependency)."""
    try:
        import zstandard

        return zstandard.ZstdError
    except ImportError:  # chunks written without compression
        return McapError


@dataclass
class TopicSummary:
    messages: int = 0
    gaps: int = 0  # holes in seq between recorded messages
    first_ns: int = 0
    last_ns: int = 0
    lost_at_start: int = 0  # before each source's first recorded message (seq starts at 0)
    lost_at_end: int = 0  # after its last one, by the source's newest heartbeat's count
    unknown_end: int = 0  # sources that sent no heartbeat after their last message here

    @property
    def lost(self) -> int:
        return self.gaps + self.lost_at_start + self.lost_at_end


def summarize(paths: Path | Iterable[Path]) -> dict[str, TopicSummary]:
    """Per topic: messages, and every loss the recording can prove.

    Within a source's messages, a hole in seq is a loss. Before the first, a seq above 0
    means messages went out before the recording began (a recorder restarted late).
    After the last, the source's heartbeats say how many it published on the topic
    (`published.TOPIC`); the newest one recorded bounds what was lost at the end.
    Several files (run.mcap, then the restarted recorder's run.1.mcap) count as one
    recording, in the order given.
    """
    paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    summary: dict[str, TopicSummary] = {}
    first_seq: dict[tuple[str, str], int] = {}
    last_seq: dict[tuple[str, str], int] = {}
    published: dict[tuple[str, str], int] = {}
    for recorded in (r for path in paths for r in read_recording(path)):
        message = recorded.decode().message
        stamp = message.stamp
        topic = summary.setdefault(recorded.topic, TopicSummary(first_ns=recorded.log_time_ns))
        topic.messages += 1
        topic.last_ns = recorded.log_time_ns
        key = (recorded.topic, stamp.source)
        if key in last_seq and stamp.seq > last_seq[key] + 1:
            topic.gaps += stamp.seq - last_seq[key] - 1
        first_seq.setdefault(key, stamp.seq)
        last_seq[key] = stamp.seq
        if isinstance(message, Heartbeat):
            for name, value in message.counters.items():
                if name.startswith("published."):
                    published[(name.removeprefix("published."), stamp.source)] = int(value)
    for (name, source), seq in first_seq.items():
        topic = summary[name]
        topic.lost_at_start += seq
        sent = published.get((name, source))
        if sent is None:
            topic.unknown_end += 1
        else:
            topic.lost_at_end += max(0, sent - (last_seq[(name, source)] + 1))
    return summary


class Recorder:
    """Subscribes to topics and writes every message to MCAP until stopped."""

    def __init__(
        self, path: Path, endpoints: list[Endpoint | str], topics: list[str], *, depth: int = 10_000
    ):
        self.writer = McapWriter(path)
        self.subscriber = Subscriber(endpoints, {t: Queue(depth) for t in topics})
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Record until stop(); drain what already arrived; close. Returns messages written."""
        try:
            while not self._stop.is_set():
                received = self.subscriber.recv(timeout=0.05)
                if received is None:
                    self.writer.flush_if_due()  # a quiet stream still reaches the disk
                    continue
                self.writer.write(received)
                if self.writer.written == 1:  # a sign of life for whoever waits on us
                    log.info("first message: %r", received.topic)
            while (received := self.subscriber.recv(timeout=0.0)) is not None:
                self.writer.write(received)
        finally:
            self.subscriber.close()
            self.writer.close()
        return self.writer.written


def record_until_signal(path: Path, endpoints: list[str], topics: list[str]) -> int:
    """Record until SIGINT or SIGTERM, then close the file readable."""
    recorder = Recorder(path, endpoints, topics)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: closing %s", signum, path)
        recorder.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info("recording %s from %s into %s (pid %d)", topics, endpoints, path, os.getpid())
    written = recorder.run()
    log.info("wrote %d messages to %s", written, path)
    return written


def main(argv: list[str] | None = None) -> int:
    """`python -m streams.recording OUT.mcap --connect EP --topic T ...` (the recorder node)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m streams.recording")
    parser.add_argument("out", type=Path)
    parser.add_argument("--connect", action="append", required=True, help="publisher endpoint")
    parser.add_argument("--topic", action="append", required=True, help="topic to record")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    record_until_signal(args.out, args.connect, args.topic)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
