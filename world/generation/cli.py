"""Command-line entry points of the world model: train (teacher) and distill (student).

`warmloop train explore` trains the multi-step teacher on `warmloop collect explore`
data; `warmloop distill TEACHER` distils it into a few-step student with DMD.
Data-parallel: torchrun --nproc_per_node N $(which warmloop) train explore
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.arguments import add_training_arguments

log = logging.getLogger(__name__)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(
        parser,
        data="data/explore",
        out="checkpoints/explore-teacher",
        steps=13000,  # TeacherTraining's default (not imported here: it needs torch)
        batch_size=16,
        down_dims=(32, 64, 128),
        lr=3e-4,
    )
    parser.add_argument(
        "--no-geometry",
        action="store_true",
        help="do not condition on the depth-warped start frame and contexts (the ablation)",
    )


def _add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=int, help="CPU threads (default: every core this process may use)"
    )


def train_main(args: argparse.Namespace) -> int:
    from sim.dataset import DatasetError, load_episodes, read_meta
    from training.loop import run_training
    from training.threads import TRAINING, set_threads
    from world.generation.data import ExploreFrames
    from world.generation.generator import GeneratorConfig
    from world.generation.training import TeacherTraining, train_teacher

    set_threads(args.threads, TRAINING)
    data_dir = args.data or Path("data") / "explore"
    out = args.out or Path("checkpoints") / "explore-teacher"
    try:
        meta = read_meta(data_dir)
        if meta["task"] != "explore":
            raise ValueError(f"{data_dir} holds {meta['task']!r} data, not 'explore'")
        frames = ExploreFrames.from_episodes(load_episodes(data_dir))
        config = GeneratorConfig(
            image_size=frames.image_size,
            widths=tuple(args.down_dims),
            seed=args.seed,
            geometry=not args.no_geometry,
        )
        training = TeacherTraining(
            steps=args.steps,
            batch_size=args.batch_size,
            seed=args.seed,
            lr=args.lr,
        )
    except (DatasetError, ValueError) as exc:
        sys.stderr.write(f"warmloop train: {exc}\n")
        return 2
    return run_training(
        out,
        lambda device: train_teacher(
            frames, out, config, training, resume=not args.no_resume, device=device
        ),
        args.device,
    )


def add_distill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("teacher", type=Path, help="a teacher checkpoint (warmloop train explore)")
    parser.add_argument("--data", type=Path, help="dataset directory (default data/explore)")
    parser.add_argument("--out", type=Path, help="default checkpoints/explore-student")
    parser.add_argument("--steps", type=int, default=800, help="student updates")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--student-steps", type=int, default=2, help="sampling steps, 1..4")
    parser.add_argument("--lr", type=float, default=1e-5, help="the student's learning rate")
    parser.add_argument("--fake-updates", type=int, default=2, help="per student update")
    parser.add_argument(
        "--regression-weight",
        type=float,
        default=100.0,
        help="weight of the student's MSE to the true frame beside DMD (0: DMD alone)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    _add_threads(parser)


def distill_main(args: argparse.Namespace) -> int:
    from sim.dataset import DatasetError, load_episodes
    from training.checkpoint import CheckpointError
    from training.loop import resolve_device
    from training.threads import TRAINING, set_threads
    from world.generation.data import ExploreFrames
    from world.generation.distill import DistillConfig, distill

    set_threads(args.threads, TRAINING)
    data_dir = args.data or Path("data") / "explore"
    out = args.out or Path("checkpoints") / "explore-student"
    try:
        config = DistillConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            student_steps=args.student_steps,
            lr_student=args.lr,
            fake_updates=args.fake_updates,
            regression_weight=args.regression_weight,
            seed=args.seed,
        )
        frames = ExploreFrames.from_episodes(load_episodes(data_dir))
        result = distill(args.teacher, frames, out, config, device=resolve_device(args.device))
    except (CheckpointError, DatasetError, ValueError) as exc:
        sys.stderr.write(f"warmloop distill: {exc}\n")
        return 2
    sys.stdout.write(
        f"{out}: {config.steps} DMD updates, |g| {result['g_norm_first']:.4f} -> "
        f"{result['g_norm']:.4f}, fake-score loss {result['fake']:.4f}, "
        f"MSE to the truth {result['regression']:.4f}\n"
    )
    return 0
