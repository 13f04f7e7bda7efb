"""`warmloop demo explore`: generate → reconstruct → guide, over ZeroMQ.

The world node generates a stream with the DMD student along a camera path that leaves
and comes back, the reconstruction node fits it into the tri-plane memory, and the
memory guides what is generated next (launch/explore-world.yaml). It prints FPS and
first-frame latency and writes RUN_DIR/explore.mp4: generated | the memory's render.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from warmloop.demos.runs import (
    CHECKPOINTS,
    fresh_run_dir,
    read_json,
    run_exclusively,
    run_graph,
    write_result,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segments", type=int, default=12, help="8 frames each")
    parser.add_argument("--controls", default="loop", help="a trajectory or a key script")
    parser.add_argument("--run-dir", type=Path, help="default runs/explore")
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped student")


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = fresh_run_dir(args.run_dir, ("world.json", "reconstruction.json", "explore.mp4"))
    overrides = {
        "world.checkpoint": str(args.checkpoint.resolve()),
        "world.segments": args.segments,
        "world.controls": args.controls,
    }
    print(f"generating {args.segments} segments of 8 frames, with the memory in the loop ...")
    launched = run_graph("explore-world", run_dir, overrides)
    return {
        **launched,
        "world": read_json(run_dir / "world.json"),
        "video": str(run_dir / "explore.mp4"),
    }


def render(result: dict[str, Any]) -> str:
    world = result["world"]
    counters = world.get("counters", {})
    nan = float("nan")
    return "\n".join(
        [
            "",
            f"generated: {counters.get('frames', 0)} frames at "
            f"{world.get('fps', nan):.1f} FPS (paced; the generator alone: "
            f"{world.get('generation_fps', nan):.1f} FPS), first frame after "
            f"{world.get('first_frame_latency_ms', nan):.0f} ms",
            f"memory: {counters.get('keyframes', 0)} frames (the start frame and the plan "
            f"frames) sent to the reconstruction node, {counters.get('snapshots', 0)} "
            f"snapshots received; their render reached the generator on "
            f"{world.get('memory_guided_targets', 0)} frames and was withheld on "
            f"{world.get('memory_withheld_targets', 0)} (trust gates: docs/world_model.md)",
            *result["report"],
            f"outputs: video {result['video']} (generated | memory render)",
            f"         logs {result['log']}",
            f"took {result['seconds']:.0f} s",
        ]
    )


def main_from_args(args: argparse.Namespace) -> int:
    if args.segments < 1:
        sys.stderr.write(f"warmloop demo: --segments must be >= 1, got {args.segments}\n")
        return 2
    args.run_dir = args.run_dir or Path("runs") / "explore"
    args.checkpoint = args.checkpoint or CHECKPOINTS / "explore-student"
    result = run_exclusively("explore", args.run_dir, lambda: run(args))
    if isinstance(result, int):
        return result
    print(render(result))
    write_result(args.run_dir, result)
    if result["exit_code"]:
        return result["exit_code"]
    return 0 if result["world"].get("counters", {}).get("frames") else 1
