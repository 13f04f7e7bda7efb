"""One cell of `bench realtime`'s matrix through the asynchronous runtime (issue #21).

`bench realtime` runs every method in `warmloop eval`'s lockstep delay model. Here the
real thing runs: the sim node plays PickPlace 4x faster than real time (25 ms ticks)
against the ONNX RTI policy node in its own process, as `warmloop launch manipulation`
wires them. The sim publishes observation t, sleeps to the tick's deadline, then
executes the row due then; physics moves only in the step after it. A chunk that
arrives within the tick (inference of a few ms) therefore plays from its first row on
the very state it was predicted from: the lockstep model's d = 0. Each tick of
inference more skips one row: d = the rows already past when a chunk arrives, which
the sim counts (`late_actions`); the realised delay is their mean per chunk. It
includes each episode's first chunk, RTI's full DDPM chain (~180 ms, 7 ticks): the sim
waits for it at rest (--wait-for-policy) and starts 7 rows in, where the lockstep
model's first chunk plays from its first row.

The same seeds run through the lockstep model with RTI at d = 0 (torch, as `bench
realtime` runs it), in this run. The two success rates should agree within their
Wilson intervals.
"""

from __future__ import annotations

import io
import json
import tempfile
import threading
from pathlib import Path

from policies import seeds
from runtime.launch_file import LaunchGraph, NodeSpec
from runtime.stats import wilson_interval
from runtime.supervisor import Supervisor

SCALE = 4.0  # the sim's rate over real time: 25 ms ticks for PickPlace's 10 Hz
TASK = "pickplace"
DELAY = 0  # the lockstep cell the runtime is compared with


def runtime_cell(exported: Path, episodes: int, scale: float = SCALE) -> dict:
    """Success and realised delay of `episodes` runtime episodes on the reporting seeds."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        sim_argv = ["--task", TASK, "--episodes", str(episodes), "--seed", str(seeds.REPORT)]
        sim_argv += ["--rate-scale", str(scale), "--wait-for-policy", "30"]
        sim_argv += ["--publish", f"ipc://{run}/sim.sock", "--actions", f"ipc://{run}/policy.sock"]
        sim_argv += ["--summary", str(run / "sim.json")]
        policy_argv = [str(exported), "--observations", f"ipc://{run}/sim.sock"]
        policy_argv += ["--publish", f"ipc://{run}/policy.sock", "--dt", str(0.1 / scale)]
        policy_argv += ["--summary", str(run / "policy.json")]
        graph = LaunchGraph(
            "delay",
            run / "delay.yaml",
            [
                NodeSpec("sim", "sim.node", sim_argv, ends_run=True),
                NodeSpec("policy", "policies.node", policy_argv),
            ],
            [],
        )
        supervisor = Supervisor(graph, output=io.StringIO(), handle_signals=False)
        thread = threading.Thread(target=supervisor.run)
        thread.start()
        thread.join(timeout=60 + episodes * 100 * 0.1 / scale * 3)
        if thread.is_alive():
            supervisor.stop()
            thread.join()
        sim = json.loads((run / "sim.json").read_text())
        policy = json.loads((run / "policy.json").read_text())
    played = [e for e in sim["episodes"] if not e.get("interrupted")]
    successes = sum(bool(e["success"]) for e in played)
    chunks = max(sim.get("executor_chunks", 0), 1)
    return {
        "episodes": len(played),
        "successes": successes,
        "success_rate": successes / max(len(played), 1),
        "realised_delay": sim.get("executor_late_actions", 0) / chunks,
        "late_chunks": sim.get("executor_late_chunks", 0),
        "latency_p50_ms": policy.get("latency_p50_ms", float("nan")),
    }


def lockstep_cell(checkpoint_dir: Path, episodes: int) -> dict:
    """The same seeds in `bench realtime`'s lockstep model: RTI as shipped, d = 0."""
    from benchmarks.realtime import METHODS, run_cell
    from policies.diffusion.checkpoint import load

    rti = next(m for m in METHODS if m.name == "rti")
    result = run_cell(load(checkpoint_dir), rti, DELAY, episodes, seeds.REPORT)
    successes = round(result.success_rate * result.episodes)
    return {
        "episodes": result.episodes,
        "successes": successes,
        "success_rate": successes / result.episodes,
    }


def cross_check(checkpoint_dir: Path, exported: Path, episodes: int) -> dict[str, float]:
    runtime = runtime_cell(exported, episodes)
    lockstep = lockstep_cell(checkpoint_dir, episodes)
    figures: dict[str, float] = {}
    for name, cell in (("runtime", runtime), ("lockstep", lockstep)):
        low, high = wilson_interval(cell["successes"], max(cell["episodes"], 1))
        figures.update(
            {
                f"delay_cell_{name}_success": cell["success_rate"],
                f"delay_cell_{name}_success_low": low,
                f"delay_cell_{name}_success_high": high,
                f"delay_cell_{name}_episodes": cell["episodes"],
            }
        )
    figures["delay_cell_realised_delay"] = runtime["realised_delay"]
    figures["delay_cell_late_chunks"] = runtime["late_chunks"]
    figures["delay_cell_policy_latency_p50_ms"] = runtime["latency_p50_ms"]
    figures["delay_cell_intervals_overlap"] = float(
        figures["delay_cell_runtime_success_low"] <= figures["delay_cell_lockstep_success_high"]
        and figures["delay_cell_lockstep_success_low"] <= figures["delay_cell_runtime_success_high"]
    )
    return figures
