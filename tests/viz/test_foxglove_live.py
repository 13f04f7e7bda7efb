"""`warmloop view --foxglove`: a real WebSocket client subscribes and decodes a camera image."""

from __future__ import annotations

import base64
import json
import threading
import time

import numpy as np
import torch
from mcap.records import Schema
from mcap_protobuf.decoder import DecoderFactory
from websockets.sync.client import connect

from streams import Frame, Observation, Publisher
from streams.foxglove_channels import POINT_DTYPE, point_cloud_companion
from viz.foxglove_live import FoxgloveLive, FoxgloveLiveConfig, triplanes_points
from world.reconstruction.exchange import to_message
from world.reconstruction.field import FieldConfig, TriPlaneField

MESSAGE_DATA = 0x01  # Foxglove WebSocket protocol: binary opcode of a message


def _publish_until(stop: threading.Event, publisher: Publisher, frame: Frame) -> None:
    while not stop.is_set():
        publisher.publish("frame", frame)
        publisher.publish("observation", Observation(state=np.ones(3, np.float32)))
        time.sleep(0.05)


def _advertised(socket, topic: str, deadline: float) -> dict:
    """The channel the server advertises for `topic` (JSON text messages until then)."""
    while time.monotonic() < deadline:
        message = socket.recv(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(message, str):
            reply = json.loads(message)
            for channel in reply.get("channels", []) if reply.get("op") == "advertise" else []:
                if channel["topic"] == topic:
                    return channel
    raise AssertionError(f"{topic} was never advertised")


def _first_message(socket, deadline: float) -> bytes:
    while time.monotonic() < deadline:
        message = socket.recv(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(message, bytes) and message[0] == MESSAGE_DATA:
            return message[1 + 4 + 8 :]  # opcode, subscription id, log time, payload
    raise AssertionError("no message arrived on the subscription")


def test_a_websocket_client_receives_the_camera_image(tmp_path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    frame = Frame(rgb=rgb, intrinsics=np.diag([10.0, 10.0, 1.0]), pose=np.eye(4), camera="c")
    stop = threading.Event()
    with Publisher(f"ipc://{tmp_path}/sim", source="sim") as publisher:
        node = FoxgloveLive(FoxgloveLiveConfig([publisher.address], port=0))
        node.configure()
        serving = threading.Thread(target=node.loop)
        feeding = threading.Thread(target=_publish_until, args=(stop, publisher, frame))
        serving.start(), feeding.start()
        try:
            url = f"ws://127.0.0.1:{node.port}"
            with connect(url, subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"]) as ws:
                deadline = time.monotonic() + 30
                channel = _advertised(ws, "/frame/rgb", deadline)
                ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                    {"id": 7, "channelId": channel["id"]}]}))  # fmt: skip
                payload = _first_message(ws, deadline)
        finally:
            stop.set()
            node.stop()
            serving.join(), feeding.join()
            node.shutdown()
    schema = Schema(
        id=1,
        name=channel["schemaName"],
        encoding="protobuf",
        data=base64.b64decode(channel["schema"]),
    )
    image = DecoderFactory().decoder_for("protobuf", schema)(payload)
    assert (image.width, image.height, image.encoding) == (8, 6, "rgb8")
    assert np.array_equal(np.frombuffer(image.data, np.uint8).reshape(6, 8, 3), rgb)
    assert node.counters["served"] > 0


def test_the_reconstruction_is_a_coloured_point_cloud_for_foxglove() -> None:
    torch.manual_seed(0)
    bounds = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    config = FieldConfig(resolution=8, channels=4, deform_channels=2, time_steps=2, deform=False)
    field = TriPlaneField(config, bounds, (0.0, 1.0))
    with torch.no_grad():  # dense everywhere, as no fitted field is in seconds
        for parameter in field.parameters():
            parameter.fill_(1.0)
    companion = point_cloud_companion("/triplanes/points", triplanes_points(to_message(field)), 123)
    schema = Schema(
        id=1, name=companion.schema_name, encoding="protobuf", data=companion.schema_data
    )
    cloud = DecoderFactory().decoder_for("protobuf", schema)(companion.data)
    assert (companion.topic, cloud.frame_id, cloud.point_stride) == (
        "/triplanes/points",
        "world",
        16,
    )
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "red", "green", "blue", "alpha"]
    assert [f.offset for f in cloud.fields] == [0, 4, 8, 12, 13, 14, 15]
    points = np.frombuffer(cloud.data, POINT_DTYPE)
    assert len(points) > 100 and np.all(points["a"] == 255)
    for axis in "xyz":
        assert points[axis].min() >= -1.0 and points[axis].max() <= 1.0  # inside the bounds
