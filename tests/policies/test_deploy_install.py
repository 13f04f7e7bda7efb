"""The robot's install, as docs/deployment.md tells an integrator to make it.

The wheel is built from this checkout and installed with `[deploy]` alone into a fresh
venv (dependencies from the package registry), outside the repository, so nothing of
the checkout or of the main venv leaks in. There, torch, MuJoCo and Open3D are absent,
`warmloop deploy` drives a sim node running in the main venv, and commands that need an
extra say which one.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.deploy import build_robot_venv
from policies.deploy.export import export
from tests.no_torch import ROOT

pytestmark = pytest.mark.slow
RATE_SCALE = 4


def _run(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def robot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding `warmloop[deploy]` from a wheel of this checkout: its bin/."""
    return build_robot_venv(ROOT, tmp_path_factory.mktemp("robot"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    export(ROOT / "checkpoints" / "pickplace", out)
    return out


def test_the_deploy_install_has_no_torch_mujoco_or_open3d(robot: Path, tmp_path: Path) -> None:
    for module in ("torch", "mujoco", "open3d", "gymnasium", "mcap"):
        result = _run([str(robot / "python"), "-c", f"import {module}"], cwd=tmp_path)
        assert result.returncode != 0, f"{module} is installed on the robot"
    imports = _run([str(robot / "python"), "-c", "import onnxruntime, zmq, msgpack"], tmp_path)
    assert imports.returncode == 0, imports.stderr


@pytest.mark.parametrize(
    ("command", "extra", "module"),
    [
        (["train", "pickplace", "--data", ".", "--out", "x"], "train", "torch"),
        (["export", str(ROOT / "checkpoints" / "pickplace"), "--out", "x"], "train", "onnx"),
        (["collect", "pickplace"], "sim", "gymnasium"),
        (["replay", "run.mcap"], "record", "mcap"),
    ],
)
def test_a_command_without_its_extra_names_it(robot, tmp_path, command, extra, module) -> None:
    result = _run([str(robot / "warmloop"), *command], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"warmloop {command[0]} needs the [{extra}] extra ({module} is not installed): "
        f"pip install 'warmloop[{extra}]'"
    )


def test_eval_of_a_directory_that_is_no_policy_says_so_without_torch(robot, tmp_path) -> None:
    result = _run([str(robot / "warmloop"), "eval", str(tmp_path)], cwd=tmp_path)
    assert result.returncode == 2
    assert "is neither an export (no manifest.json) nor a checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def _sim(observations: str, actions: str, summary: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "sim.node", "--task", "pickplace", "--episodes", "2"),
            *("--publish", observations, "--actions", actions, "--seed", "300000"),
            *("--rate-scale", str(RATE_SCALE), "--staleness", "0.2"),
            *("--wait-for-policy", "60", "--summary", str(summary)),
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_the_robot_install_drives_the_sim(robot: Path, exported: Path, tmp_path: Path) -> None:
    observations, actions = f"ipc://{tmp_path}/obs", f"ipc://{tmp_path}/act"
    sim = _sim(observations, actions, tmp_path / "sim.json")
    policy = subprocess.Popen(
        [
            *(str(robot / "warmloop"), "deploy", str(exported), "--observations", observations),
            *("--publish", actions, "--dt", str(0.1 / RATE_SCALE), "--providers", "cpu"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert sim.wait(timeout=180) == 0, sim.communicate()[1][-2000:]
    finally:
        policy.send_signal(signal.SIGTERM)
        _, policy_log = policy.communicate(timeout=30)
        if sim.poll() is None:
            sim.kill()
        sim.communicate()
    summary = json.loads((tmp_path / "sim.json").read_text())
    assert [episode["success"] for episode in summary["episodes"]] == [True, True]
    assert policy.returncode == 0, policy_log[-2000:]
    assert "onnx policy on CPUExecutionProvider (CPU, 1 intra-op thread(s)" in policy_log
    assert "warm latency p50" in policy_log


def test_the_thin_client_imports_numpy_pyzmq_and_msgspec_only(robot, tmp_path) -> None:
    code = (
        "import json, sys, importlib.metadata as md; before = set(sys.modules); "
        "import policies.client; owners = md.packages_distributions(); "
        "print(json.dumps(sorted({d for m in set(sys.modules) - before "
        "for d in owners.get(m.split('.')[0], [])})))"
    )
    result = _run([str(robot / "python"), "-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = {"numpy", "pyzmq", "msgspec", "warmloop"}  # msgpack: recordings only
    assert set(json.loads(result.stdout)) == expected
