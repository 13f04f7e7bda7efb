"""`warmloop bench deploy`: the robot's install and policy, as an integrator meets them.

Each row has its reference beside it, measured in the same run:
  install      a wheel of this checkout with `[deploy]` alone, in a fresh venv (packages
               from the registry or pip's cache): MB on disk and seconds to build. Against:
               this machine's full `[all,dev]` venv (CPU torch; a CUDA torch adds GBs).
  cold start   process start to the first action chunk received: `warmloop deploy` from
               that venv against the torch policy node from the full venv, same
               checkpoint, interleaved starts. The first answer is the full 100-step chain.
  in-process   the first prediction (full chain) and the warm RTI update, onnxruntime
               against torch eager, one thread each, interleaved blocks.
  served       `PolicyClient.infer` against `warmloop serve` over tcp on loopback, against
               the server's own inference time: what the wire and the session cost.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import BenchResult, project_root

CHECKPOINT = "pickplace"
# size -> (process starts per variant, in-process timing reps, served requests)
SIZES = {"full": (7, 300, 2000), "quick": (3, 60, 300), "smoke": (1, 5, 20)}
NOT_SHIPPED = (".venv", ".git", "runs", "checkpoints", "build", "*.egg-info", "__pycache__")


def build_robot_venv(checkout: Path, where: Path) -> Path:
    """A fresh venv holding a wheel of `checkout` with `[deploy]` alone; its bin/."""
    source = where / "source"  # a copy, so the build never writes into the checkout
    shutil.copytree(checkout, source, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    wheels, venv = where / "wheels", where / "venv"
    flags = ("-q", "--no-deps", "--no-build-isolation", "-w", str(wheels))
    _check([sys.executable, "-m", "pip", "wheel", *flags, str(source)], where)
    _check([sys.executable, "-m", "venv", str(venv)], where)
    wheel = next(wheels.glob("warmloop-*.whl"))
    requirement = f"warmloop[deploy] @ {wheel.as_uri()}"
    _check([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", requirement], where)
    return venv / "bin"


def _check(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed: {done.stderr[-2000:]}")


def directory_mb(path: Path) -> float:
    files = (p for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())
    return sum(p.stat().st_size for p in files) / 2**20


def _real_state() -> np.ndarray:
    from sim.envs import make_env

    env = make_env(CHECKPOINT)
    state, _ = env.reset(seed=100_000)
    env.close()
    return state.astype(np.float32)


def cold_start_s(command: list[str], where: Path, state: np.ndarray) -> float:
    """Seconds from starting the policy node `command` to its first chunk received."""
    from streams import Observation, Publisher, Queue, Subscriber, parse_endpoint

    observations, actions = f"ipc://{where}/obs", f"ipc://{where}/act"
    publisher = Publisher(parse_endpoint(observations, bind=True), source="bench")
    subscriber = Subscriber(parse_endpoint(actions, bind=False), {"action": Queue(8)})
    began = time.monotonic()
    node = subprocess.Popen(
        [*command, "--observations", observations, "--publish", actions],
        cwd=where,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        step = 0
        while time.monotonic() - began < 120:
            publisher.publish("observation", Observation(state=state, step=step))
            if subscriber.recv("action", timeout=0.01) is not None:
                return time.monotonic() - began
            step += 1
            if node.poll() is not None:
                raise RuntimeError(f"the node exited: {node.stderr.read()[-2000:]}")
        raise RuntimeError("no chunk within 120 s")
    finally:
        node.send_signal(signal.SIGTERM)
        node.communicate(timeout=30)
        publisher.close()
        subscriber.close()


def _in_process(export_dir: Path, checkpoint: Path, state: np.ndarray, reps: int) -> dict:
    from policies.deploy.runtime import OnnxPolicy
    from policies.diffusion.policy import DiffusionPolicy
    from training.threads import INFERENCE, set_threads

    set_threads(None, INFERENCE)
    window = np.stack([state, state])
    policies = {"ort": OnnxPolicy(export_dir, threads=1), "torch": DiffusionPolicy(checkpoint)}
    times: dict[str, list[float]] = {f"{k}_{w}": [] for k in policies for w in ("first", "warm")}
    for block in range(max(2, reps // 20)):
        for name, policy in policies.items():
            policy.reset()
            began = time.perf_counter()
            policy.infer(window)
            if block:  # the first block warms allocators and caches up
                times[f"{name}_first"].append(time.perf_counter() - began)
            for _ in range(20):
                began = time.perf_counter()
                policy.infer(window)
                times[f"{name}_warm"].append(time.perf_counter() - began)
    return {k: np.array(v or [np.nan]) * 1e3 for k, v in times.items()}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def served(python: Path, export_dir: Path, where: Path, state: np.ndarray, n: int) -> dict:
    """Round trips of PolicyClient.infer against `warmloop serve` on loopback tcp (ms)."""
    from policies.client import PolicyClient

    endpoint, summary = f"tcp://127.0.0.1:{_free_port()}", where / "serve.json"
    server = subprocess.Popen(
        [
            *(str(python), "-m", "warmloop.cli", "serve", str(export_dir)),
            *("--bind", endpoint, "--summary", str(summary)),
        ],
        cwd=where,
        stderr=subprocess.DEVNULL,
    )
    trips = []
    try:
        with PolicyClient(endpoint, name="bench", timeout=5.0, retries=12) as client:
            client.infer(state, step=0)  # waits for the server to come up; cold chain
            for step in range(1, n + 1):
                began = time.perf_counter()
                client.infer(state, step=step)
                trips.append((time.perf_counter() - began) * 1e3)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return {"trips": np.array(trips), **json.loads(summary.read_text())}


def run(size: str, checkpoints: Path) -> BenchResult:
    from policies.deploy.export import export

    starts, reps, requests = SIZES[size]
    checkout, checkpoint = project_root(), checkpoints / CHECKPOINT
    state = _real_state()
    with tempfile.TemporaryDirectory(prefix="warmloop-deploy-") as tmp:
        where = Path(tmp)
        export(checkpoint, where / "export")
        install: dict = {"venv_mb": None, "build_s": None}
        robot_python = Path(sys.executable)
        if size != "smoke":  # a smoke run in CI: the venv build is tests' job
            began = time.monotonic()
            robot_python = build_robot_venv(checkout, where / "robot") / "python"
            install = {"venv_mb": directory_mb(where / "robot" / "venv"),
                       "build_s": time.monotonic() - began}  # fmt: skip
        commands = {
            "ort": [str(robot_python), "-m", "warmloop.cli", "deploy", str(where / "export")],
            "torch": [sys.executable, "-m", "policies.node", str(checkpoint), "--backend", "torch"],
        }
        cold: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(starts):  # interleaved, so a noisy neighbour hits both alike
            for name, command in commands.items():
                cold[name].append(cold_start_s(command, where, state))
        timing = _in_process(where / "export", checkpoint, state, reps)
        serve = served(robot_python, where / "export", where, state, requests)
    full_venv_mb = directory_mb(Path(sys.prefix)) if size != "smoke" else None
    return _result(install, full_venv_mb, cold, timing, serve)


def _result(install, full_venv_mb, cold, timing, serve) -> BenchResult:
    def q(values, p: float) -> float:
        return float(np.nanpercentile(values, p))

    figures = {
        "deploy_venv_mb": install["venv_mb"],
        "deploy_venv_build_s": install["build_s"],
        "full_venv_mb": full_venv_mb,
        "deploy_cold_start_s": q(cold["ort"], 50),
        "deploy_cold_start_s_max": max(cold["ort"]),
        "torch_node_cold_start_s": q(cold["torch"], 50),
        "cold_starts_per_variant": len(cold["ort"]),
        "first_prediction_ms_p50_ort": q(timing["ort_first"], 50),
        "first_prediction_ms_p50_torch": q(timing["torch_first"], 50),
        "warm_update_ms_p50_ort": q(timing["ort_warm"], 50),
        "warm_update_ms_p99_ort": q(timing["ort_warm"], 99),
        "warm_update_ms_p50_torch": q(timing["torch_warm"], 50),
        "warm_update_ms_p99_torch": q(timing["torch_warm"], 99),
        "warm_updates_timed": len(timing["ort_warm"]),
        "served_round_trip_ms_p50": q(serve["trips"], 50),
        "served_round_trip_ms_p99": q(serve["trips"], 99),
        "served_inference_ms_p50": serve.get("latency_p50_ms"),
        "served_requests": len(serve["trips"]),
    }
    return BenchResult(figures=figures, table=_table(figures), notes=_notes(figures))


def _fmt(value, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3g}{unit}"


def _table(f: dict) -> list[list[str]]:
    return [
        ["what", "warmloop deploy (onnxruntime)", "reference", "ratio"],
        ["venv on disk (MB)", _fmt(f["deploy_venv_mb"]), f"full [all,dev] venv: "
         f"{_fmt(f['full_venv_mb'])}", _ratio(f["full_venv_mb"], f["deploy_venv_mb"])],
        ["cold start to first chunk (s, p50)", _fmt(f["deploy_cold_start_s"]),
         f"torch node: {_fmt(f['torch_node_cold_start_s'])}",
         _ratio(f["torch_node_cold_start_s"], f["deploy_cold_start_s"])],
        ["first prediction, 100 steps (ms, p50)", _fmt(f["first_prediction_ms_p50_ort"]),
         f"torch eager: {_fmt(f['first_prediction_ms_p50_torch'])}",
         _ratio(f["first_prediction_ms_p50_torch"], f["first_prediction_ms_p50_ort"])],
        ["warm RTI update (ms, p50 / p99)", f"{_fmt(f['warm_update_ms_p50_ort'])} / "
         f"{_fmt(f['warm_update_ms_p99_ort'])}", f"torch eager: "
         f"{_fmt(f['warm_update_ms_p50_torch'])} / {_fmt(f['warm_update_ms_p99_torch'])}",
         _ratio(f["warm_update_ms_p50_torch"], f["warm_update_ms_p50_ort"])],
        ["served round trip, tcp loopback (ms, p50 / p99)",
         f"{_fmt(f['served_round_trip_ms_p50'])} / {_fmt(f['served_round_trip_ms_p99'])}",
         f"server's own inference: {_fmt(f['served_inference_ms_p50'])}", ""],
    ]  # fmt: skip


def _ratio(reference, ours) -> str:
    return "" if reference is None or ours is None else f"{reference / ours:.2f}x"


def _notes(f: dict) -> list[str]:
    size = f["deploy_venv_mb"]
    verdict = "-" if size is None else ("met" if size <= 300 else "NOT met")
    wire = (
        f["served_round_trip_ms_p50"] - f["served_inference_ms_p50"]
        if f["served_inference_ms_p50"] is not None
        else None
    )
    return [
        f"Target: the `[deploy]` venv <= 300 MB: {_fmt(size)} MB ({verdict}); built in "
        f"{_fmt(f['deploy_venv_build_s'])} s from the registry (pip's cache warm). The "
        "reference venv holds the CPU build of torch; with a CUDA torch it is GBs more.",
        f"Cold start: {f['cold_starts_per_variant']} starts of each node, interleaved; p50 "
        f"shown, slowest deploy start {_fmt(f['deploy_cold_start_s_max'])} s. It includes "
        "the first, full-chain prediction.",
        f"In-process latency: {f['warm_updates_timed']} warm updates per runtime, one thread "
        "each, on the same real observation.",
        f"Served: {f['served_requests']} requests from one client; the wire, the session and "
        f"the message checks add {_fmt(wire)} ms at p50 to the server's own inference.",
    ]
