"""`warmloop drive`: drive a world node's camera from the keyboard, over ZeroMQ.

Binds --publish and publishes `controls` (Controls: the keys held now) ten times a
second, so a world node started with `--controls ENDPOINT` follows whenever it joins.

In a terminal: w/s forward/back, a/d left/right, e/q up/down, the arrow keys turn and
tilt; a key stays held until another key is pressed; space lets go; x or Ctrl-C quits.
With stdin from a pipe or file, each line is a key set ("w", "w+left", "idle") held
for --interval seconds, which scripts a drive.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable

from streams import Controls, Publisher, parse_endpoint

REPEAT_PERIOD = 0.1  # seconds between repeats of the held keys
ARROWS = {"A": "up", "B": "down", "C": "right", "D": "left"}
LETTERS = set("wasdqe")


def hold(publisher: Publisher, keys: str, seconds: float) -> None:
    """Publish `keys` as held for `seconds`, repeated for subscribers that join late."""
    message_keys = "" if keys in ("", "idle") else keys
    end = time.monotonic() + seconds
    while True:
        publisher.publish("controls", Controls(keys=message_keys))
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(REPEAT_PERIOD, left))


def drive_lines(publisher: Publisher, lines: Iterable[str], interval: float) -> int:
    """Hold each line's keys for `interval`; the number of lines driven."""
    count = 0
    for line in lines:
        keys = line.strip()
        if not keys or keys.startswith("#"):
            continue
        Controls(keys="" if keys == "idle" else keys)  # raises on a malformed line
        hold(publisher, keys, interval)
        count += 1
    hold(publisher, "", REPEAT_PERIOD)  # let go at the end
    return count


def read_key(stream) -> str | None:
    """One key press from a cbreak terminal: a KEYMAP name, "" to let go, None to quit."""
    char = stream.read(1)
    if char in ("x", "\x03", ""):
        return None
    if char == " ":
        return ""
    if char == "\x1b" and stream.read(1) == "[":
        return ARROWS.get(stream.read(1), "")
    return char if char in LETTERS else ""


def drive_terminal(publisher: Publisher) -> int:
    import termios
    import threading
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    held, done = [""], threading.Event()

    def repeat() -> None:
        while not done.is_set():
            publisher.publish("controls", Controls(keys=held[0]))
            done.wait(REPEAT_PERIOD)

    sys.stderr.write("drive: w/a/s/d move, e/q up/down, arrows turn, space stops, x quits\n")
    repeater = threading.Thread(target=repeat, daemon=True)
    try:
        tty.setcbreak(fd)
        repeater.start()
        while (key := read_key(sys.stdin)) is not None:
            held[0] = key
    finally:
        done.set()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--publish", default="tcp://127.0.0.1:5573", help="endpoint to bind")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds per scripted line")


def main_from_args(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        sys.stderr.write("warmloop drive: --interval must be positive\n")
        return 2
    publisher = Publisher(parse_endpoint(args.publish, bind=True), source="drive")
    try:
        if sys.stdin.isatty():
            return drive_terminal(publisher)
        try:
            count = drive_lines(publisher, sys.stdin, args.interval)
        except ValueError as exc:
            sys.stderr.write(f"warmloop drive: {exc}\n")
            return 2
        sys.stderr.write(f"drive: {count} key sets sent\n")
        return 0
    finally:
        publisher.close()
