"""`warmloop train TASK`: train a low-dimensional diffusion policy from a dataset.

Data-parallel on several GPUs or hosts:  torchrun --nproc_per_node N $(which warmloop) train TASK
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "task", help="pickplace or pusht (a policy), or explore (the world generator)"
    )
    parser.add_argument("--data", type=Path, help="dataset directory (default data/TASK)")
    parser.add_argument("--out", type=Path, help="checkpoint directory (default checkpoints/TASK)")
    parser.add_argument("--steps", type=int, help="optimiser steps (default 20000; explore 6000)")
    parser.add_argument("--batch-size", type=int, help="default 256; explore 16")
    parser.add_argument(
        "--down-dims",
        type=int,
        nargs="+",
        help="U-Net widths (default 64 128 256; explore 32 64 128)",
    )
    parser.add_argument("--lr", type=float, help="peak learning rate (default 1e-4; explore 3e-4)")
    parser.add_argument(
        "--action-horizon",
        type=int,
        help="Ta, actions executed per chunk outside RTI (default 8; training does not use it)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--no-resume", action="store_true", help="start from scratch")


def main_from_args(args: argparse.Namespace) -> int:
    # torch is imported below, not at the top, so that `warmloop --help` stays light.
    if args.task == "explore":
        from world.cli import train_main

        return train_main(args)
    args.steps = args.steps or 20_000
    args.batch_size = args.batch_size or 256
    from policies.diffusion.configuration import DiffusionConfig
    from policies.diffusion.training import prepare, train
    from sim.dataset import DatasetError, load_episodes, read_meta

    data_dir = args.data or Path("data") / args.task
    out = args.out or Path("checkpoints") / args.task
    try:
        meta = read_meta(data_dir)
        if meta["task"] != args.task:
            raise ValueError(f"{data_dir} holds {meta['task']!r} data, not {args.task!r}")
        episodes = load_episodes(data_dir, with_images=False)
        if not episodes:
            raise ValueError(f"{data_dir} has no complete episodes")
        config = DiffusionConfig(
            obs_dim=meta["obs_dim"],
            action_dim=meta["action_dim"],
            task=args.task,
            discrete_dims=tuple(meta["discrete_action_dims"]),
            num_steps=args.steps,
            batch_size=args.batch_size,
            down_dims=tuple(args.down_dims or (64, 128, 256)),
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


def resolve_device(name: str) -> str:
    """ "auto" is CUDA when there is a GPU, else the CPU; anything else as given."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def run_training(out: Path, train_on: Callable[[str], dict], device: str = "auto") -> int:
    """Join torchrun's group when under it, train on this rank's device, report on rank 0.

    Shared by `warmloop train` for policies and for the world generator.
    """
    import torch

    from policies.diffusion.checkpoint import CheckpointError
    from policies.diffusion.training import init_distributed

    device = resolve_device(device)
    distributed = init_distributed()
    if distributed and device == "cuda":
        device = f"cuda:{torch.distributed.get_rank() % torch.cuda.device_count()}"
    try:
        result = train_on(device)
    except CheckpointError as exc:
        sys.stderr.write(f"warmloop train: cannot resume: {exc}\n")
        return 2
    if not distributed or torch.distributed.get_rank() == 0:
        agree = result.get("replica_hash")
        sys.stdout.write(
            f"{out}: {result['steps']} steps, loss {result['first_loss']:.4f} -> "
            f"{result['final_loss']:.4f}"
            + (f", replicas agree ({agree[:12]})" if agree else "")
            + "\n"
        )
    if distributed:
        torch.distributed.destroy_process_group()
    return 0
