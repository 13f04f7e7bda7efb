from __future__ import annotations

import msgpack
import numpy as np
import pytest

from streams import (
    ActionChunk,
    DecodeError,
    Frame,
    Heartbeat,
    InvalidMessage,
    Observation,
    decode,
    encode,
)
from streams.messages import REGISTRY
from tests.streams.helpers import sample_messages


def _wire(frames: list) -> list[bytes]:
    return [bytes(memoryview(f)) for f in frames]


@pytest.mark.parametrize("message", sample_messages(), ids=lambda m: type(m).__name__)
def test_every_message_type_round_trips(message) -> None:
    frames = _wire(encode("topic/a", message, seq=7, source="unit", t_sent=5.0))
    received = decode(frames)
    assert received.topic == "topic/a"
    assert received.message == message
    assert received.message.stamp.seq == 7
    assert received.message.stamp.source == "unit"
    assert received.message.stamp.t_sent == 5.0
    assert received.message.t_capture == message.t_capture


def test_every_registered_schema_has_a_sample() -> None:
    assert {type(m) for m in sample_messages()} == set(REGISTRY.values())


def test_decoded_arrays_are_read_only_views_on_the_buffers() -> None:
    message = Frame(rgb=np.zeros((8, 8, 3), np.uint8), intrinsics=np.eye(3), pose=np.eye(4))
    frames = _wire(encode("f", message, seq=0, source="s", t_sent=0.0))
    rgb = decode(frames).message.rgb
    assert not rgb.flags.writeable
    assert not rgb.flags.owndata  # a view, not a copy
    with pytest.raises(ValueError):
        rgb[0, 0, 0] = 1


def test_big_endian_arrays_are_sent_in_native_order() -> None:
    actions = np.arange(8, dtype=">f4").reshape(2, 4)
    with pytest.raises(InvalidMessage, match="dtype float64 not allowed"):
        ActionChunk(actions=actions.astype(np.float64), t_first=0.0, dt=0.1)
    chunk = ActionChunk(actions=actions, t_first=0.0, dt=0.1)
    decoded = decode(_wire(encode("a", chunk, seq=0, source="s", t_sent=0.0))).message
    np.testing.assert_array_equal(decoded.actions, np.arange(8).reshape(2, 4))


def _header(frames: list[bytes]) -> dict:
    return msgpack.unpackb(frames[1])


def _with_header(frames: list[bytes], **changes) -> list[bytes]:
    header = _header(frames)
    header.update(changes)
    return [frames[0], msgpack.packb(header), *frames[2:]]


@pytest.fixture
def chunk_frames() -> list[bytes]:
    chunk = ActionChunk(actions=np.ones((4, 2), np.float32), t_first=1.0, dt=0.05)
    return _wire(encode("actions", chunk, seq=1, source="policy", t_sent=2.0))


def test_rejects_unknown_schema(chunk_frames) -> None:
    with pytest.raises(DecodeError, match="unknown schema"):
        decode(_with_header(chunk_frames, schema="warmloop.Nope"))


def test_rejects_unknown_version(chunk_frames) -> None:
    with pytest.raises(DecodeError, match="version 99"):
        decode(_with_header(chunk_frames, version=99))


def test_rejects_dtype_outside_whitelist(chunk_frames) -> None:
    arrays = _header(chunk_frames)["arrays"]
    arrays[0]["dtype"] = "O8"
    with pytest.raises(DecodeError, match=r"'O8' - at .*dtype"):
        decode(_with_header(chunk_frames, arrays=arrays))


def test_rejects_shape_that_disagrees_with_byte_length(chunk_frames) -> None:
    arrays = _header(chunk_frames)["arrays"]
    arrays[0]["shape"] = [5, 2]
    with pytest.raises(DecodeError, match="needs 40 bytes, buffer has 32"):
        decode(_with_header(chunk_frames, arrays=arrays))


@pytest.mark.parametrize("shape", [[-1, 2], [8], [4, -1], [4, 2.0], [4, True], [4, "2"]])
def test_rejects_shapes_that_are_not_lists_of_sizes(chunk_frames, shape) -> None:
    # numpy would infer -1 and accept some of these; the wire format does not.
    arrays = _header(chunk_frames)["arrays"]
    arrays[0]["shape"] = shape
    with pytest.raises(DecodeError, match="shape"):
        decode(_with_header(chunk_frames, arrays=arrays))


def test_rejects_a_missing_required_array(chunk_frames) -> None:
    header = _header(chunk_frames)
    header["arrays"] = []
    with pytest.raises(DecodeError, match="actions"):
        decode([chunk_frames[0], msgpack.packb(header)])


