from __future__ import annotations

import shutil

import numpy as np
import pytest

from streams import (
    CurveClient,
    CurveServer,
    Endpoint,
    Heartbeat,
    InsecureEndpointError,
    Observation,
    Publisher,
    Queue,
    Subscriber,
    generate_keys,
)
from streams.security import is_loopback


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://127.3.2.1:1", True),
        ("tcp://[::1]:5555", True),
        ("tcp://localhost:5555", True),
        ("ipc:///tmp/x", True),
        ("inproc://x", True),
        ("tcp://*:5555", False),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://10.0.0.2:5555", False),
        ("tcp://eth0:5555", False),
        ("udp://127.0.0.1:1", False),
    ],
)
def test_is_loopback(endpoint: str, loopback: bool) -> None:
    assert is_loopback(endpoint) is loopback


def test_non_loopback_bind_without_curve_is_refused() -> None:
    with pytest.raises(InsecureEndpointError, match="without CURVE"):
        Publisher("tcp://0.0.0.0:*", source="p")


@pytest.fixture
def keys(tmp_path):
    server_pub, server_secret = generate_keys(tmp_path / "server", "server")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    good_pub, good_secret = generate_keys(tmp_path / "good", "good")
    shutil.copy(good_pub, allowed)
    _, rogue_secret = generate_keys(tmp_path / "rogue", "rogue")
    return {
        "server": CurveServer(server_secret, allowed),
        "good": CurveClient(good_secret, server_pub),
        "rogue": CurveClient(rogue_secret, server_pub),
    }


def test_curve_admits_allowed_clients_only(keys) -> None:
    # CURVE may bind every interface; here 0.0.0.0 proves the rule, loopback carries traffic.
    server = Endpoint("tcp://0.0.0.0:*", bind=True, curve=keys["server"])
    with Publisher(server, source="secure") as pub:
        port = pub.address.rsplit(":", 1)[1]
        address = f"tcp://127.0.0.1:{port}"
        good = Subscriber(Endpoint(address, bind=False, curve=keys["good"]), {"obs": Queue(100)})
        rogue = Subscriber(Endpoint(address, bind=False, curve=keys["rogue"]), {"obs": Queue(100)})
        plain = Subscriber(address, {"obs": Queue(100)})
        try:
            for step in range(100):
                pub.publish("obs", Observation(state=np.zeros(2, np.float32), step=step))
                if good.recv("obs", timeout=0.02) is not None:
                    break
            else:
                raise AssertionError("the authorised client never received a message")
            for step in range(20):
                pub.publish(
                    "obs",
                    Heartbeat(node="secret")
                    if step % 2
                    else Observation(state=np.ones(2, np.float32), step=step),
                )
            assert good.recv("obs", timeout=1.0) is not None
            assert rogue.recv("obs", timeout=0.5) is None
            assert plain.recv("obs", timeout=0.1) is None
            assert rogue.stats.topics["obs"].received == 0
            assert plain.stats.topics["obs"].received == 0
        finally:
            for sub in (good, rogue, plain):
                sub.close()


def test_secret_keys_are_private_and_a_readable_one_is_refused(tmp_path) -> None:
    import stat

    import zmq

    from streams.security import CurveClient, apply_curve

    public, secret = generate_keys(tmp_path / "keys", "robot")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    try:
        apply_curve(socket, CurveClient(secret, public))  # private: accepted
        secret.chmod(0o644)
        with pytest.raises(PermissionError, match=r"robot.key_secret: a secret key readable"):
            apply_curve(socket, CurveClient(secret, public))
    finally:
        socket.close(linger=0)
        context.term()
