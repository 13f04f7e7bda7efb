"""`warmloop demo manipulation`: the sim, the RTI policy and a recorder, over ZeroMQ.

It exports the shipped PickPlace checkpoint to ONNX (once; reused while the weights
are unchanged), runs launch/manipulation.yaml headless for N episodes, then prints the
success rate, control-rate statistics and inference latency, and where the MP4 of the
first episode and the MCAP recording are. Every node's log is in RUN_DIR/launch.log.
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
CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "pickplace"
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
    parser.add_argument("name", nargs="?", default="manipulation", choices=["manipulation"])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--backend", choices=["onnx", "torch"], default="onnx")
    parser.add_argument("--run-dir", type=Path, default=Path("runs") / "manipulation")
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)


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
    overrides: dict[str, Any] = {"sim.episodes": args.episodes}
    if args.backend == "torch":
        overrides.update({"policy.type": "policy_torch", "policy.policy": str(args.checkpoint)})
    else:
        ensure_export(args.checkpoint, run_dir / "exported")
    graph = load(resolve(args.name), run_dir, overrides)
    print(f"running {args.episodes} PickPlace episodes at 10 Hz ({args.backend} policy) ...")
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


def main_from_args(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        sys.stderr.write(f"warmloop demo: --episodes must be >= 1, got {args.episodes}\n")
        return 2
    result = run(args)
    print(render(result))
    (Path(args.run_dir) / "demo.json").write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["sim"].get("episodes") else 1
