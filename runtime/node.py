"""The node base: lifecycle, signals, heartbeats, typed handlers and a run summary.

A node's life is `configure()` (open sockets, load models), `loop()` until `stop()` or
its work is done, then `shutdown()` (always, also after an error). SIGINT and SIGTERM
ask it to stop; it finishes the current step and closes cleanly.

Messages reach handlers by their type, never by string dispatch:

    self.handlers = {ActionChunk: self.on_chunk}
    self.dispatch(received)   # unknown types are counted ("unhandled"), not raised

Rule of the graph: every node binds its own publisher; subscribers connect. So any
node, a recorder too, can listen to any other, and a restarted node is found again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams import Heartbeat, Message, Publisher, Received

log = logging.getLogger(__name__)
HEARTBEAT_PERIOD = 1.0  # seconds


class Node:
    name = "node"

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.handlers: dict[type[Message], Callable[[Any], None]] = {}
        self.publisher: Publisher | None = None  # heartbeats go here when set
        self._stop = threading.Event()
        self._last_heartbeat = -HEARTBEAT_PERIOD

    # ---- lifecycle -----------------------------------------------------------------
    def configure(self) -> None:
        """Open sockets and load what the node needs. Errors here end the node early."""

    def loop(self) -> None:
        """The node's work; return when `stopping` or when done."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Close sockets and files. Runs after loop(), also after an error."""

    def close(self, *names: str) -> None:
        """Close the named attributes that exist (configure may have stopped half-way)."""
        for name in names:
            resource = getattr(self, name, None)
            if resource is not None:
                resource.close()

    def status(self) -> dict[str, float]:
        """Figures for heartbeats and the summary, besides the counters."""
        return {}

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ---- messages --------------------------------------------------------------------
    def dispatch(self, received: Received | None) -> bool:
        """Call the handler for the message's type; False when there is none."""
        if received is None:
            return False
        handler = self.handlers.get(type(received.message))
        if handler is None:
            self.counters["unhandled"] += 1
            return False
        handler(received.message)
        return True

    def heartbeat(self, state: str = "running", force: bool = False) -> None:
        now = time.monotonic()
        if self.publisher is None or (not force and now - self._last_heartbeat < HEARTBEAT_PERIOD):
            return
        self._last_heartbeat = now
        figures = {**self.counters, **self.status()}
        self.publisher.publish(
            "heartbeat", Heartbeat(node=self.name, state=state, counters=figures)
        )

    def summary(self) -> dict[str, Any]:
        return {"node": self.name, "counters": dict(self.counters), **self.status()}


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One --flag per field of a config dataclass; booleans as --flag / --no-flag."""
    for item in dataclasses.fields(config_class):
        flag = "--" + item.name.replace("_", "-")
        if item.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=item.default)
        else:
            kind = {"int": int, "float": float}.get(str(item.type), str)
            parser.add_argument(flag, type=kind, default=item.default)


def run_node(node: Node, summary_path: Path | None = None) -> int:
    """Configure, loop and shut down `node`, stopping on SIGINT/SIGTERM. Exit code."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: node.stop())
    try:
        node.configure()
    except (ValueError, OSError) as exc:  # bad parameters, files, endpoints
        log.error("%s: cannot start: %s", node.name, exc)
        node.shutdown()
        return 2
    try:
        node.loop()
        node.heartbeat(state="stopped", force=True)
    finally:
        node.shutdown()
        if summary_path is not None:
            write_summary(summary_path, node.summary())
    log.info("%s: stopped (%s)", node.name, dict(node.counters))
    return 0


def config_node_main(
    argv: list[str] | None,
    prog: str,
    doc: str | None,
    config_class: type,
    make_node: Callable[[Any], Node],
    threads: bool = True,
) -> int:
    """`python -m MODULE` for a node built from a config dataclass: flags, checks, run.

    With `threads`, the config's `threads` field sets torch's thread count: one per
    process when several nodes share a 2-core machine.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser, config_class)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = config_class(**vars(args))
        if threads:
            import torch

            torch.set_num_threads(max(1, config.threads))
    except ValueError as exc:
        log.error("%s: %s", prog, exc)
        return 2
    summary = getattr(config, "summary", "")
    return run_node(make_node(config), Path(summary) if summary else None)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    tmp.replace(path)
