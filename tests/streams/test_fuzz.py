"""Property-based fuzzing of the decoder: malformed input raises DecodeError and nothing else."""

from __future__ import annotations

import contextlib

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import DecodeError, decode, encode
from tests.streams.helpers import sample_messages

VALID = [
    [bytes(memoryview(f)) for f in encode("t", m, seq=1, source="s", t_sent=0.0)]
    for m in sample_messages(np.random.default_rng(1))
]
FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _decode_or_reject(frames: list[bytes]) -> None:
    with contextlib.suppress(DecodeError):
        decode(frames, max_bytes=1 << 20)


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_random_frames(frames: list[bytes]) -> None:
    _decode_or_reject(frames)


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_mutated_bytes_of_valid_messages(frames: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(frames) - 1))
    target = bytearray(frames[index])
    for _ in range(data.draw(st.integers(1, 4))):
        if target and data.draw(st.booleans()):
            target[data.draw(st.integers(0, len(target) - 1))] = data.draw(st.integers(0, 255))
        else:
            del target[data.draw(st.integers(0, len(target))) :]
    _decode_or_reject([*frames[:index], bytes(target), *frames[index + 1 :]])


@FUZZ
@given(
    st.sampled_from(VALID),
    st.sampled_from(
        ["schema", "version", "seq", "source", "t_capture", "t_sent", "fields", "arrays"]
    ),
    _values,
)
def test_header_fields_replaced_by_arbitrary_values(frames, key, value) -> None:
    header = msgpack.unpackb(frames[1])
    header[key] = value
    _decode_or_reject([frames[0], msgpack.packb(header), *frames[2:]])


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(VALID), st.data())
def test_array_specs_replaced_by_arbitrary_values(frames, data: st.DataObject) -> None:
    header = msgpack.unpackb(frames[1])
    if not header["arrays"]:
        return
    spec = header["arrays"][0]
    key = data.draw(st.sampled_from(["name", "dtype", "shape", "order"]))
    spec[key] = data.draw(_values | st.lists(st.integers(-3, 2**40), max_size=9))
    _decode_or_reject([frames[0], msgpack.packb(header), *frames[2:]])
