"""`warmloop bench runtime`: loop jitter, deadline misses and end-to-end latency.

1. Jitter. The sim node runs PickPlace at 50 Hz and at 100 Hz (its 10 Hz task clock
   scaled) against the ONNX RTI policy node in its own process, both under the
   launcher, for a fixed time. Jitter is each tick's start minus its deadline
   (cyclictest's "latency"); misses are ticks more than a period late.
2. End to end. This process publishes PickPlace observations at 50 Hz to the policy
   node and waits, blocking, for the chunk that answers each one: observation capture
   to chunk arrival, through ZeroMQ both ways, against the node's own RTI p50.
"""

from __future__ import annotations

import io
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import BenchResult, project_root
from runtime.launch_file import LaunchGraph, NodeSpec
from runtime.supervisor import Supervisor
from streams import Endpoint, Observation, Publisher, Queue, Subscriber

CHECKPOINT = Path("checkpoints") / "pickplace"
PLOT = Path("docs") / "img" / "runtime_jitter.png"


def _policy_spec(exported: Path, run: Path, dt: float) -> NodeSpec:
    argv = [str(exported), "--observations", f"ipc://{run}/sim.sock"]
    argv += ["--publish", f"ipc://{run}/policy.sock", "--dt", str(dt)]
    return NodeSpec("policy", "policies.node", [*argv, "--summary", str(run / "policy.json")])


def jitter_run(exported: Path, hz: int, seconds: float) -> dict:
    """Sim at `hz` with the policy node, for `seconds`; the sim's and policy's summaries."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        scale = hz / 10
        argv = ["--task", "pickplace", "--episodes", "100000", "--rate-scale", str(scale)]
        argv += ["--publish", f"ipc://{run}/sim.sock", "--actions", f"ipc://{run}/policy.sock"]
        argv += ["--wait-for-policy", "30", "--summary", str(run / "sim.json")]
        sim = NodeSpec(
            "sim",
            "sim.node",
            argv,
            ends_run=True,
        )
        graph = LaunchGraph(
            "bench", run / "bench.yaml", [sim, _policy_spec(exported, run, 1 / hz)], []
        )
        supervisor = Supervisor(graph, output=io.StringIO(), handle_signals=False)
        thread = threading.Thread(target=supervisor.run)
        thread.start()
        time.sleep(seconds)
        supervisor.stop()
        thread.join()
        return {
            "sim": json.loads((run / "sim.json").read_text()),
            "policy": json.loads((run / "policy.json").read_text()),
        }


def _observations() -> np.ndarray:
    """States along one PickPlace expert episode, played in a loop."""
    from sim.envs import make_env, scene

    env = make_env("pickplace")
    observation, _ = env.reset(seed=100_000)
    expert = scene("pickplace").expert(env.unwrapped, np.random.default_rng(0))
    states, done = [observation], False
    while not done:
        observation, _, terminated, truncated, _ = env.step(expert.act(observation))
        states.append(observation)
        done = terminated or truncated
    env.close()
    return np.asarray(states, np.float32)


def e2e_run(exported: Path, samples: int, hz: float = 50.0) -> tuple[np.ndarray, dict]:
    """Capture-to-arrival latency (ms) of `samples` warm chunks, and the policy's summary."""
    states = _observations()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        graph = LaunchGraph("e2e", run / "e2e.yaml", [_policy_spec(exported, run, 1 / hz)], [])
        supervisor = Supervisor(graph, output=io.StringIO(), handle_signals=False)
        thread = threading.Thread(target=supervisor.run)
        publisher = Publisher(Endpoint(f"ipc://{run}/sim.sock", bind=True), source="bench")
        chunks = Subscriber(f"ipc://{run}/policy.sock", {"action": Queue(1000)})
        thread.start()
        try:
            latencies = _measure(publisher, chunks, states, samples, 1 / hz)
        finally:
            supervisor.stop()
            thread.join()
            publisher.close()
            chunks.close()
        return latencies, json.loads((run / "policy.json").read_text())


def _measure(publisher, chunks, states, samples: int, period: float) -> np.ndarray:
    latencies, step, warm_up = [], 0, 20
    deadline = time.monotonic() + 120
    while len(latencies) < samples + warm_up and time.monotonic() < deadline:
        sent = time.monotonic()
        publisher.publish(
            "observation", Observation(state=states[step % len(states)], step=step, t_capture=sent)
        )
        received = chunks.recv("action", timeout=period * 5)
        while received is not None and received.message.first_index < step:
            received = chunks.recv("action", timeout=period * 5)  # answers to older steps
        if received is not None:
            latencies.append(time.monotonic() - received.message.t_first)
        step += 1
        time.sleep(max(0.0, sent + period - time.monotonic()))
    return np.asarray(latencies[warm_up:]) * 1e3