def test_rejects_strings_longer_than_the_limit() -> None:
    with pytest.raises(InvalidMessage, match="longer than 4096"):
        Heartbeat(node="n" * 4097)
    frames = _wire(encode("hb", Heartbeat(node="n"), seq=0, source="s", t_sent=0.0))
    header = _header(frames)
    header["fields"]["node"] = "n" * 4097
    with pytest.raises(DecodeError, match="longer than 4096"):
        decode([frames[0], msgpack.packb(header)])


def test_rejects_non_finite_values_where_schema_forbids(chunk_frames) -> None:
    bad = np.ones((4, 2), np.float32)
    bad[2, 1] = np.nan
    with pytest.raises(DecodeError, match="NaN"):
        decode([*chunk_frames[:2], bad.tobytes()])


def test_rejects_too_many_or_too_few_frames(chunk_frames) -> None:
    with pytest.raises(DecodeError, match="declares 1 arrays but 2"):
        decode([*chunk_frames, b"extra"])
    with pytest.raises(DecodeError, match="declares 1 arrays but 0"):
        decode(chunk_frames[:2])
    with pytest.raises(DecodeError, match="at least 2 frames"):
        decode(chunk_frames[:1])


def test_rejects_message_over_size_cap(chunk_frames) -> None:
    size = sum(len(f) for f in chunk_frames)
    decode(chunk_frames, max_bytes=size)
    with pytest.raises(DecodeError, match="exceeds the cap"):
        decode(chunk_frames, max_bytes=size - 1)


def test_rejects_missing_scalar_field(chunk_frames) -> None:
    fields = _header(chunk_frames)["fields"]
    del fields["dt"]
    with pytest.raises(DecodeError, match="fields"):
        decode(_with_header(chunk_frames, fields=fields))


def test_rejects_schema_rule_violation(chunk_frames) -> None:
    fields = _header(chunk_frames)["fields"]
    fields["dt"] = -1.0
    with pytest.raises(DecodeError, match="dt: must be positive"):
        decode(_with_header(chunk_frames, fields=fields))


@pytest.mark.parametrize(
    ("intrinsics", "pose", "message"),
    [
        (np.diag([0.0, 50.0, 1.0]), np.eye(4), "intrinsics: need fx > 0"),
        (np.array([[50.0, 0, 32], [0, 50, 32], [0, 0, 2]]), np.eye(4), "last row of"),
        (np.eye(3), np.diag([2.0, 1.0, 1.0, 1.0]), "rotation must be orthonormal"),
        (np.eye(3), np.diag([-1.0, 1.0, 1.0, 1.0]), "determinant"),
        (np.eye(3), np.vstack([np.eye(4)[:3], [0, 0, 1, 1]]), "pose: the last row"),
    ],
)
def test_a_frame_needs_a_usable_pinhole_camera(intrinsics, pose, message) -> None:
    """Finite is not enough: fx = 0 or a sheared pose makes every ray inf or NaN."""
    with pytest.raises(InvalidMessage, match=message):
        Frame(rgb=np.zeros((2, 2, 3), np.uint8), intrinsics=intrinsics, pose=pose)
    rotated = np.eye(4)
    rotated[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    Frame(rgb=np.zeros((2, 2, 3), np.uint8), intrinsics=np.eye(3), pose=rotated.astype(np.float32))


def test_construction_validates() -> None:
    with pytest.raises(InvalidMessage, match="state: contains NaN"):
        Observation(state=np.array([np.nan], np.float32))
    with pytest.raises(InvalidMessage, match="rgb: dtype"):
        Frame(rgb=np.zeros((2, 2, 3), np.float32), intrinsics=np.eye(3), pose=np.eye(4))
    with pytest.raises(InvalidMessage, match="depth: shape"):
        Frame(
            rgb=np.zeros((2, 2, 3), np.uint8),
            depth=np.zeros((3, 3), np.float32),
            intrinsics=np.eye(3),
            pose=np.eye(4),
        )


def test_rejects_no_byte_order_on_multi_byte_arrays(chunk_frames) -> None:
    arrays = _header(chunk_frames)["arrays"]
    arrays[0]["order"] = "|"  # f4: its byte order matters
    with pytest.raises(DecodeError, match=r"'\|' only for 1-byte dtypes"):
        decode(_with_header(chunk_frames, arrays=arrays))


def test_rejects_a_header_that_repeats_a_key(chunk_frames) -> None:
    header = _header(chunk_frames)
    # A map of 9 entries whose last repeats `seq`: decoded, it would silently be seq=7.
    items = b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in header.items())
    repeated = bytes([0x80 | 9]) + items + msgpack.packb("seq") + msgpack.packb(7)
    with pytest.raises(DecodeError, match="repeats a key"):
        decode([chunk_frames[0], repeated, *chunk_frames[2:]])
    big = b"\xde\x00\x09" + items + msgpack.packb("seq") + msgpack.packb(7)  # map 16
    with pytest.raises(DecodeError, match="repeats a key"):
        decode([chunk_frames[0], big, *chunk_frames[2:]])
