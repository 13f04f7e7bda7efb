"""`warmloop demo manipulation|explore`: the demos, end to end over ZeroMQ.

manipulation: the sim, the RTI policy and a recorder.

It exports the shipped PickPlace checkpoint to ONNX (once; reused while the weights
are unchanged), runs launch/manipulation.yaml headless for N episodes, then prints the
success rate, control-rate statistics and inference latency, and where the MP4 of the
first episode and the MCAP recording are. Every node's log is in RUN_DIR/launch.log.

explore: the world node generates a stream with the DMD student along a camera path
that leaves and comes back, the reconstruction node fits it into the tri-plane memory,
the memory guides what is generated next (launch/explore-world.yaml). It prints FPS and
first-frame latency and writes RUN_DIR/explore.mp4: generated | the memory's render.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from runtime.launch import load, report_lines, resolve
from runtime.supervisor import LaunchReport, Supervisor

log = logging.getLogger(__name__)
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
MANIPULATION_TASKS = ("pickplace", "pusht")
ECHOED = ("episode ", "restart", "exited", "ERROR", "Traceback")


class _LogTee:
    """Writes every node line to the log file; echoes the few a person wants to see."""

    def __init__(self, log_file: TextIO, echo: TextIO):
        self.log_file, self.echo = log_file, echo

    def write(self, text: str) -> None:
        self.log_file.write(text)
        if any(marker in text for marker in ECHOED):
            self.echo.write(text)

    def flush(self) -> None:
        self.log_file.flush()
        self.echo.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", nargs="?", default="manipulation", choices=["manipulation", "explore"]
    )
    parser.add_argument("--episodes", type=int, default=10, help="manipulation")
    parser.add_argument(
        "--task", choices=MANIPULATION_TASKS, default="pickplace", help="manipulation"
    )
    parser.add_argument("--backend", choices=["onnx", "torch"], default="onnx")
    parser.add_argument("--segments", type=int, default=12, help="explore: 8 frames each")
    parser.add_argument("--controls", default="loop", help="explore: trajectory or key script")
    parser.add_argument("--run-dir", type=Path, help="default runs/NAME")
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
    run_dir = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("sim.json", "policy.json", "run.mcap", "episode0.mp4"):
        (run_dir / stale).unlink(missing_ok=True)
    overrides: dict[str, Any] = {"sim.episodes": args.episodes, "sim.task": args.task}
    if args.backend == "torch":
        overrides.update({"policy.type": "policy_torch", "policy.policy": str(args.checkpoint)})
    else:
        ensure_export(args.checkpoint, run_dir / "exported")
    graph = load(resolve(args.name), run_dir, overrides)
    print(f"running {args.episodes} {args.task} episodes at 10 Hz ({args.backend} policy) ...")
    began = time.monotonic()
    with open(run_dir / "launch.log", "w", encoding="utf-8") as log_file:
        report = Supervisor(graph, output=_LogTee(log_file, sys.stdout)).run()
    return collect(run_dir, report, time.monotonic() - began)


def collect(run_dir: Path, report: LaunchReport, seconds: float) -> dict[str, Any]:
    from streams.recording import summarize

    def read(name: str) -> dict[str, Any]:
        path = run_dir / name
        return json.loads(path.read_text()) if path.exists() else {}

    sim, policy = read("sim.json"), read("policy.json")
    recording = run_dir / "run.mcap"
    topics = summarize(recording) if recording.exists() else {}
    return {
        "seconds": seconds,
        "sim": sim,
        "policy": policy,
        "recorded": {t: s.messages for t, s in topics.items()},
        "report": report_lines(report),
        "video": str(run_dir / "episode0.mp4"),
        "recording": str(recording),
        "log": str(run_dir / "launch.log"),
    }


def render(result: dict[str, Any]) -> str:
    sim, policy = result["sim"], result["policy"]
    episodes = sim.get("episodes", [])
    successes = sum(e["success"] for e in episodes)
    counters = sim.get("counters", {})
    lines = [
        "",
        f"success: {successes}/{len(episodes)} episodes",
        f"control: {sim.get('control_hz', float('nan')):.0f} Hz, {sim.get('ticks', 0)} ticks, "
        f"jitter p50 {sim.get('jitter_p50_ms', float('nan')):.2f} ms, "
        f"p99 {sim.get('jitter_p99_ms', float('nan')):.2f} ms, "
        f"{sim.get('missed_deadlines', 0)} missed deadlines, "
        f"{counters.get('held', 0)} steps held by the watchdog",
        f"inference (RTI, warm): p50 {policy.get('latency_p50_ms', float('nan')):.1f} ms, "
        f"p99 {policy.get('latency_p99_ms', float('nan')):.1f} ms, "
        f"{policy.get('actions_per_prediction', float('nan')):.2f} actions executed per "
        "prediction",
        *result["report"],
        f"recorded: {result['recorded']}",
        f"outputs: video {result['video']}",
        f"         recording {result['recording']} (warmloop replay FILE --info)",
        f"         logs {result['log']}",
        f"took {result['seconds']:.0f} s",
    ]
    return "\n".join(lines)


def run_explore(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("world.json", "reconstruction.json", "explore.mp4"):
        (run_dir / stale).unlink(missing_ok=True)
    overrides = {
        "world.checkpoint": str(args.checkpoint.resolve()),
        "world.segments": args.segments,
        "world.controls": args.controls,
    }
    graph = load(resolve("explore-world"), run_dir, overrides)
    print(f"generating {args.segments} segments of 8 frames, with the memory in the loop ...")
    began = time.monotonic()
    with open(run_dir / "launch.log", "w", encoding="utf-8") as log_file:
        report = Supervisor(graph, output=_LogTee(log_file, sys.stdout)).run()
    world_path = run_dir / "world.json"
    world = json.loads(world_path.read_text()) if world_path.exists() else {}
    return {
        "seconds": time.monotonic() - began,
        "world": world,
        "report": report_lines(report),
        "video": str(run_dir / "explore.mp4"),
        "log": str(run_dir / "launch.log"),
    }


def render_explore(result: dict[str, Any]) -> str:
    world = result["world"]
    counters = world.get("counters", {})
    return "\n".join(
        [
            "",
            f"generated: {counters.get('frames', 0)} frames at "
            f"{world.get('fps', float('nan')):.1f} FPS (paced; the generator alone: "
            f"{world.get('generation_fps', float('nan')):.1f} FPS), first frame after "
            f"{world.get('first_frame_latency_ms', float('nan')):.0f} ms",
            f"memory: {counters.get('keyframes', 0)} frames (the start frame and the plan "
            f"frames) sent to the reconstruction node, {counters.get('snapshots', 0)} "
            "snapshots used as guidance",
            *result["report"],
            f"outputs: video {result['video']} (generated | memory render)",
            f"         logs {result['log']}",
            f"took {result['seconds']:.0f} s",
        ]
    )


def main_from_args(args: argparse.Namespace) -> int:
    args.run_dir = args.run_dir or Path("runs") / args.name
    if args.name == "explore":
        if args.segments < 1:
            sys.stderr.write(f"warmloop demo: --segments must be >= 1, got {args.segments}\n")
            return 2
        args.checkpoint = args.checkpoint or CHECKPOINTS / "explore-student"
        result = run_explore(args)
        print(render_explore(result))
        (args.run_dir / "demo.json").write_text(json.dumps(result, indent=2, default=str))
        return 0 if result["world"].get("counters", {}).get("frames") else 1
    args.checkpoint = args.checkpoint or CHECKPOINTS / args.task
    if not (args.checkpoint / "config.json").exists():
        sys.stderr.write(f"warmloop demo: no checkpoint at {args.checkpoint}\n")
        return 2
    if args.episodes < 1:
        sys.stderr.write(f"warmloop demo: --episodes must be >= 1, got {args.episodes}\n")
        return 2
    result = run(args)
    print(render(result))
    (Path(args.run_dir) / "demo.json").write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["sim"].get("episodes") else 1
