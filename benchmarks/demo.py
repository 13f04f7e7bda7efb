"""`warmloop bench demo`: the manipulation demo, run as a user runs it, recorded.

It runs `warmloop demo manipulation --obs image` (`make demo`) in a child process (10
episodes; 3 with --quick) and records what the demo printed and wrote: successes,
control-rate figures, RTI latency. The README's demo block is these lines, and a test
holds the two together.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import BenchResult, project_root

SIZES = {"full": 10, "quick": 3, "smoke": 1}
SHOWN = ("success:", "control:", "inference (RTI, warm):", "launch ended by")


def run(size: str, checkpoints: Path) -> BenchResult:
    episodes = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="warmloop-demo-") as tmp:
        command = [
            *(sys.executable, "-m", "warmloop.cli", "demo", "manipulation"),
            *("--episodes", str(episodes), "--run-dir", tmp),
            *("--obs", "image", "--checkpoint", str(checkpoints / "panda-pickplace-image")),
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=project_root(), timeout=1800
        )
        if done.returncode != 0:
            raise RuntimeError(f"the demo failed ({done.returncode}): {done.stderr[-2000:]}")
        recorded = json.loads((Path(tmp) / "demo.json").read_text(encoding="utf-8"))
    shown = [line for line in done.stdout.splitlines() if line.startswith(SHOWN)]
    sim, policy = recorded["sim"], recorded["policy"]
    played = [e for e in recorded["episodes"] if not e.get("interrupted")]
    figures = {
        "episodes": len(played),
        "successes": sum(e["success"] for e in played),
        "control_hz": sim.get("control_hz"),
        "ticks": sim.get("ticks"),
        "jitter_p50_ms": sim.get("jitter_p50_ms"),
        "jitter_p99_ms": sim.get("jitter_p99_ms"),
        "missed_deadlines": sim.get("missed_deadlines"),
        "held_steps": sim.get("counters", {}).get("held", 0),
        "latency_p50_ms_rti": policy.get("latency_p50_ms"),
        "latency_p99_ms_rti": policy.get("latency_p99_ms"),
        "actions_per_prediction": policy.get("actions_per_prediction"),
        "seconds": recorded["seconds"],
        "printed": "\n".join(shown),
    }
    table = [["the demo printed"], *[[line] for line in shown]]
    notes = [
        f"`warmloop demo manipulation --obs image --episodes {episodes}`, headless, in a child "
        f"process; {figures['seconds']:.0f} s from launch to the last node's exit.",
        "The README's demo block is the `printed` lines of benchmarks/results/demo.json "
        "(tests/test_readme.py checks it).",
    ]
    return BenchResult(figures, table, notes)
