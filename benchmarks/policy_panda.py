"""`warmloop bench policy-panda`: `bench policy` on the Franka Panda's tasks.

The same samplers, seeds, episode counts and keys as `bench policy` (benchmarks/policy.py
says how each figure is made), on PandaPickPlace and PandaPushT: the arm under
differential IK at 100 Hz, policies at 10 Hz. A separate benchmark because the arm's
IK makes an episode step several times dearer than the mocap pusher's: the four tasks in
one run took 2 h 45 min on a 2-core CPU, and each half is re-run when its own code or
checkpoints change. Keys carry the task (`success_rti_panda-pusht`,
`latency_p50_ms_rti_panda-pusht`).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import BenchResult
from benchmarks.policy import run_tasks

TASKS = ("panda-pickplace", "panda-pusht")
PLOT = Path("docs") / "img" / "policy_panda_success_latency.png"


def run(size: str, checkpoints: Path) -> BenchResult:
    return run_tasks(size, checkpoints, TASKS, PLOT)
