"""launch/split_robot.yaml and launch/split_gpu.yaml, launched together on loopback.

The two halves of the manipulation graph as a robot and a GPU box would run them: the
sim and a recorder on one side, the torch RTI policy (node type policy_torch) on the
other, every endpoint CURVE-encrypted with keys made as docs/deployment.md says. Only
the LAN addresses and the key folder are rewritten, to loopback and a temp folder.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from pathlib import Path

from runtime.launch import resolve
from runtime.launch_file import load
from runtime.supervisor import Supervisor
from streams import generate_keys
from streams.recording import summarize

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _on_loopback(name: str, tmp: Path, ports: dict[str, int]) -> Path:
    text = resolve(name).read_text()
    for lan, port in ports.items():
        text = text.replace(lan, f"tcp://127.0.0.1:{port}")
    path = tmp / f"{name}.yaml"
    path.write_text(text.replace("keys/", f"{tmp}/keys/"))
    return path


def _keys(tmp: Path) -> None:
    keys, allowed = tmp / "keys", tmp / "keys" / "allowed"
    for name in ("robot", "gpu"):
        public, _ = generate_keys(keys, name)
        allowed.mkdir(parents=True, exist_ok=True)
        (allowed / public.name).write_bytes(public.read_bytes())


def test_split_graphs_drive_each_other_over_curve_on_loopback(tmp_path) -> None:
    _keys(tmp_path)
    ports = {"tcp://192.168.1.10:5560": _free_port(), "tcp://192.168.1.20:5561": _free_port()}
    robot = load(
        _on_loopback("split_robot", tmp_path, ports),
        tmp_path / "robot",
        {"sim.episodes": 1, "sim.wait_for_policy": 300},
    )
    gpu = load(
        _on_loopback("split_gpu", tmp_path, ports),
        tmp_path / "gpu",
        {"policy.policy": str(ROOT / "checkpoints" / "pickplace")},
    )
    assert "--backend" in gpu.nodes[0].argv and "torch" in gpu.nodes[0].argv
    policy_side = Supervisor(gpu, output=io.StringIO(), handle_signals=False)
    thread = threading.Thread(target=policy_side.run)
    thread.start()
    try:
        report = Supervisor(robot, output=io.StringIO(), handle_signals=False).run()
    finally:
        policy_side.stop()
        thread.join()
    assert report.ended_by == "node sim" and not report.faults
    sim = json.loads((tmp_path / "robot" / "sim.json").read_text())
    # Seed 100,000 (the graph's) is one the shipped policy solves: chunks crossed both
    # CURVE links and moved the arm to success.
    assert [e["success"] for e in sim["episodes"]] == [True]
    recorded = summarize(tmp_path / "robot" / "run.mcap")
    assert recorded["action"].messages > 10 and recorded["observation"].messages > 10
    policy = json.loads((tmp_path / "gpu" / "policy.json").read_text())
    assert policy["counters"]["predictions"] > 10
