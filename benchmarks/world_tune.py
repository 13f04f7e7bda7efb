"""Choosing a world student on tuning paths that `warmloop bench world` never reports on.

`bench world` scores on the random walk drawn from seed 0. Distillation settings (the
regression weight, the step count) are chosen here instead, on random walks from seeds
1000 onwards, with the same rows: each checkpoint sampled with the warp and no memory
(the `geometry` mode), beside the depth warp of frame 0 and the teacher cut to the
student's step count.

    python -m benchmarks.world_tune checkpoints/explore-student runs/student-a ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks import world_truth
from benchmarks.world import N, generate
from sim import trajectories
from world.generation import checkpoint as generator_checkpoint
from world.generation.rollout import explore_path

TUNING_SEEDS = (1000, 1001, 1002)
SEGMENTS = 4  # 32 generated frames a path, as bench world's


def tuning_paths(seeds: tuple[int, ...]):
    return [
        explore_path(trajectories.random_walk(np.random.default_rng(s), SEGMENTS * N), s)
        for s in seeds
    ]


def score(model, steps: int, paths, targets) -> dict[str, float]:
    tallies = world_truth.Tally()
    for path, target in zip(paths, targets, strict=True):
        result = generate(model, steps, path, "geometry", 0, None)
        target.score(world_truth.generated_rgb(result.frames), tallies)
    return tallies.summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("students", type=Path, nargs="+", help="student checkpoint folders")
    parser.add_argument("--teacher", type=Path, default=Path("checkpoints/explore-teacher"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    paths = tuning_paths(TUNING_SEEDS)
    targets = [world_truth.Targets.of(p) for p in paths]
    rows: dict[str, dict[str, float]] = {}
    warp = world_truth.Tally()
    for path, target in zip(paths, targets, strict=True):
        target.score(world_truth.classical(path)["warp-start"], warp)
    rows["warp-start"] = warp.summary()
    students = {str(d): generator_checkpoint.load(d) for d in args.students}
    steps = next(iter(students.values())).sampling_steps
    teacher = generator_checkpoint.load(args.teacher).build()
    rows[f"teacher-cut-{steps}"] = score(teacher, steps, paths, targets)
    for name, saved in students.items():
        rows[name] = score(saved.build(), saved.sampling_steps, paths, targets)
    json.dump({"seeds": list(TUNING_SEEDS), "rows": rows}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
