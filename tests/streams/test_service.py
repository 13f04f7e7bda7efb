from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from streams import (
    ActionChunk,
    Client,
    Heartbeat,
    Observation,
    RemoteError,
    RequestTimeout,
    Service,
)
from streams.clock import ClockSample, estimate

ROOT = Path(__file__).resolve().parents[2]


def _policy(observation: Observation) -> ActionChunk:
    return ActionChunk(
        actions=np.tile(observation.state[:2], (4, 1)).astype(np.float32),
        t_first=observation.t_capture,
        dt=0.1,
    )


class _Running:
    """A Service answering in a background thread until stopped."""

    def __init__(self, address: str):
        self.service = Service(address, {Observation: _policy}, source="policy")
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.service.serve_until, args=(self._stop.is_set,), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.service.close()


def test_request_reply_and_typed_errors(tmp_path) -> None:
    server = _Running(f"ipc://{tmp_path}/svc.ipc")
    try:
        with Client(f"ipc://{tmp_path}/svc.ipc", source="ctl", timeout=1.0) as client:
            state = np.array([0.5, -0.25, 3.0], np.float32)
            reply = client.request(Observation(state=state)).message
            assert isinstance(reply, ActionChunk)
            np.testing.assert_array_equal(reply.actions, np.tile(state[:2], (4, 1)))
            with pytest.raises(RemoteError, match="no_handler"):
                client.request(Heartbeat(node="x"))
            # The service survived the bad request.
            assert isinstance(client.request(Observation(state=state)).message, ActionChunk)
    finally:
        server.stop()


def test_client_times_out_instead_of_hanging(tmp_path) -> None:
    with Client(f"ipc://{tmp_path}/nobody.ipc", source="ctl", timeout=0.1, retries=1) as client:
        start = time.monotonic()
        with pytest.raises(RequestTimeout):
            client.request(Observation(state=np.zeros(2, np.float32)))
        assert time.monotonic() - start < 3.0  # 2 tries of 0.1 s, not forever
        assert client.reconnects == 2


def test_client_recovers_after_the_server_restarts(tmp_path) -> None:
    address = f"ipc://{tmp_path}/restart.ipc"
    server = _Running(address)
    request = Observation(state=np.ones(2, np.float32))
    with Client(address, source="ctl", timeout=0.2, retries=10) as client:
        assert client.request(request).message.actions.shape == (4, 2)
        server.stop()
        restarted: list[_Running] = []
        threading.Timer(0.3, lambda: restarted.append(_Running(address))).start()
        # A plain REQ socket would hang here forever; Lazy Pirate reconnects and retries.
        assert client.request(request).message.actions.shape == (4, 2)
        assert client.reconnects >= 1
    restarted[0].stop()


SERVE = """
import sys
from streams import Observation, Service
from tests.streams.test_service import _policy
service = Service(sys.argv[1], {Observation: _policy}, source="other-process")
print("ready", flush=True)
service.serve_until(lambda: False)
"""


def test_clock_offset_between_processes_on_one_host(tmp_path) -> None:
    address = f"ipc://{tmp_path}/clock.ipc"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, address], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        with Client(address, source="ctl", timeout=5.0) as client:
            clock = client.estimate_clock(exchanges=10)
        # Two processes, one monotonic clock (CLOCK_MONOTONIC is system-wide): the true
        # offset is 0, and an NTP estimate of it is bounded by half the round trip.
        assert clock.rtt > 0
        assert abs(clock.offset) <= clock.rtt / 2 + 1e-6
    finally:
        server.kill()
        server.wait()


def test_clock_estimate_recovers_a_known_offset() -> None:
    offset, samples = 12.5, []
    for t0, delay_out, delay_back in [(0.0, 0.004, 0.001), (1.0, 0.001, 0.001), (2.0, 0.01, 0.0)]:
        t1 = t0 + delay_out + offset
        t2 = t1 + 0.002
        samples.append(ClockSample(t0, t1, t2, t2 - offset + delay_back))
    clock = estimate(samples)
    assert clock.rtt == pytest.approx(0.002)
    assert clock.offset == pytest.approx(offset)
    assert clock.to_local(offset + 3.0) == pytest.approx(3.0)


def test_an_oversized_request_is_refused_before_it_is_allocated(tmp_path) -> None:
    """ZMQ_MAXMSGSIZE: the server drops the frame and its sender; others go on."""
    address = f"ipc://{tmp_path}/svc.ipc"
    service = Service(address, {Observation: _policy}, source="p", max_message_bytes=100_000)
    stop = threading.Event()
    thread = threading.Thread(target=service.serve_until, args=(stop.is_set,), daemon=True)
    thread.start()
    huge = Observation(state=np.zeros(2, np.float32), images={"c": np.zeros(5_000_000, "u1")})
    try:
        with Client(address, source="big", timeout=0.3, retries=1) as client:
            with pytest.raises(RequestTimeout):
                client.request(huge)
            reply = client.request(Observation(state=np.ones(2, np.float32))).message
        assert isinstance(reply, ActionChunk)
    finally:
        stop.set()
        thread.join()
        service.close()
    assert service.errors == 0  # never decoded: ZeroMQ refused it
