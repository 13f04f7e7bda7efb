"""`warmloop bench runtime`: loop jitter, deadline misses and end-to-end latency.

1. Jitter. The sim node runs PickPlace at 50 Hz and at 100 Hz (its 10 Hz task clock
   scaled) against the ONNX RTI policy node in its own process, both under the
   launcher, for a fixed time. Jitter is each tick's start minus its deadline
   (cyclictest's "latency"); misses are ticks more than a period late.
2. End to end. This process publishes PickPlace observations at 50 Hz to the policy
   node and waits, blocking, for the chunk that answers each one: observation capture
   to chunk arrival, through ZeroMQ both ways, against the node's own RTI p50. Twice:
   the state policy on the state vector, and the image policy on proprioception plus
   its cameras' 96x96 frames (top and wrist) on the wire, as a robot would send them.
"""

from __future__ import annotations

import io
import json
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.harness import BenchResult, save_figure
from benchmarks.load import cpu_hogs
from benchmarks.runtime_delay import DELAY, SCALE, cross_check
from runtime.launch_file import LaunchGraph, NodeSpec
from runtime.rate import SPIN_WINDOW
from runtime.supervisor import Supervisor
from streams import Endpoint, Latest, Observation, Publisher, Queue, Subscriber

CHECKPOINT = "pickplace"
IMAGE_CHECKPOINT = "pickplace-image"
PLOT = Path("docs") / "img" / "runtime_jitter.png"


def _policy_spec(exported: Path, run: Path, dt: float) -> NodeSpec:
    argv = [str(exported), "--observations", f"ipc://{run}/sim.sock"]
    argv += ["--publish", f"ipc://{run}/policy.sock", "--dt", str(dt)]
    return NodeSpec("policy", "policies.node", [*argv, "--summary", str(run / "policy.json")])


@dataclass(frozen=True)
class Condition:
    """One jitter run: the sim's rate, its spin window, and whether a CPU hog runs."""

    label: str
    hz: int
    spin: float = SPIN_WINDOW
    hog: bool = False
    share: float = 1.0  # of the size's seconds


CONDITIONS = (
    Condition("50hz", 50),
    Condition("100hz", 100, share=0.5),
    Condition("50hz_hog", 50, hog=True, share=0.5),
    Condition("50hz_hog_nospin", 50, spin=0.0, hog=True, share=0.5),
)


def jitter_run(exported: Path, condition: Condition, seconds: float) -> dict:
    """The sim under `condition` with the policy node for `seconds`: both summaries."""
    with cpu_hogs(1 if condition.hog else 0):
        return _jitter_run(exported, condition.hz, condition.spin, seconds)


