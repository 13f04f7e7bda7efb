"""Request/reply (for example policy inference) that never hangs on a dead peer.

The client follows ZeroMQ's Lazy Pirate pattern: a REQ socket waits for a reply with a
timeout; on timeout it is closed and recreated (a REQ socket that lost its reply is stuck
forever), and the request is sent again up to `retries` times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from itertools import count

import zmq

from streams.clock import ClockEstimate, ClockSample, estimate
from streams.codec import DEFAULT_MAX_MESSAGE_BYTES, Received, decode, encode
from streams.errors import DecodeError, RemoteError, RequestTimeout
from streams.messages import Error, Message, TimeSync
from streams.sockets import Endpoint, OwnedSocket, SocketUser

log = logging.getLogger(__name__)

REQUEST_TOPIC = "request"
REPLY_TOPIC = "reply"
Handler = Callable[[Message], Message]


class Service(SocketUser):
    """Answers requests with typed handlers: {RequestType: handler(request) -> reply}.

    A malformed request, a request without a handler, or a handler that raises gets an
    Error reply; the service keeps serving. TimeSync requests are answered built in.
    """

    def __init__(
        self,
        endpoint: Endpoint | str,
        handlers: Mapping[type[Message], Handler],
        *,
        source: str,
        context: zmq.Context | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ):
        if isinstance(endpoint, str):
            endpoint = Endpoint(endpoint, bind=True)
        self.source = source
        self._handlers = dict(handlers)
        self._max_bytes = max_message_bytes
        # ZeroMQ drops a frame over the cap, with its connection, before allocating it.
        self._owned = OwnedSocket(zmq.REP, [endpoint], context, {zmq.MAXMSGSIZE: max_message_bytes})
        self._seq = count()
        self.errors = 0

    @property
    def address(self) -> str:
        return self._owned.last_endpoint()

    def serve_once(self, timeout: float) -> bool:
        """Answer at most one request; False if none came within `timeout` seconds."""
        socket = self._owned.socket
        if not socket.poll(int(timeout * 1000), zmq.POLLIN):
            return False
        frames = socket.recv_multipart(copy=False)
        t_recv = time.monotonic()
        reply = self._reply_to(frames, t_recv)
        socket.send_multipart(
            encode(
                REPLY_TOPIC, reply, seq=next(self._seq), source=self.source, t_sent=time.monotonic()
            ),
            copy=False,
        )
        return True

    def _reply_to(self, frames: list, t_recv: float) -> Message:
        try:
            request = decode(frames, max_bytes=self._max_bytes, t_received=t_recv).message
        except DecodeError as exc:
            self.errors += 1
            log.warning("malformed request (%d so far): %s", self.errors, exc)
            return Error(code="decode_error", message=str(exc))
        if isinstance(request, TimeSync):
            return TimeSync(
                t_client_send=request.t_client_send,
                t_server_recv=t_recv,
                t_server_send=time.monotonic(),
            )
        handler = self._handlers.get(type(request))
        if handler is None:
            self.errors += 1
            return Error(code="no_handler", message=f"no handler for {request.SCHEMA}")
        try:
            return handler(request)
        except Exception as exc:  # the service must outlive a failing handler
            self.errors += 1
            log.exception("handler for %s failed", request.SCHEMA)
            return Error(code="handler_error", message=f"{type(exc).__name__}: {exc}")

    def serve_until(self, should_stop: Callable[[], bool], poll: float = 0.05) -> None:
        while not should_stop():
            self.serve_once(poll)


class Client(SocketUser):
    """Sends requests with a timeout, recreating its socket after a lost reply."""

    def __init__(
        self,
        endpoint: Endpoint | str,
        *,
        source: str,
        timeout: float = 1.0,
        retries: int = 2,
        context: zmq.Context | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ):
        if isinstance(endpoint, str):
            endpoint = Endpoint(endpoint, bind=False)
        if timeout <= 0 or retries < 0:
            raise ValueError("timeout must be positive and retries non-negative")
        self.source = source
        self.timeout = timeout
        self.retries = retries
        self.reconnects = 0
        self._endpoint = endpoint
        self._context = context
        self._max_bytes = max_message_bytes
        self._seq = count()
        self._owned = self._connect()

    def _connect(self) -> OwnedSocket:
        return OwnedSocket(zmq.REQ, [self._endpoint], self._context)

    def request(self, message: Message, timeout: float | None = None) -> Received:
        """Send `message` and return the reply; raise RequestTimeout or RemoteError."""
        timeout = self.timeout if timeout is None else timeout
        for attempt in range(self.retries + 1):
            frames = encode(
                REQUEST_TOPIC,
                message,
                seq=next(self._seq),
                source=self.source,
                t_sent=time.monotonic(),
            )
            self._owned.socket.send_multipart(frames, copy=False)
            if self._owned.socket.poll(int(timeout * 1000), zmq.POLLIN):
                reply = self._owned.socket.recv_multipart(copy=False)
                received = decode(reply, max_bytes=self._max_bytes, t_received=time.monotonic())
                if isinstance(received.message, Error):
                    raise RemoteError(received.message.code, received.message.message)
                return received
            log.warning(
                "no reply from %s within %.3f s (attempt %d of %d); reconnecting",
                self._endpoint.address,
                timeout,
                attempt + 1,
                self.retries + 1,
            )
            self._owned.close()
            self._owned = self._connect()
            self.reconnects += 1
        raise RequestTimeout(
            f"no reply from {self._endpoint.address} after "
            f"{self.retries + 1} attempts of {timeout:.3f} s"
        )

    def estimate_clock(self, exchanges: int = 8) -> ClockEstimate:
        """Clock offset (server minus client) and rtt from `exchanges` TimeSync requests."""
        samples = []
        for _ in range(exchanges):
            t0 = time.monotonic()
            reply = self.request(TimeSync(t_client_send=t0)).message
            t3 = time.monotonic()
            if not isinstance(reply, TimeSync):
                raise RemoteError("bad_reply", f"expected TimeSync, got {reply.SCHEMA}")
            samples.append(ClockSample(t0, reply.t_server_recv, reply.t_server_send, t3))
        return estimate(samples)
