"""Foxglove-native companions of recorded messages, so that Foxglove's panels show them.

A recording keeps every message losslessly on its `warmloop-multipart` channel. With
`McapWriter(..., foxglove=True)` (`warmloop record --foxglove`, the recorder node's
`--foxglove`) each message also gets Foxglove-native companions, written beside it with
the same log time:

    Frame on topic T     /T/rgb          foxglove.RawImage, rgb8
                         /T/depth        foxglove.RawImage, 32FC1 (metres along the axis)
                         /T/calibration  foxglove.CameraCalibration (K, P; no distortion)
                         /tf             foxglove.FrameTransform, world -> T/CAMERA
    PointCloud on T      /T              foxglove.PointCloud, x y z float32 + RGBA
    anything else        /T              schemaless JSON: scalar fields, and arrays of at
                                         most 4,096 numbers as nested lists (Plot panel)

The protobuf schemas and their encoding come from Foxglove's own SDK (`foxglove-sdk`),
so no schema is written by hand here. warmloop's camera pose is OpenGL-style (x right,
y up, looking along −z); Foxglove's image frame is optical (x right, y down, looking
along +z): the transform flips y and z. Readers of warmloop messages skip the
companions (`streams.recording.read_recording`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.messages import Frame, Message, PointCloud

JSON_ENCODING = "json"
PROTOBUF_ENCODING = "protobuf"
COMPANION_ENCODINGS = frozenset({JSON_ENCODING, PROTOBUF_ENCODING})
MAX_JSON_ARRAY = 4096  # numbers; larger arrays (images, planes) stay out of the JSON
WORLD_FRAME = "world"
OPENGL_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])  # flip y and z
# A foxglove.PointCloud point: x, y, z as float32, then red, green, blue, alpha as uint8.
POINT_DTYPE = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1"), ("a", "u1")]
)


@dataclass(frozen=True)
class Companion:
    """One Foxglove-native message: its topic, schema (None: schemaless JSON), bytes."""

    topic: str
    schema_name: str
    schema_encoding: str
    schema_data: bytes
    message_encoding: str
    data: bytes


def companions(topic: str, message: Message, log_time_ns: int) -> list[Companion]:
    """The Foxglove-native messages that show `message` (recorded on `topic`)."""
    if isinstance(message, Frame):
        return _frame_companions(topic, message, log_time_ns)
    if isinstance(message, PointCloud):
        return [point_cloud_companion(f"/{topic}", message, log_time_ns)]
    data = json.dumps(_json_fields(message), allow_nan=False).encode()
    return [Companion(f"/{topic}", "", "", b"", JSON_ENCODING, data)]


def _json_fields(message: Message) -> dict[str, Any]:
    fields: dict[str, Any] = {"schema": message.SCHEMA}
    for name in message.SCALARS:
        value = getattr(message, name)
        fields[name] = value if not isinstance(value, dict) else dict(value)
    for name in message.ARRAYS:
        value = getattr(message, name)
        if value is not None and value.size <= MAX_JSON_ARRAY:
            fields[name] = np.asarray(
                value, np.float64 if value.dtype.kind == "f" else None
            ).tolist()
    return fields


def protobuf_companion(topic: str, value) -> Companion:
    """A companion holding one foxglove-sdk message, with its protobuf schema."""
    schema = type(value).get_schema()
    return Companion(
        topic, schema.name, schema.encoding, bytes(schema.data), PROTOBUF_ENCODING, value.encode()
    )


def point_cloud_companion(topic: str, cloud: PointCloud, log_time_ns: int) -> Companion:
    """The points, coloured and opaque, in the world frame, as a foxglove.PointCloud."""
    from foxglove import messages as fox

    packed = np.zeros(len(cloud.points), POINT_DTYPE)
    for axis, name in enumerate("xyz"):
        packed[name] = cloud.points[:, axis]
    for channel, name in enumerate("rgb"):
        packed[name] = cloud.colours[:, channel]
    packed["a"] = 255
    kinds = fox.PackedElementFieldNumericType
    names = {"r": "red", "g": "green", "b": "blue", "a": "alpha"}
    fields = [
        fox.PackedElementField(
            name=names.get(name, name),
            offset=POINT_DTYPE.fields[name][1],
            type=kinds.Float32 if name in "xyz" else kinds.Uint8,
        )
        for name in POINT_DTYPE.names
    ]
    message = fox.PointCloud(
        timestamp=foxglove_stamp(log_time_ns),
        frame_id=WORLD_FRAME,
        pose=fox.Pose(
            position=fox.Vector3(x=0, y=0, z=0), orientation=fox.Quaternion(x=0, y=0, z=0, w=1)
        ),
        point_stride=POINT_DTYPE.itemsize,
        fields=fields,
        data=packed.tobytes(),
    )
    return protobuf_companion(topic, message)


def foxglove_stamp(log_time_ns: int):
    """A foxglove Timestamp from wall-clock nanoseconds."""
    from foxglove import messages as fox

    return fox.Timestamp(sec=log_time_ns // 1_000_000_000, nsec=log_time_ns % 1_000_000_000)


def _raw_image(topic: str, stamp, frame_id: str, pixels: np.ndarray, encoding: str) -> Companion:
    """An H×W(×C) array as a foxglove.RawImage; the row step follows from its bytes."""
    from foxglove import messages as fox

    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    image = fox.RawImage(
        timestamp=stamp,
        frame_id=frame_id,
        width=width,
        height=height,
        encoding=encoding,
        step=pixels.strides[0],
        data=pixels.tobytes(),
    )
    return protobuf_companion(topic, image)


def _frame_companions(topic: str, frame: Frame, log_time_ns: int) -> list[Companion]:
    from foxglove import messages as fox

    stamp = foxglove_stamp(log_time_ns)
    frame_id = f"{topic}/{frame.camera or 'camera'}"
    height, width = frame.rgb.shape[:2]
    out = [_raw_image(f"/{topic}/rgb", stamp, frame_id, frame.rgb, "rgb8")]
    if frame.depth is not None:
        depth = np.asarray(frame.depth, "<f4")
        out.append(_raw_image(f"/{topic}/depth", stamp, frame_id, depth, "32FC1"))
    k = np.asarray(frame.intrinsics, np.float64)
    projection = np.hstack([k, np.zeros((3, 1))])
    out.append(
        protobuf_companion(
            f"/{topic}/calibration",
            fox.CameraCalibration(
                timestamp=stamp,
                frame_id=frame_id,
                width=width,
                height=height,
                distortion_model="",
                D=[],
                K=k.ravel().tolist(),
                R=np.eye(3).ravel().tolist(),
                P=projection.ravel().tolist(),
            ),
        )
    )
    out.append(protobuf_companion("/tf", _transform(fox, stamp, frame_id, frame.pose)))
    return out


def _transform(fox, stamp, frame_id: str, pose: np.ndarray):
    pose = np.asarray(pose, np.float64)
    x, y, z, w = quaternion_xyzw(pose[:3, :3] @ OPENGL_TO_OPTICAL)
    tx, ty, tz = pose[:3, 3].tolist()
    return fox.FrameTransform(
        timestamp=stamp,
        parent_frame_id=WORLD_FRAME,
        child_frame_id=frame_id,
        translation=fox.Vector3(x=tx, y=ty, z=tz),
        rotation=fox.Quaternion(x=x, y=y, z=z, w=w),
    )


def quaternion_xyzw(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """The unit quaternion (x, y, z, w) of a rotation matrix, w >= 0 (Shepperd's method:
    divide by the largest of the four candidates, so no branch loses precision)."""
    m = np.asarray(rotation, np.float64)
    trace = np.trace(m)
    candidates = [trace, m[0, 0], m[1, 1], m[2, 2]]
    largest = int(np.argmax(candidates))
    if largest == 0:
        w = 0.5 * np.sqrt(1.0 + trace)
        x, y, z = (
            (m[2, 1] - m[1, 2]) / (4 * w),
            (m[0, 2] - m[2, 0]) / (4 * w),
            (m[1, 0] - m[0, 1]) / (4 * w),
        )
    else:
        i = largest - 1
        j, k = (i + 1) % 3, (i + 2) % 3
        q = np.empty(3)
        q[i] = 0.5 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q[j] = (m[j, i] + m[i, j]) / (4 * q[i])
        q[k] = (m[k, i] + m[i, k]) / (4 * q[i])
        w = (m[k, j] - m[j, k]) / (4 * q[i])
        x, y, z = q
    sign = -1.0 if w < 0 else 1.0
    return float(sign * x), float(sign * y), float(sign * z), float(sign * w)
