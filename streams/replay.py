"""`warmloop replay FILE`: republish a recording with its original timing, or at full speed."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import zmq

from streams.errors import DecodeError, InsecureEndpointError
from streams.pubsub import Publisher
from streams.recording import TopicSummary, is_truncated, read_recording, summarize
from streams.sockets import Endpoint, parse_endpoint

log = logging.getLogger(__name__)


def replay(
    path: Path, publisher: Publisher, *, speed: float = 1.0, topics: list[str] | None = None
) -> int:
    """Send each recorded message unchanged; speed 0 means as fast as possible."""
    if speed < 0:
        raise ValueError(f"speed must be >= 0, got {speed}")
    start_wall = time.monotonic()
    start_log: int | None = None
    sent = 0
    for recorded in read_recording(path, topics):
        recorded.decode()  # validate before it goes back on the wire
        if start_log is None:
            start_log = recorded.log_time_ns
        if speed > 0:
            due = start_wall + (recorded.log_time_ns - start_log) / 1e9 / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        publisher.send_frames(recorded.frames)
        sent += 1
    return sent


def describe(topic: str, s: TopicSummary) -> str:
    """One line of `--info`: counts, time span and every loss the recording proves."""
    span = (s.last_ns - s.first_ns) / 1e9
    text = (
        f"{topic}: {s.messages} messages over {span:.2f} s; lost {s.lost}: {s.gaps} between "
        f"messages, {s.lost_at_start} before the first, {s.lost_at_end} after the last"
    )
    if s.unknown_end:
        text += f" (after the last unknown for {s.unknown_end} source(s): no heartbeat said)"
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        type=Path,
        nargs="+",
        help="MCAP files written by the recorder; several (run.mcap run.1.mcap: a restarted "
        "recorder's) are one recording, in the order given",
    )
    parser.add_argument(
        "--endpoint",
        default="tcp://127.0.0.1:5599",
        help="where to publish (bound; default %(default)s)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="1 = original timing, 2 = twice as fast, 0 = as fast as possible",
    )
    parser.add_argument(
        "--topic", action="append", dest="topics", help="replay only this topic (repeatable)"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.5,
        help="seconds to wait for subscribers to connect before sending",
    )
    parser.add_argument(
        "--info", action="store_true", help="print per-topic counts and seq gaps, send nothing"
    )
    parser.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow binding a non-loopback address without CURVE",
    )


def main_from_args(args: argparse.Namespace) -> int:
    for path in args.files:
        if not path.is_file():
            sys.stderr.write(f"warmloop replay: {path}: no such file\n")
            return 2
    try:
        if args.info:
            for path in args.files:
                if is_truncated(path):
                    sys.stdout.write(f"{path}: cut short (never closed): complete chunks read\n")
            for topic, s in summarize(args.files).items():
                sys.stdout.write(describe(topic, s) + "\n")
            return 0
    except DecodeError as exc:
        sys.stderr.write(f"warmloop replay: {exc}\n")
        return 1
    try:
        parsed = parse_endpoint(args.endpoint, bind=True)
        endpoint = Endpoint(parsed.address, True, parsed.curve, args.allow_insecure)
        with Publisher(endpoint, source="replay") as publisher:
            time.sleep(args.wait)  # ZeroMQ subscribers miss what is sent before they join
            sent = sum(
                replay(path, publisher, speed=args.speed, topics=args.topics) for path in args.files
            )
    except DecodeError as exc:
        sys.stderr.write(f"warmloop replay: {exc}\n")
        return 1
    except (ValueError, InsecureEndpointError, zmq.ZMQError, OSError) as exc:
        sys.stderr.write(f"warmloop replay: --endpoint {args.endpoint}: {exc}\n")
        return 2
    names = " ".join(str(p) for p in args.files)
    sys.stdout.write(f"replayed {sent} messages from {names} on {args.endpoint}\n")
    return 0
