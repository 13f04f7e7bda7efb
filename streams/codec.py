"""The wire codec: a message <-> ZeroMQ multipart frames. No pickle, ever.

    frame 0   topic (UTF-8)
    frame 1   msgpack header: schema, version, seq, source, t_capture, t_sent,
              fields (scalars) and arrays (name, dtype, shape, order per buffer)
    frame 2+  one raw C-order buffer per declared array, in declaration order

`docs/protocol.md` is the normative description. Decoding never trusts the bytes: every
check below turns a bad input into a `DecodeError` that names what was wrong.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import zmq

from streams.errors import DecodeError, InvalidMessage
from streams.messages import REGISTRY, WIRE_DTYPES, Message, Stamp, dtype_code

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_NDIM = 8
_NATIVE_ORDER = "<" if sys.byteorder == "little" else ">"
_DTYPES = {
    (code, order): np.dtype(code).newbyteorder("=" if order == "|" else order)
    for code in WIRE_DTYPES
    for order in ("<", ">", "|")
    if order != "|" or np.dtype(code).itemsize == 1  # "no byte order" only where none exists
}
_NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class ArrayHeader(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How one buffer frame is to be read; msgspec checks the types in C."""

    name: str
    dtype: Literal[WIRE_DTYPES]  # type: ignore[valid-type]
    shape: Annotated[list[_NonNegative], msgspec.Meta(max_length=MAX_NDIM)]
    order: Literal["<", ">", "|"]


