"""Choosing a world student on tuning paths that `warmloop bench world` never reports on.

`bench world` scores on the random walk drawn from seed 0. Distillation settings (the
regression weight, the step count) are chosen here instead, on random walks from seeds
1000 onwards, with the same rows: each checkpoint sampled with the warp and no memory
(the `geometry` mode), beside the depth warp of frame 0 and the teacher cut to the
student's step count. With `--agreement DB ...` each student is also sampled `guided`,
as bench world's with-memory rows are (a memory fitted on frame 0 and the generated
frames), once per memory agreement gate (MemoryConfig.min_agreement_psnr), to choose that
gate off the benchmark path too.

    python -m benchmarks.world_tune checkpoints/explore-student runs/student-a ...
    python -m benchmarks.world_tune checkpoints/explore-student --agreement 22 26
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks import world_truth
from benchmarks.world import REVISIT_MEMORY, N, generate
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


def guided(model, steps: int, agreement_db: float, used: dict[str, int]):
    """frames_of for a generator sampled with the warp and a memory gated at
    `agreement_db`; counts the targets the memory reached (or not) into `used`."""
    config = dataclasses.replace(REVISIT_MEMORY, min_agreement_psnr=agreement_db)

    def frames_of(path):
        result = generate(model, steps, path, "guided", 0, config)
        for key, count in result.memory_use.items():
            used[key] = used.get(key, 0) + count
        return world_truth.generated_rgb(result.frames)

    return frames_of


def student_rows(name: str, saved, paths, targets, agreements: list[float]) -> dict:
    """One student's rows: the warp and no memory, then guided at each agreement gate."""
    model = saved.build()
    rows = {name: pooled(paths, targets, sampled(model, saved.sampling_steps))}
    for agreement_db in agreements:
        used: dict[str, int] = {}
        row = pooled(paths, targets, guided(model, saved.sampling_steps, agreement_db, used))
        counts = {f"memory_{key}_targets": count for key, count in used.items()}
        rows[f"{name} guided@{agreement_db:g}"] = row | counts
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("students", type=Path, nargs="+", help="student checkpoint folders")
    parser.add_argument("--teacher", type=Path, default=Path("checkpoints/explore-teacher"))
    parser.add_argument(
        "--agreement",
        type=float,
        nargs="*",
        default=[],
        metavar="DB",
        help="also sample each student guided, with the memory gated at each of these dB",
    )
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
        rows.update(student_rows(name, saved, paths, targets, args.agreement))
    json.dump({"seeds": list(TUNING_SEEDS), "rows": rows}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
