"""`warmloop train TASK`: train a low-dimensional diffusion policy from a dataset.

Data-parallel on several GPUs or hosts:  torchrun --nproc_per_node N $(which warmloop) train TASK
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.arguments import add_training_arguments

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(
        parser,
        data="data/TASK",
        out="checkpoints/TASK",
        steps=20_000,
        batch_size=256,
        down_dims=(64, 128, 256),
        lr=None,
        lr_help="peak learning rate (default 1e-4)",
    )
    parser.add_argument(
        "--action-horizon",
        type=int,
        help="Ta, actions executed per chunk outside RTI (default 8; training does not use it)",
    )


def main_from_args(args: argparse.Namespace) -> int:
    # torch is imported below, not at the top, so that `warmloop --help` stays light.
    task = args.variant  # warmloop train TASK
    from policies.diffusion.configuration import DiffusionConfig
    from policies.diffusion.training import prepare, train
    from sim.dataset import DatasetError, load_episodes, read_meta
    from training.loop import run_training
    from training.threads import TRAINING, set_threads

    set_threads(args.threads, TRAINING)

    data_dir = args.data or Path("data") / task
    out = args.out or Path("checkpoints") / task
    try:
        meta = read_meta(data_dir)
        if meta["task"] != task:
            raise ValueError(f"{data_dir} holds {meta['task']!r} data, not {task!r}")
        episodes = load_episodes(data_dir, with_images=False)
        if not episodes:
            raise ValueError(f"{data_dir} has no complete episodes")
        config = DiffusionConfig(
            obs_dim=meta["obs_dim"],
            action_dim=meta["action_dim"],
            task=task,
            discrete_dims=tuple(meta["discrete_action_dims"]),
            num_steps=args.steps,
            batch_size=args.batch_size,
            down_dims=tuple(args.down_dims),
            seed=args.seed,
            warmup_steps=min(500, max(1, args.steps // 10)),
            **({} if args.lr is None else {"lr": args.lr}),
            **({} if args.action_horizon is None else {"action_horizon": args.action_horizon}),
        )
    except (DatasetError, ValueError) as exc:
        sys.stderr.write(f"warmloop train: {exc}\n")
        return 2
    data = prepare(
        config, [e.arrays["obs"] for e in episodes], [e.arrays["action"] for e in episodes]
    )
    return run_training(
        out,
        lambda device: train(config, data, out, resume=not args.no_resume, device=device),
        args.device,
    )