class Header(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Frame 1 of every message. Scalars in `fields` are checked by the message class."""

    schema: str
    version: int
    seq: _NonNegative
    source: Annotated[str, msgspec.Meta(max_length=256)]
    t_capture: float
    t_sent: float
    fields: dict[str, Any]
    arrays: list[ArrayHeader]


_HEADER_DECODER = msgspec.msgpack.Decoder(Header)
_HEADER_FIELDS = len(Header.__struct_fields__)
_WIRE_TYPES: dict[np.dtype, tuple[str, str]] = {}


@dataclass
class Received:
    """A decoded message with its topic, the raw frames it came from and arrival time."""

    topic: str
    message: Message
    frames: list[Any] = field(repr=False, default_factory=list)
    t_received: float = 0.0


def _array_items(message: Message) -> list[tuple[str, np.ndarray]]:
    values = message.__dict__
    items = [(name, values[name]) for name in message.ARRAYS]
    for name in message.ARRAY_MAPS:
        items += [(f"{name}/{key}", value) for key, value in values[name].items()]
    return [(name, value) for name, value in items if value is not None]


def _wire_type(dtype: np.dtype) -> tuple[str, str]:
    """(wire code, byte order) of a native-order dtype, cached: encode runs per message."""
    wire = _WIRE_TYPES.get(dtype)
    if wire is None:
        order = "|" if dtype.itemsize == 1 else _NATIVE_ORDER
        wire = _WIRE_TYPES[dtype] = (dtype_code(dtype), order)
    return wire


def encode(
    topic: str,
    message: Message,
    *,
    seq: int,
    source: str,
    t_sent: float,
) -> list[Any]:
    """Frames for `send_multipart(frames, copy=False)`; array buffers are not copied."""
    arrays, buffers = [], []
    for name, value in _array_items(message):
        if value.dtype.byteorder not in ("=", "|", _NATIVE_ORDER):
            value = value.astype(value.dtype.newbyteorder("="))
        data = value.data  # needed anyway; asking it is cheaper than value.flags
        if not data.c_contiguous:
            data = np.ascontiguousarray(value).data
        code, order = _wire_type(value.dtype)
        arrays.append({"name": name, "dtype": code, "shape": value.shape, "order": order})
        buffers.append(data)
    values = message.__dict__
    header = {
        "schema": message.SCHEMA,
        "version": message.VERSION,
        "seq": seq,
        "source": source,
        "t_capture": float(message.t_capture),
        "t_sent": float(t_sent),
        "fields": {name: values[name] for name in message.SCALARS},
        "arrays": arrays,
    }
    # msgspec writes the same msgpack bytes as msgpack-python, in half the time.
    return [topic.encode(), msgspec.msgpack.encode(header), *buffers]


def _view(frame: Any) -> memoryview:
    # zmq.Frame exposes its bytes as .buffer; bytes and memoryview are used as they are.
    if type(frame) is zmq.Frame:
        return memoryview(frame)  # always bytes, one dimension; cheaper than .buffer
    view = memoryview(frame)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def decode(
    frames: Sequence[Any], *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, t_received: float = 0.0
) -> Received:
    """Validate and decode frames. Arrays are read-only views on the received buffers."""
    try:
        views = [_view(f) for f in frames]
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"frames are not byte buffers: {exc}") from None
    if len(views) < 2:
        raise DecodeError(f"expected at least 2 frames (topic, header), got {len(views)}")
    total = sum([v.nbytes for v in views])
    if total > max_bytes:
        raise DecodeError(f"message of {total} bytes exceeds the cap of {max_bytes} bytes")
    topic = _decode_topic(views[0])
    header = _decode_header(views[1])
    cls = REGISTRY.get((header.schema, header.version))
    if cls is None:
        raise DecodeError(f"unknown schema {header.schema!r} version {header.version!r}")
    specs = header.arrays
    if len(specs) != len(views) - 2:
        raise DecodeError(
            f"header declares {len(specs)} arrays but {len(views) - 2} buffer frames follow"
        )
    arrays = [_decode_array(spec, view) for spec, view in zip(specs, views[2:], strict=True)]
    message = _build(cls, header, arrays)
    message.stamp = Stamp(header.seq, header.source, header.t_sent)
    frames = frames if type(frames) is list else list(frames)
    return Received(topic, message, frames, t_received)


def _decode_topic(view: memoryview) -> str:
    try:
        topic = str(view, "utf-8")
    except UnicodeDecodeError:
        raise DecodeError("topic is not valid UTF-8") from None
    if not 0 < len(topic) <= 255 or "\0" in topic:
        raise DecodeError(f"bad topic {topic[:40]!r}")
    return topic


def _map_length(view: memoryview) -> int:
    """The entry count a msgpack map declares (fixmap, map 16 or map 32), read from its
    first bytes: more than the decoded header holds means a key came twice."""
    first = view[0]
    if 0x80 <= first <= 0x8F:
        return first & 0x0F
    width = {0xDE: 2, 0xDF: 4}.get(first, 0)
    return int.from_bytes(view[1 : 1 + width], "big") if width else -1


def _decode_header(view: memoryview) -> Header:
    if view.nbytes > MAX_HEADER_BYTES:
        raise DecodeError(f"header of {view.nbytes} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = _HEADER_DECODER.decode(view)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"bad header: {exc}") from None
    except Exception as exc:  # msgspec.DecodeError, UnicodeDecodeError, ... on garbage
        raise DecodeError(f"header is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if _map_length(view) != _HEADER_FIELDS:  # a repeated key: msgspec keeps the last one
        raise DecodeError("header repeats a key")
    if not (math.isfinite(header.t_capture) and math.isfinite(header.t_sent)):
        raise DecodeError(f"header: t_capture and t_sent must be finite: {header!r:.200}")
    return header


def _decode_array(spec: ArrayHeader, view: memoryview) -> tuple[str, np.ndarray]:
    name, shape = spec.name, spec.shape
    dtype = _DTYPES.get((spec.dtype, spec.order))
    if dtype is None:  # the decoder admitted both codes: only the pair can be wrong
        raise DecodeError(
            f"array {name!r}: byte order {spec.order!r} must be '<' or '>' "
            "('|' only for 1-byte dtypes)"
        )
    # numpy checks the sizes in C: reshape rejects a shape that disagrees with the buffer.
    try:
        array = np.frombuffer(view, dtype=dtype).reshape(shape)
    except ValueError:
        raise DecodeError(
            f"array {name!r}: shape {shape} of {spec.dtype} needs "
            f"{math.prod(shape) * dtype.itemsize} bytes, buffer has {view.nbytes}"
        ) from None
    if not view.readonly:  # views on bytes and zmq frames are read-only already
        array.flags.writeable = False
    return name, array


def _build(cls: type[Message], header: Header, arrays: list[tuple[str, np.ndarray]]) -> Message:
    scalars = header.fields
    if scalars.keys() != cls.SCALARS.keys():
        raise DecodeError(
            f"{cls.SCHEMA}: fields {sorted(map(str, scalars))} != expected {sorted(cls.SCALARS)}"
        )
    kwargs: dict[str, Any] = dict(scalars)
    for name in cls.ARRAY_MAPS:
        kwargs[name] = {}
    for name, array in arrays:
        head, _, key = name.partition("/")
        if key and head in cls.ARRAY_MAPS:
            if key in kwargs[head]:
                raise DecodeError(f"{cls.SCHEMA}: array {name!r} appears twice")
            kwargs[head][key] = array
        elif not key and head in cls.ARRAYS:
            if head in kwargs:
                raise DecodeError(f"{cls.SCHEMA}: array {name!r} appears twice")
            kwargs[head] = array
        else:
            raise DecodeError(f"{cls.SCHEMA}: unexpected array {name!r}")
    try:  # a missing required array is a TypeError from the dataclass, as is a bad field
        return cls(t_capture=header.t_capture, **kwargs)
    except InvalidMessage as exc:
        raise DecodeError(str(exc)) from None
    except TypeError as exc:
        raise DecodeError(f"{cls.SCHEMA}: {exc}") from None
