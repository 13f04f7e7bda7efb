"""`warmloop serve` and the thin client, over real sockets and real processes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from policies.client import PolicyClient
from policies.deploy.export import export
from policies.serve import PolicyServer, ServeConfig
from sim.envs import make_env
from streams import RemoteError, RequestTimeout, generate_keys
from tests.no_torch import ROOT


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    export(ROOT / "checkpoints" / "pickplace", out)
    return out


@pytest.fixture(scope="module")
def states() -> list[np.ndarray]:
    """Twelve real PickPlace states: the arm moving toward the cube under a fixed action."""
    env = make_env("pickplace")
    state, _ = env.reset(seed=300_000)
    out = [state]
    for _ in range(11):
        state, *_ = env.step(np.array([0.05, 0.0, 0.1, 1.0], np.float32))
        out.append(state)
    return out


class _Served:
    """A PolicyServer in a thread of this process, on a real ipc socket."""

    def __init__(self, exported: Path, endpoint: str, **options):
        self.server = PolicyServer(ServeConfig(policy=exported, bind=endpoint, **options))
        self.server.configure()
        self.thread = threading.Thread(target=self.server.loop, daemon=True)

    def __enter__(self) -> PolicyServer:
        self.thread.start()
        return self.server

    def __exit__(self, *_) -> None:
        self.server.stop()
        self.thread.join(timeout=10)
        self.server.shutdown()


def _chunks(client: PolicyClient, states, steps, episode=0) -> list[np.ndarray]:
    return [client.infer(states[s], step=s, episode=episode).actions for s in steps]


def test_two_robots_keep_their_own_warm_start(exported, states, tmp_path) -> None:
    alone_endpoint, shared_endpoint = f"ipc://{tmp_path}/alone", f"ipc://{tmp_path}/shared"
    with _Served(exported, alone_endpoint), PolicyClient(alone_endpoint, name="arm-a") as a:
        alone = _chunks(a, states, range(8))
    with (
        _Served(exported, shared_endpoint) as server,
        PolicyClient(shared_endpoint, name="arm-a") as a,
        PolicyClient(shared_endpoint, name="arm-b") as b,
    ):
        shared = []
        for step in range(8):  # b's episode runs between a's requests
            shared += _chunks(a, states, [step])
            _chunks(b, states[::-1], [step], episode=5)
    for mine, theirs in zip(alone, shared, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert server.counters["sessions"] == 2 and server.counters["cold_starts"] == 2
    assert len(server.latencies_ms) == 14  # every other request warm-started


def test_bad_requests_get_an_error_reply_and_the_server_goes_on(exported, states, tmp_path):
    endpoint = f"ipc://{tmp_path}/serve"
    # A patient client: on a busy machine a reply later than the default 0.5 s would be
    # retried, and the server would count a second repeat beside the deliberate one.
    with (
        _Served(exported, endpoint) as server,
        PolicyClient(endpoint, name="arm", timeout=10.0) as client,
    ):
        huge = np.full(11, 3.4e38, np.float32)  # finite, but infinite once normalised
        for state, step, message in [
            (huge, 0, "normalises to infinity"),
            (states[0], -1, "step and episode must be >= 0"),
            (states[0][:5], 0, r"state has shape \(5,\)"),
        ]:
            with pytest.raises(RemoteError, match=message):
                client.infer(state, step=step)
        chunk = client.infer(states[0], step=0)
        again = client.infer(states[0], step=0)  # a retry after a lost reply: same answer
    assert chunk.actions.shape == (15, 4) and chunk.first_index == 0
    np.testing.assert_array_equal(chunk.actions, again.actions)
    assert server.counters["bad_observations"] == 3
    assert server.counters["repeated_requests"] == 1


def _serve_process(exported: Path, endpoint: str, summary: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "warmloop.cli", "serve", str(exported), "--bind", endpoint),
            *("--dt", "0.025", "--summary", str(summary)),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _first_answer(client: PolicyClient, state: np.ndarray, within: float = 60):
    deadline = time.monotonic() + within
    while True:
        try:
            return client.infer(state, step=0)
        except RequestTimeout:
            if time.monotonic() > deadline:
                raise


def test_a_killed_server_makes_the_client_time_out_then_resume(exported, states, tmp_path):
    endpoint = f"ipc://{tmp_path}/serve"
    server = _serve_process(exported, endpoint, tmp_path / "first.json")
    client = PolicyClient(endpoint, name="arm", timeout=0.5, retries=1)
    try:
        _first_answer(client, states[0])
        server.kill()  # kill -9 mid-episode
        server.wait(timeout=10)
        with pytest.raises(RequestTimeout):
            client.infer(states[1], step=1)
        server = _serve_process(exported, endpoint, tmp_path / "second.json")
        chunk = _first_answer(client, states[2])  # the new server starts the session over
        assert chunk.first_index == 0 and np.isfinite(chunk.actions).all()
        assert client.infer(states[3], step=1).first_index == 1
    finally:
        client.close()
        server.send_signal(signal.SIGTERM)
        _, log = server.communicate(timeout=30)
    assert server.returncode == 0, log[-2000:]
    summary = json.loads((tmp_path / "second.json").read_text())
    assert summary["counters"]["sessions"] == 1 and summary["counters"]["cold_starts"] == 1
    assert client.reconnects >= 2
    assert "warm latency p50" in log


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_robot_with_a_wrong_curve_key_receives_nothing(exported, states, tmp_path) -> None:
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    for name in ("server", "robot", "stranger"):
        generate_keys(keys, name)
    allowed.mkdir()
    (allowed / "robot.key").write_bytes((keys / "robot.key").read_bytes())
    port = _free_port()
    bind = f"tcp://127.0.0.1:{port}?secret={keys}/server.key_secret&clients={allowed}"
    robot = f"tcp://127.0.0.1:{port}?secret={keys}/robot.key_secret&server={keys}/server.key"
    stranger = robot.replace("robot.key_secret", "stranger.key_secret")
    with _Served(exported, bind):
        with PolicyClient(robot, name="robot") as client:
            assert client.infer(states[0], step=0).actions.shape == (15, 4)
        with (
            PolicyClient(stranger, timeout=0.3, retries=1) as client,
            pytest.raises(RequestTimeout),
        ):
            client.infer(states[0], step=0)


@pytest.mark.slow
def test_the_example_robot_script_runs_episodes_against_warmloop_serve(exported, tmp_path):
    endpoint = f"ipc://{tmp_path}/serve"
    server = _serve_process(exported, endpoint, tmp_path / "serve.json")
    try:
        script = subprocess.run(
            [
                *(sys.executable, "examples/robot_client.py", "--server", endpoint),
                *("--dt", "0.025", "--episodes", "2"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert script.returncode == 0, script.stderr[-2000:]
    assert "success: 2/2" in script.stdout, script.stdout
    assert len(Path(ROOT / "examples" / "robot_client.py").read_text().splitlines()) <= 80
