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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams import Heartbeat, Message, Publisher, Received
from streams.logs import ThrottledLog

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
        self.warnings = ThrottledLog(log)

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
        try:
            handler(received.message)
        except Exception as exc:  # one message must never end the node's loop
            kind = type(exc).__name__
            self.counters["handler_errors"] += 1
            self.counters[f"handler_errors.{kind}"] += 1
            self.warnings.warning(
                f"handler error {kind}", "%s: %s while handling %s: %s",
                self.name, kind, received.message.SCHEMA, exc,
            )  # fmt: skip
        return True

    def heartbeat(self, state: str = "running", force: bool = False) -> None:
        now = time.monotonic()
        if self.publisher is None or (not force and now - self._last_heartbeat < HEARTBEAT_PERIOD):
            return
        self._last_heartbeat = now
        # How many messages went out per topic: a recording of this node's topics can
        # then count what it lost after its last message too (`warmloop replay --info`).
        published = {f"published.{t}": n for t, n in self.publisher.published.items()}
        figures = {**self.counters, **self.status(), **published}
        self.publisher.publish(
            "heartbeat", Heartbeat(node=self.name, state=state, counters=figures)
        )

    def summary(self) -> dict[str, Any]:
        return {"node": self.name, "counters": dict(self.counters), **self.status()}


def require(checks: list[tuple[bool, str]]) -> None:
    """A config's checks: ValueError with the message of the first that fails. Every
    message names the field and the value it got."""
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


class ArgumentError(ValueError):
    """A node's command line that its parser refuses (raised instead of exiting)."""


class _CheckingParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ArgumentError(message)


@dataclass(frozen=True)
class NodeType:
    """How a node is configured and wired: its config dataclass and its endpoints.

    The fields of `config` are the node's parameters, both on its command line (one
    --flag per field) and in launch files (runtime/launch_file.py), so the two cannot
    drift apart. A node module lists its types in `NODE_TYPES`.
    """

    config: type  # a dataclass validated in __post_init__
    binds: frozenset[str] = frozenset()  # params that are endpoints this node binds
    connects: frozenset[str] = frozenset()  # params that are endpoints it connects to
    qos: dict[str, str] = field(default_factory=dict)  # param -> topic whose QoS it takes
    fixed: dict[str, str] = field(default_factory=dict)  # params the type sets, not the file
    positional: str = ""  # the param passed without a flag
    lists: frozenset[str] = frozenset()  # params given once per item (--flag a --flag b)

    @property
    def params(self) -> frozenset[str]:
        """What a launch file may set."""
        return frozenset(f.name for f in dataclasses.fields(self.config)) - set(self.fixed)

    @property
    def fixed_argv(self) -> list[str]:
        """The fixed params as flags, ahead of a launch file's."""
        return [item for k, v in self.fixed.items() for item in ("--" + k.replace("_", "-"), v)]

    def add_arguments(self, parser: argparse.ArgumentParser, with_fixed: bool = True) -> None:
        """The node's flags; without the fixed ones for a command that sets them itself
        (`warmloop deploy` is the policy node with the ONNX backend)."""
        skip = frozenset() if with_fixed else frozenset(self.fixed)
        add_config_arguments(parser, self.config, self.positional, self.lists, skip)

    def parse(self, argv: list[str], prog: str = "node") -> Any:
        """The config the node would build from `argv`: ArgumentError or ValueError
        (the config's own checks) where it would refuse to start."""
        parser = _CheckingParser(prog=prog, allow_abbrev=False)
        self.add_arguments(parser)
        return self.config(**vars(parser.parse_args(argv)))


def config_from_args(config_class: type, args: argparse.Namespace) -> Any:
    """The config from a command line's namespace, ignoring the CLI's own keys."""
    names = {item.name for item in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in vars(args).items() if k in names})


def add_config_arguments(
    parser: argparse.ArgumentParser,
    config_class: type,
    positional: str = "",
    lists: frozenset[str] = frozenset(),
    skip: frozenset[str] = frozenset(),
) -> None:
    """One --flag per field of a config dataclass; booleans as --flag / --no-flag; list
    fields repeat the flag; `positional` without a flag; fields without a default are
    required."""
    for item in dataclasses.fields(config_class):
        if item.name in skip:
            continue
        # Annotations are strings here (from __future__ import annotations).
        kind = {"int": int, "float": float}.get(str(item.type).removesuffix(" | None"), str)
        text = item.metadata.get("help")
        if item.name == positional:
            many = "+" if item.name in lists else None
            parser.add_argument(item.name, type=kind, nargs=many, help=text)
            continue
        flag = "--" + item.name.replace("_", "-")
        required = item.default is dataclasses.MISSING and item.name not in lists
        default = None if required else item.default
        if item.name in lists:
            parser.add_argument(flag, action="append", type=kind, default=[], help=text)
        elif item.type in ("bool", bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=text
            )
        else:
            parser.add_argument(flag, type=kind, default=default, required=required, help=text)


def run_from_args(name: str, config_class: type, make_node: Callable[[Any], Node], args) -> int:
    """A warmloop subcommand that runs one node: its config from the parsed command line
    (one line and exit code 2 when the config refuses it), then `run_node`."""
    try:
        config = config_from_args(config_class, args)
    except ValueError as exc:
        log.error("%s: %s", name, exc)
        return 2
    return run_node(make_node(config), Path(config.summary) if config.summary else None)


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


def node_main(
    argv: list[str] | None,
    prog: str,
    doc: str | None,
    node_type: NodeType,
    make_node: Callable[[Any], Node],
) -> int:
    """`python -m MODULE` for a node: flags from its type's config, checks, run.

    A torch node's config (one with `device` and `threads` fields) sets torch's thread
    count, one per process by default (training/threads.py has the rule); torch is
    imported only then. Other nodes set their own (the policy node, for its backend).
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    node_type.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # "no OpenGL_accelerate" noise
    try:
        config = node_type.config(**vars(args))
    except ValueError as exc:
        log.error("%s: %s", prog, exc)
        return 2
    if getattr(config, "device", None) is not None and hasattr(config, "threads"):
        import torch  # a torch node (it names a device): its threads, one by default

        torch.set_num_threads(config.threads)
    summary = getattr(config, "summary", "")
    return run_node(make_node(config), Path(summary) if summary else None)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    tmp.replace(path)
