"""`warmloop demo manipulation`: the sim, the RTI policy and a recorder over ZeroMQ.

It exports the shipped PickPlace checkpoint to ONNX (once; reused while the weights
are unchanged), runs launch/manipulation.yaml headless for N episodes, then prints the
success rate, control-rate statistics and inference latency, and where the MP4 of the
first episode and the MCAP recording are. Every node's log is in RUN_DIR/launch.log.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from warmloop.demos.runs import (
    CHECKPOINTS,
    fresh_run_dir,
    read_json,
    read_json_lines,
    run_exclusively,
    run_graph,
    write_result,
)

TASKS = ("pickplace", "pusht", "panda-pickplace", "panda-pusht")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=int, default=10)
    # The Franka Panda by default: the arm is what a robot-learning user recognises.
    parser.add_argument("--task", choices=TASKS, default="panda-pickplace")
    parser.add_argument("--backend", choices=["onnx", "torch"], default="onnx")
    parser.add_argument("--run-dir", type=Path, help="default runs/manipulation")
    parser.add_argument(
        "--obs",
        choices=["state", "image"],
        help="the policy's input: the state vector (the shipped TASK checkpoint), or camera "
        "frames and proprioception (the shipped TASK-image one); default: what --checkpoint "
        "sees, else the state",
    )
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped one")


def ensure_export(checkpoint: Path, out: Path) -> Path:
    """Export the checkpoint unless `out` already holds an export of the same weights."""
    manifest = out / "manifest.json"
    weights = json.loads((checkpoint / "config.json").read_text())["weights_sha256"]
    if (
        manifest.exists()
        and json.loads(manifest.read_text()).get("checkpoint_weights_sha256") == weights
    ):
        return out
    from policies.deploy.export import export

    print(f"exporting {checkpoint} to ONNX in {out} ...", flush=True)
    export(checkpoint, out)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    stale = ("sim.json", "policy.json", "episode0.mp4", "episodes.jsonl")
    run_dir = fresh_run_dir(args.run_dir, stale)
    for old in run_dir.glob("run*.mcap"):  # this run's recordings: run.mcap, run.1.mcap, ...
        old.unlink()
    overrides: dict[str, Any] = {"sim.episodes": args.episodes, "sim.task": args.task}
    if args.obs == "image":  # the sim sends what the policy sees: frames and proprioception
        config = json.loads((args.checkpoint / "config.json").read_text())["config"]
        overrides.update(
            {
                "sim.obs": "image",
                "sim.obs_cameras": ",".join(config["cameras"]),
                "sim.image_size": config["image_size"],
            }
        )
    if args.backend == "torch":
        overrides.update({"policy.type": "policy_torch", "policy.policy": str(args.checkpoint)})
    else:
        ensure_export(args.checkpoint, run_dir / "exported")
    print(
        f"running {args.episodes} {args.task} episodes at 10 Hz ({args.backend} policy on "
        f"{'camera images' if args.obs == 'image' else 'the state'}) ..."
    )
    launched = run_graph("manipulation", run_dir, overrides)
    return collect(run_dir, launched)


def collect(run_dir: Path, launched: dict[str, Any]) -> dict[str, Any]:
    from streams import DecodeError
    from streams.recording import summarize

    recording, video = run_dir / "run.mcap", run_dir / "episode0.mp4"
    topics = {}
    try:
        topics = summarize(recording) if recording.exists() else {}
    except (DecodeError, OSError) as exc:  # a recorder killed mid-write: say so, go on
        print(f"the recording {recording} is unreadable: {exc}", flush=True)
    return {
        **launched,
        # Episodes come from the sim's per-episode file, written as each one ends: they
        # survive a sim killed mid-run, which never writes sim.json.
        "episodes": read_json_lines(run_dir / "episodes.jsonl"),
        "sim": read_json(run_dir / "sim.json"),
        "policy": read_json(run_dir / "policy.json"),
        "recorded": {t: s.messages for t, s in topics.items()},
        "video": str(video) if video.exists() else None,  # None: no episode was filmed
        "recording": str(recording),
    }


def render(result: dict[str, Any]) -> str:
    sim, policy = result["sim"], result["policy"]
    episodes = [e for e in result["episodes"] if not e.get("interrupted")]
    interrupted = len(result["episodes"]) - len(episodes)
    successes = sum(e["success"] for e in episodes)
    counters = sim.get("counters", {})
    nan = float("nan")
    lines = [
        "",
        f"success: {successes}/{len(episodes)} episodes"
        + (f" ({interrupted} interrupted, not counted)" if interrupted else ""),
        f"control: {sim.get('control_hz', nan):.0f} Hz, {sim.get('ticks', 0)} ticks, "
        f"wake-up lateness p50 {sim.get('wake_p50_ms', nan):.2f} ms, "
        f"p99 {sim.get('wake_p99_ms', nan):.2f} ms (tick jitter p99 "
        f"{sim.get('jitter_p99_ms', nan):.2f} ms after the spin), "
        f"{sim.get('missed_deadlines', 0)} missed deadlines, "
        f"{counters.get('held', 0)} steps held by the watchdog",
        f"inference (RTI, warm): p50 {policy.get('latency_p50_ms', nan):.1f} ms, "
        f"p99 {policy.get('latency_p99_ms', nan):.1f} ms, "
        f"{policy.get('actions_per_prediction', nan):.2f} actions executed per prediction",
        *result["report"],
        f"recorded: {result['recorded']}",
        f"outputs: video {result['video'] or 'none (no episode was filmed)'}",
        f"         recording {result['recording']} (warmloop replay FILE --info)",
        f"         logs {result['log']}",
        f"took {result['seconds']:.0f} s",
    ]
    return "\n".join(lines)


def main_from_args(args: argparse.Namespace) -> int:
    args.run_dir = args.run_dir or Path("runs") / "manipulation"
    shipped = args.task if args.obs in (None, "state") else f"{args.task}-image"
    args.checkpoint = args.checkpoint or CHECKPOINTS / shipped
    if not (args.checkpoint / "config.json").exists():
        shipped_ones = sorted(p.parent.name for p in CHECKPOINTS.glob("*/config.json"))
        sys.stderr.write(
            f"warmloop demo: no checkpoint at {args.checkpoint} (shipped: {shipped_ones})\n"
        )
        return 2
    cameras = json.loads((args.checkpoint / "config.json").read_text())["config"].get("cameras")
    args.obs = args.obs or ("image" if cameras else "state")  # what the checkpoint sees
    if bool(cameras) != (args.obs == "image"):
        sees = f"sees through cameras {cameras}" if cameras else "sees the state only"
        sys.stderr.write(f"warmloop demo: {args.checkpoint} {sees}; --obs is {args.obs}\n")
        return 2
    if args.episodes < 1:
        sys.stderr.write(f"warmloop demo: --episodes must be >= 1, got {args.episodes}\n")
        return 2
    result = run_exclusively("manipulation", args.run_dir, lambda: run(args))
    if isinstance(result, int):
        return result
    print(render(result))
    write_result(args.run_dir, result)
    if result["exit_code"]:  # the launch's own verdict: a fault, a node given up on
        return result["exit_code"]
    return 0 if result["episodes"] else 1
