"""warmloop streams: typed messages over ZeroMQ. Depends on numpy, msgpack and pyzmq only.

    from streams import Publisher, Subscriber, Latest, Frame
    pub = Publisher("tcp://127.0.0.1:5555", source="camera")
    sub = Subscriber("tcp://127.0.0.1:5555", {"frames": Latest()})
    pub.publish("frames", Frame(rgb=..., intrinsics=..., pose=...))
    received = sub.recv("frames", timeout=1.0)   # Received(topic, message, ...)

See docs/protocol.md for the wire format.
"""

from streams.clock import ClockEstimate, ClockSample, estimate
from streams.codec import Received, decode, encode
from streams.errors import (
    DecodeError,
    InsecureEndpointError,
    InvalidMessage,
    RemoteError,
    RequestTimeout,
    StreamsError,
)
from streams.messages import (
    ActionChunk,
    Controls,
    EpisodeResult,
    Error,
    Frame,
    Heartbeat,
    Message,
    Observation,
    PointCloud,
    Stamp,
    TimeSync,
    TriPlanes,
    register,
)
from streams.pubsub import Latest, Publisher, Queue, Subscriber, parse_qos
from streams.security import CurveClient, CurveServer, generate_keys
from streams.service import Client, Service
from streams.sockets import Endpoint, parse_endpoint

__all__ = [
    "ActionChunk",
    "Client",
    "ClockEstimate",
    "ClockSample",
    "Controls",
    "CurveClient",
    "CurveServer",
    "DecodeError",
    "Endpoint",
    "EpisodeResult",
    "Error",
    "Frame",
    "Heartbeat",
    "InsecureEndpointError",
    "InvalidMessage",
    "Latest",
    "Message",
    "Observation",
    "PointCloud",
    "Publisher",
    "Queue",
    "Received",
    "RemoteError",
    "RequestTimeout",
    "Service",
    "Stamp",
    "StreamsError",
    "Subscriber",
    "TimeSync",
    "TriPlanes",
    "decode",
    "encode",
    "estimate",
    "generate_keys",
    "parse_endpoint",
    "parse_qos",
    "register",
]
