"""Foxglove-native companion channels, read back with the official MCAP reader and decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory

from streams import ActionChunk, Frame, Heartbeat, Observation, PointCloud, decode, encode
from streams.foxglove_channels import POINT_DTYPE, quaternion_xyzw
from streams.recording import McapWriter, read_recording


def _received(topic: str, message):
    frames = [bytes(memoryview(f)) for f in encode(topic, message, seq=1, source="s", t_sent=1.0)]
    return decode(frames, t_received=2.0)


def _frame(rng: np.random.Generator) -> Frame:
    pose = np.eye(4)
    pose[:3, :3] = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]  # camera z = world +x: it looks along -x
    pose[:3, 3] = [1.0, 2.0, 3.0]
    return Frame(
        rgb=rng.integers(0, 256, (6, 8, 3), dtype=np.uint8),
        depth=rng.uniform(0.5, 4.0, (6, 8)).astype(np.float32),
        intrinsics=np.array([[10.0, 0, 4], [0, 11.0, 3], [0, 0, 1]]),
        pose=pose,
        camera="front",
    )


def _cloud(rng: np.random.Generator) -> PointCloud:
    return PointCloud(
        points=rng.normal(size=(50, 3)).astype(np.float32),
        colours=rng.integers(0, 256, (50, 3), dtype=np.uint8),
        scene_time=1.5,
    )


@pytest.fixture
def recording(tmp_path):
    rng = np.random.default_rng(0)
    frame = _frame(rng)
    messages = [
        ("frame", frame),
        ("observation", Observation(state=np.array([0.1, 0.2, 0.3], np.float32), step=4)),
        ("action", ActionChunk(actions=np.ones((2, 4), np.float32), t_first=1.0, dt=0.1)),
        ("heartbeat", Heartbeat(node="sim", counters={"steps": 3})),
        ("points", _cloud(rng)),
    ]
    path = tmp_path / "run.mcap"
    writer = McapWriter(path, foxglove=True)
    for topic, message in messages:
        writer.write(_received(topic, message))
    writer.close()
    return path, frame


def test_images_calibration_and_pose_decode_with_foxglove_schemas(recording) -> None:
    path, frame = recording
    with open(path, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        decoded = {
            channel.topic: proto
            for _, channel, _, proto in reader.iter_decoded_messages(
                topics=["/frame/rgb", "/frame/depth", "/frame/calibration", "/tf"]
            )
        }
    rgb, depth = decoded["/frame/rgb"], decoded["/frame/depth"]
    assert (rgb.encoding, rgb.width, rgb.height, rgb.frame_id) == ("rgb8", 8, 6, "frame/front")
    assert np.array_equal(np.frombuffer(rgb.data, np.uint8).reshape(6, 8, 3), frame.rgb)
    assert depth.encoding == "32FC1"
    assert np.array_equal(np.frombuffer(depth.data, "<f4").reshape(6, 8), frame.depth)
    assert list(decoded["/frame/calibration"].K) == frame.intrinsics.ravel().tolist()
    transform = decoded["/tf"]
    assert (transform.parent_frame_id, transform.child_frame_id) == ("world", "frame/front")
    assert [transform.translation.x, transform.translation.y, transform.translation.z] == [1, 2, 3]
    # The optical frame looks along its +z; warmloop's camera along its -z: world -x here.
    q = transform.rotation
    x, y, z, w = q.x, q.y, q.z, q.w
    optical_z = [2 * (x * z + y * w), 2 * (y * z - x * w), 1 - 2 * (x * x + y * y)]
    np.testing.assert_allclose(optical_z, [-1, 0, 0], atol=1e-12)


def test_a_point_cloud_decodes_with_the_foxglove_schema(recording) -> None:
    path, _ = recording
    with open(path, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        (cloud,) = [proto for *_, proto in reader.iter_decoded_messages(topics=["/points"])]
    assert (cloud.frame_id, cloud.point_stride) == ("world", 16)
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "red", "green", "blue", "alpha"]
    points = np.frombuffer(cloud.data, POINT_DTYPE)
    recorded = next(m.decode().message for m in read_recording(path, topics=["points"]))
    assert len(points) == len(recorded.points) == 50 and np.all(points["a"] == 255)
    assert np.array_equal(np.stack([points[a] for a in "xyz"], 1), recorded.points)
    assert np.array_equal(np.stack([points[c] for c in "rgb"], 1), recorded.colours)


def test_other_messages_are_json_for_the_plot_panel(recording) -> None:
    path, _ = recording
    with open(path, "rb") as stream:
        raw = {
            channel.topic: (channel, message)
            for _, channel, message in make_reader(stream).iter_messages(
                topics=["/observation", "/action", "/heartbeat"]
            )
        }
    assert all(channel.message_encoding == "json" for channel, _ in raw.values())
    observation = json.loads(raw["/observation"][1].data)
    assert observation["step"] == 4
    assert observation["state"] == pytest.approx([0.1, 0.2, 0.3])
    assert json.loads(raw["/action"][1].data)["actions"] == [[1.0] * 4] * 2
    assert json.loads(raw["/heartbeat"][1].data)["counters"] == {"steps": 3}


def test_warmloop_readers_skip_the_companions(recording) -> None:
    path, frame = recording
    recorded = list(read_recording(path))
    assert [r.topic for r in recorded] == ["frame", "observation", "action", "heartbeat", "points"]
    assert np.array_equal(recorded[0].decode().message.rgb, frame.rgb)


def test_quaternions_round_trip_every_branch() -> None:
    def matrix(x, y, z, w):
        return np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )

    rng = np.random.default_rng(1)
    rotations = [np.eye(3), np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])]
    for _ in range(200):
        q = rng.normal(size=4)
        rotations.append(matrix(*q / np.linalg.norm(q)))
    for rotation in rotations:
        np.testing.assert_allclose(matrix(*quaternion_xyzw(rotation)), rotation, atol=1e-12)