def run(quick: bool) -> BenchResult:
    from policies.deploy.export import export

    seconds, samples = (20, 300) if quick else (200, 3000)
    with tempfile.TemporaryDirectory() as tmp:
        exported = Path(tmp) / "exported"
        export(project_root() / CHECKPOINT, exported)
        jitter = {
            hz: jitter_run(exported, hz, seconds if hz == 50 else seconds / 2) for hz in (50, 100)
        }
        latencies, policy = e2e_run(exported, samples)
    _plot(jitter, latencies, project_root() / PLOT)
    return _result(jitter, latencies, policy)


def _plot(jitter: dict, latencies: np.ndarray, path: Path) -> None:
    """Jitter histograms at both rates, and the end-to-end latency distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for hz, run in jitter.items():
        histogram = run["sim"]["jitter_histogram"]
        left.bar(
            np.arange(len(histogram)) + (0.2 if hz == 100 else -0.2),
            list(histogram.values()),
            width=0.4,
            label=f"{hz} Hz",
        )
        left.set_xticks(range(len(histogram)), list(histogram), rotation=60, fontsize=7)
    left.set_yscale("log")
    left.set_ylabel("ticks")
    left.set_title("tick start minus deadline")
    left.legend()
    right.hist(latencies, bins=60)
    right.set_xlabel("ms")
    right.set_title("observation → chunk arrival (50 Hz, ipc)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _result(jitter: dict, latencies: np.ndarray, policy: dict) -> BenchResult:
    sim50, sim100 = jitter[50]["sim"], jitter[100]["sim"]
    rti_p50 = policy["latency_p50_ms"]
    figures = {
        "jitter_p50_ms_50hz": sim50["jitter_p50_ms"],
        "jitter_p99_ms_50hz": sim50["jitter_p99_ms"],
        "jitter_max_ms_50hz": sim50["jitter_max_ms"],
        "jitter_p50_ms_100hz": sim100["jitter_p50_ms"],
        "jitter_p99_ms_100hz": sim100["jitter_p99_ms"],
        "jitter_max_ms_100hz": sim100["jitter_max_ms"],
        "ticks_50hz": sim50["ticks"],
        "ticks_100hz": sim100["ticks"],
        "deadline_misses_per_10k_50hz": 1e4 * sim50["missed_deadlines"] / sim50["ticks"],
        "deadline_misses_per_10k_100hz": 1e4 * sim100["missed_deadlines"] / sim100["ticks"],
        "actions_per_prediction_50hz": jitter[50]["policy"].get("actions_per_prediction"),
        "actions_per_prediction_100hz": jitter[100]["policy"].get("actions_per_prediction"),
        "e2e_latency_p50_ms": float(np.percentile(latencies, 50)),
        "e2e_latency_p99_ms": float(np.percentile(latencies, 99)),
        "e2e_samples": int(latencies.size),
        "rti_inference_p50_ms": rti_p50,
        "rti_inference_p99_ms": policy["latency_p99_ms"],
    }
    table = [["what", "50 Hz", "100 Hz"]]
    for label, key in (
        ("jitter p50 ms", "jitter_p50_ms"),
        ("jitter p99 ms", "jitter_p99_ms"),
        ("jitter max ms", "jitter_max_ms"),
    ):
        table.append([label, f"{figures[key + '_50hz']:.3f}", f"{figures[key + '_100hz']:.3f}"])
    table += [
        ["ticks", str(figures["ticks_50hz"]), str(figures["ticks_100hz"])],
        [
            "deadline misses per 10k ticks",
            f"{figures['deadline_misses_per_10k_50hz']:.1f}",
            f"{figures['deadline_misses_per_10k_100hz']:.1f}",
        ],
        [
            "actions executed per prediction",
            f"{figures['actions_per_prediction_50hz']:.2f}",
            f"{figures['actions_per_prediction_100hz']:.2f}",
        ],
    ]
    e2e_budget = rti_p50 + 2.0
    notes = [
        f"End to end, observation capture to chunk arrival through ZeroMQ (ipc), "
        f"{figures['e2e_samples']} warm predictions at 50 Hz: p50 "
        f"{figures['e2e_latency_p50_ms']:.2f} ms, p99 {figures['e2e_latency_p99_ms']:.2f} ms; "
        f"the policy node's own RTI inference p50 {rti_p50:.2f} ms "
        f"(p99 {figures['rti_inference_p99_ms']:.2f}). Target e2e p50 <= RTI p50 + 2 ms = "
        f"{e2e_budget:.2f} ms: {_verdict(figures['e2e_latency_p50_ms'] <= e2e_budget)}.",
        f"Target jitter p99 <= 1 ms at 50 Hz: {figures['jitter_p99_ms_50hz']:.3f} ms "
        f"({_verdict(figures['jitter_p99_ms_50hz'] <= 1.0)}).",
        "Jitter is each tick's start minus its deadline; the sim steps PickPlace physics and "
        "the ONNX RTI policy node runs in its own process on the other core.",
        f"![jitter histograms and end-to-end latency]({Path(*PLOT.parts[1:])})",
    ]
    return BenchResult(figures=figures, table=table, notes=notes)


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"
