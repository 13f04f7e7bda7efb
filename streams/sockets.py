"""One place where sockets are made: endpoint policy, CURVE and ownership of contexts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs

import zmq
from zmq.auth.thread import ThreadAuthenticator

from streams.security import (
    Curve,
    CurveClient,
    CurveServer,
    apply_curve,
    check_bind,
    start_authenticator,
)

SCHEMES = ("tcp", "ipc", "inproc")


@dataclass(frozen=True)
class Endpoint:
    """Where a socket binds or connects; `allow_insecure` lifts the loopback-only rule."""

    address: str
    bind: bool
    curve: Curve | None = None
    allow_insecure: bool = False


def parse_endpoint(spec: str, bind: bool) -> Endpoint:
    """An endpoint from one command-line string, CURVE keys as query parameters.

        ipc:///tmp/run/sim                              loopback, no keys
        tcp://10.0.0.2:5560?secret=sim.key_secret&clients=keys/     binding side
        tcp://10.0.0.2:5560?secret=gpu.key_secret&server=sim.key    connecting side
        tcp://10.0.0.2:5560?insecure=1                  a private network, on purpose

    Raises ValueError naming what is wrong; binding a non-loopback tcp address without
    CURVE is refused later, by OwnedSocket.
    """
    address, _, query = spec.partition("?")
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in SCHEMES or not rest:
        raise ValueError(
            f"endpoint {spec!r}: expected tcp://HOST:PORT, ipc://PATH or inproc://NAME"
        )
    if scheme == "tcp":
        host, colon, port = rest.rpartition(":")
        if not colon or not host or not (port == "*" or (port.isdigit() and int(port) < 65536)):
            raise ValueError(f"endpoint {spec!r}: tcp needs HOST:PORT with a port 0..65535")
    options = {k: v[-1] for k, v in parse_qs(query, strict_parsing=bool(query)).items()}
    unknown = set(options) - {"secret", "clients", "server", "insecure"}
    if unknown:
        raise ValueError(f"endpoint {spec!r}: unknown options {sorted(unknown)}")
    curve: Curve | None = None
    if "secret" in options:
        if bind and "clients" in options:
            curve = CurveServer(Path(options["secret"]), Path(options["clients"]))
        elif not bind and "server" in options:
            curve = CurveClient(Path(options["secret"]), Path(options["server"]))
        else:
            needed = "clients (a directory of public keys)" if bind else "server (its public key)"
            raise ValueError(f"endpoint {spec!r}: CURVE with secret= also needs {needed}")
    return Endpoint(address, bind, curve, allow_insecure=options.get("insecure") == "1")


class OwnedSocket:
    """A socket with its context and authenticator; `close()` releases all three.

    A CURVE server gets a private context, because a context has one ZAP handler and the
    allowed-keys directory belongs to this socket.
    """

    def __init__(
        self,
        kind: int,
        endpoints: Sequence[Endpoint],
        context: zmq.Context | None = None,
        options: dict[int, int] | None = None,
    ):
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        curves = {e.curve for e in endpoints}
        if len(curves) > 1:
            raise ValueError("all endpoints of one socket must share one CURVE configuration")
        curve = curves.pop()
        for e in endpoints:
            if e.bind:
                check_bind(e.address, e.curve, e.allow_insecure)
        self._own_context = context is None or isinstance(curve, CurveServer)
        self.context = zmq.Context() if self._own_context else context
        self._auth: ThreadAuthenticator | None = None
        if isinstance(curve, CurveServer):
            self._auth = start_authenticator(self.context, curve)
        self.socket = self.context.socket(kind)
        self.socket.linger = 0
        for option, value in (options or {}).items():
            self.socket.setsockopt(option, value)
        if curve is not None:
            apply_curve(self.socket, curve)
        try:
            for e in endpoints:
                (self.socket.bind if e.bind else self.socket.connect)(e.address)
        except zmq.ZMQError:
            self.close()
            raise
        self.endpoints = list(endpoints)

    def last_endpoint(self) -> str:
        """The address actually bound (resolves tcp port 0 and ipc wildcards)."""
        return self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def close(self) -> None:
        if not self.socket.closed:
            self.socket.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._own_context and not self.context.closed:
            self.context.term()


class SocketUser:
    """`close()` and `with` support for a class that keeps its OwnedSocket as `_owned`."""

    _owned: OwnedSocket

    def close(self) -> None:
        self._owned.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