def _jitter_run(exported: Path, hz: int, spin: float, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        scale = hz / 10
        argv = ["--task", "pickplace", "--episodes", "100000", "--rate-scale", str(scale)]
        argv += ["--publish", f"ipc://{run}/sim.sock", "--actions", f"ipc://{run}/policy.sock"]
        argv += ["--wait-for-policy", "30", "--summary", str(run / "sim.json")]
        argv += ["--spin", str(spin)]
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
        chunks = Subscriber(f"ipc://{run}/policy.sock", {"action": Latest()})
        thread.start()
        try:
            _wait_for_first_chunk(chunks)
            time.sleep(seconds)
        finally:
            supervisor.stop()
            thread.join()
            chunks.close()
        return {
            "sim": json.loads((run / "sim.json").read_text()),
            "policy": json.loads((run / "policy.json").read_text()),
        }


def _wait_for_first_chunk(chunks: Subscriber, timeout: float = 120.0) -> None:
    # The timed window starts once both nodes run: on a loaded machine their imports
    # alone can outlast a smoke run's second, and a node stopped while importing
    # writes no summary.
    if chunks.recv("action", timeout=timeout) is None:
        raise RuntimeError(f"the policy sent no action chunk within {timeout:.0f} s")


def _observations(cameras: tuple[str, ...] = (), size: int = 96) -> list[Observation]:
    """Observations along one PickPlace expert episode, played in a loop: the state
    vector, or for an image policy its proprioception and each camera's frame."""
    from policies.images import render_frames
    from sim.envs import make_env, scene

    env = make_env("pickplace")
    observation, _ = env.reset(seed=100_000)
    task = scene("pickplace")
    expert = task.expert(env.unwrapped, np.random.default_rng(0))
    observations, done = [], False
    while not done:
        if cameras:
            state = observation[list(task.task.proprio_dims)]
            observations.append(Observation(state=state, images=render_frames(env, cameras, size)))
        else:
            observations.append(Observation(state=observation.astype(np.float32)))
        observation, _, terminated, truncated, _ = env.step(expert.act(observation))
        done = terminated or truncated
    env.close()
    return observations


def e2e_run(
    exported: Path, samples: int, hz: float = 50.0, cameras: tuple[str, ...] = ()
) -> tuple[np.ndarray, dict]:
    """Capture-to-arrival latency (ms) of `samples` warm chunks, and the policy's summary."""
    states = _observations(cameras)
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
        observation = states[step % len(states)]
        observation.step, observation.t_capture = step, sent
        publisher.publish("observation", observation)
        received = chunks.recv("action", timeout=period * 5)
        while received is not None and received.message.first_index < step:
            received = chunks.recv("action", timeout=period * 5)  # answers to older steps
        if received is not None:
            latencies.append(time.monotonic() - received.message.t_first)
        step += 1
        time.sleep(max(0.0, sent + period - time.monotonic()))
    return np.asarray(latencies[warm_up:]) * 1e3


# size -> (seconds of the 50 Hz jitter run, end-to-end samples, delay-cell episodes)
SIZES = {"full": (200, 3000, 100), "quick": (20, 300, 20), "smoke": (2, 20, 1)}


def run(size: str, checkpoints: Path) -> BenchResult:
    from policies.deploy.export import export

    seconds, samples, episodes = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        exported = Path(tmp) / "exported"
        export(checkpoints / CHECKPOINT, exported)
        jitter = {c.label: jitter_run(exported, c, seconds * c.share) for c in CONDITIONS}
        latencies, policy = e2e_run(exported, samples)
        delay = cross_check(checkpoints / CHECKPOINT, exported, episodes)
        image = _image_e2e(checkpoints / IMAGE_CHECKPOINT, Path(tmp) / "image", samples)
    result = _result(jitter, latencies, policy)
    result.figures.update(image)
    result.notes.insert(1, _image_note(result.figures))
    result.figures.update(delay)
    result.notes.insert(1, _delay_note(delay))
    result.files[str(PLOT)] = save_figure(_plot(jitter, latencies))
    return result


def _image_e2e(checkpoint: Path, exported: Path, samples: int) -> dict:
    """The end-to-end figures of the image policy, frames on the wire."""
    from policies.deploy.export import export
    from policies.deploy.manifest import read_manifest

    export(checkpoint, exported)
    cameras = read_manifest(exported).camera_names
    latencies, policy = e2e_run(exported, samples, cameras=cameras)
    return {
        "image_e2e_latency_p50_ms": float(np.percentile(latencies, 50)),
        "image_e2e_latency_p99_ms": float(np.percentile(latencies, 99)),
        "image_e2e_samples": int(latencies.size),
        "image_rti_inference_p50_ms": policy["latency_p50_ms"],
        "image_rti_inference_p99_ms": policy["latency_p99_ms"],
        "image_cameras": list(cameras),
    }


def _image_note(f: dict) -> str:
    budget = f["image_rti_inference_p50_ms"] + 2.0
    return (
        f"Image policy ({IMAGE_CHECKPOINT}: proprioception and a 96x96 RGB frame of each of "
        f"its cameras, {', '.join(f['image_cameras'])}, in every observation), end to end "
        f"through ZeroMQ, "
        f"{f['image_e2e_samples']} warm predictions at 50 Hz: p50 "
        f"{f['image_e2e_latency_p50_ms']:.2f} ms, p99 {f['image_e2e_latency_p99_ms']:.2f} ms; "
        f"the node's own inference (encoder and RTI update) p50 "
        f"{f['image_rti_inference_p50_ms']:.2f} ms. Target e2e p50 <= inference p50 + 2 ms = "
        f"{budget:.2f} ms: {_verdict(f['image_e2e_latency_p50_ms'] <= budget)}."
    )


def _plot(jitter: dict, latencies: np.ndarray):
    """Jitter histograms at both rates, and the end-to-end latency distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / len(jitter)
    for index, (label, run) in enumerate(jitter.items()):
        histogram = run["sim"]["jitter_histogram"]
        left.bar(
            np.arange(len(histogram)) + (index - (len(jitter) - 1) / 2) * width,
            list(histogram.values()),
            width=width,
            label=label,
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
    return figure


ROWS = (
    ("wake-up lateness p50 ms (before the spin)", "wake_p50_ms", "{:.3f}"),
    ("wake-up lateness p99 ms (before the spin)", "wake_p99_ms", "{:.3f}"),
    ("tick lateness p99 ms (after the spin)", "jitter_p99_ms", "{:.3f}"),
    ("tick lateness max ms", "jitter_max_ms", "{:.3f}"),
    ("deadline misses per 10k ticks", "misses_per_10k", "{:.1f}"),
    ("CPU spent spinning (share of a core)", "spin_cpu_share", "{:.3f}"),
    ("ticks", "ticks", "{}"),
)


def _result(jitter: dict, latencies: np.ndarray, policy: dict) -> BenchResult:
    rti_p50 = policy["latency_p50_ms"]
    figures: dict = {}
    for label, run in jitter.items():
        for _, key, _ in ROWS:
            figures[f"{key}_{label}"] = run["sim"].get(key)
        figures[f"actions_per_prediction_{label}"] = run["policy"].get("actions_per_prediction")
    figures.update(
        {
            "spin_window_ms": SPIN_WINDOW * 1e3,
            "e2e_latency_p50_ms": float(np.percentile(latencies, 50)),
            "e2e_latency_p99_ms": float(np.percentile(latencies, 99)),
            "e2e_samples": int(latencies.size),
            "rti_inference_p50_ms": rti_p50,
            "rti_inference_p99_ms": policy["latency_p99_ms"],
        }
    )
    table = [["what", *jitter]]
    for text, key, fmt in (
        *ROWS,
        ("actions executed per prediction", "actions_per_prediction", "{:.2f}"),
    ):
        table.append([text, *(_number(figures[f"{key}_{label}"], fmt) for label in jitter)])
    return BenchResult(figures=figures, table=table, notes=_notes(figures, rti_p50))


def _notes(f: dict, rti_p50: float) -> list[str]:
    e2e_budget = rti_p50 + 2.0
    loaded_wake, loaded_misses = f["wake_p99_ms_50hz_hog"], f["misses_per_10k_50hz_hog"]
    return [
        f"End to end, observation capture to chunk arrival through ZeroMQ (ipc), "
        f"{f['e2e_samples']} warm predictions at 50 Hz: p50 {f['e2e_latency_p50_ms']:.2f} ms, "
        f"p99 {f['e2e_latency_p99_ms']:.2f} ms; the policy node's own RTI inference p50 "
        f"{rti_p50:.2f} ms (p99 {f['rti_inference_p99_ms']:.2f}). Target e2e p50 <= RTI p50 "
        f"+ 2 ms = {e2e_budget:.2f} ms: {_verdict(f['e2e_latency_p50_ms'] <= e2e_budget)}.",
        f"Targets under load (50 Hz, a CPU hog on the machine): wake-up lateness p99 <= 2 ms: "
        f"{_number(loaded_wake, '{:.3f} ms')} "
        f"({_verdict(loaded_wake is not None and loaded_wake <= 2)}); "
        f"deadline misses <= 1 per 10k ticks: {_number(loaded_misses, '{:.1f}')} "
        f"({_verdict(loaded_misses is not None and loaded_misses <= 1)}).",
        f"Wake-up lateness is when time.sleep returned minus when it was asked to: what a "
        f"loop without spinning sees. The loop sleeps until {f['spin_window_ms']:.1f} ms before "
        "the deadline, then spins (`--spin`); tick lateness is measured after the spin, so "
        "it mostly shows how fast a spin loop notices the deadline, at the CPU cost in the "
        "table. The nospin column never spins: its tick lateness is its wake-up lateness.",
        "The sim steps PickPlace physics; the ONNX RTI policy node runs in its own process.",
        f"![jitter histograms and end-to-end latency]({Path(*PLOT.parts[1:])})",
    ]


def _delay_note(f: dict) -> str:
    def cell(name: str) -> str:
        return (
            f"{f[f'delay_cell_{name}_success']:.2f} [{f[f'delay_cell_{name}_success_low']:.2f}, "
            f"{f[f'delay_cell_{name}_success_high']:.2f}] over "
            f"{f[f'delay_cell_{name}_episodes']} episodes"
        )

    agree = "agree" if f["delay_cell_intervals_overlap"] else "DISAGREE"
    return (
        f"One cell of `bench realtime` through the runtime (benchmarks/runtime_delay.py): "
        f"PickPlace, RTI, the sim at {SCALE:g}x real time against the ONNX policy node "
        f"(inference p50 {f['delay_cell_policy_latency_p50_ms']:.2f} ms), realised delay "
        f"{f['delay_cell_realised_delay']:.2f} ticks: success {cell('runtime')}; the lockstep "
        f"model at d = {DELAY} on the same seeds: {cell('lockstep')}. Wilson 95% intervals "
        f"{agree}. The realised delay counts each episode's first chunk (the full DDPM "
        "chain, about 7 ticks late)."
    )


def _number(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"
