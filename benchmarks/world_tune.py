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


def pooled(paths, targets, frames_of) -> dict[str, float]:
    """One row's scores over every tuning path; frames_of(path) -> (F, H, W, 3) uint8."""
    tally = world_truth.Tally()
    for path, target in zip(paths, targets, strict=True):
        target.score(frames_of(path), tally)
    return tally.summary()


def sampled(model, steps: int):
    """frames_of for a generator sampled with the warp and no memory."""
    return lambda path: world_truth.generated_rgb(
        generate(model, steps, path, "geometry", 0, None).frames
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("students", type=Path, nargs="+", help="student checkpoint folders")
    parser.add_argument("--teacher", type=Path, default=Path("checkpoints/explore-teacher"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    paths = tuning_paths(TUNING_SEEDS)
    targets = [world_truth.Targets.of(p) for p in paths]
    rows = {"warp-start": pooled(paths, targets, lambda p: world_truth.classical(p)["warp-start"])}
    students = {str(d): generator_checkpoint.load(d) for d in args.students}
    teacher = generator_checkpoint.load(args.teacher).build()
    # The teacher cut to each step count a candidate samples with: its reference.
    for steps in sorted({saved.sampling_steps for saved in students.values()}):
        rows[f"teacher-cut-{steps}"] = pooled(paths, targets, sampled(teacher, steps))
    for name, saved in students.items():
        rows[name] = pooled(paths, targets, sampled(saved.build(), saved.sampling_steps))
    json.dump({"seeds": list(TUNING_SEEDS), "rows": rows}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
