"""Typed errors of the streams layer. A node catches these, counts them and goes on."""


class StreamsError(Exception):
    """Base of every error raised by `streams`."""


class InvalidMessage(StreamsError, ValueError):
    """A message object that breaks its schema (raised when it is built)."""


class DecodeError(StreamsError, ValueError):
    """Bytes from the wire or a file that are not a valid warmloop message."""


class InsecureEndpointError(StreamsError, ValueError):
    """Binding a non-loopback tcp address without CURVE and without `allow_insecure`."""


class RequestTimeout(StreamsError, TimeoutError):
    """A request got no reply within its timeout after all retries."""


class RemoteError(StreamsError):
    """The server answered a request with an Error message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.remote_message = message
