"""`warmloop train TASK`: train a diffusion policy from a dataset.

On the state vector by default; `--obs image` on camera frames (collected with
`warmloop collect TASK --images`) and the task's proprioception (policies/diffusion/
vision.py).

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
    parser.add_argument(
        "--checkpoint-every", type=int, default=1000, help="steps between saves (default 1000)"
    )
    parser.add_argument(
        "--snapshots",
        action="store_true",
        help="keep every save in OUT/snapshots/step-N with its training time, for "
        "`python -m benchmarks.training_curve`",
    )
    images = parser.add_argument_group("image observations (--obs image)")
    images.add_argument(
        "--obs",
        choices=["state", "image"],
        default="state",
        help="state: the whole state vector; image: camera frames and proprioception",
    )
    images.add_argument(
        "--cameras", nargs="+", help="cameras to see through (default: the dataset's)"
    )
    images.add_argument("--backbone", choices=["small", "resnet18"], default="small")
    images.add_argument(
        "--crop-size", type=int, help="random-crop size in training (default: 7/8 of the frame)"
    )
    images.add_argument("--image-features", type=int, default=64, help="features per camera")
    images.add_argument(
        "--aux-state-weight",
        type=float,
        help="also train the image features to predict the state the policy does not see "
        "(the observation's entries beyond proprioception, e.g. the cube), by a linear "
        "head and this weight beside the denoising loss; training only (default: off)",
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
        episodes = load_episodes(data_dir, with_images=args.obs == "image")
        if not episodes:
            raise ValueError(f"{data_dir} has no complete episodes")
        if args.aux_state_weight is not None and args.obs != "image":
            raise ValueError("--aux-state-weight trains image features: it needs --obs image")
        fields = {"obs_dim": meta["obs_dim"]}
        if args.obs == "image":
            fields = _image_fields(args, meta, task)
        config = DiffusionConfig(
            **fields,
            action_dim=meta["action_dim"],
            task=task,
            discrete_dims=tuple(meta["discrete_action_dims"]),
            num_steps=args.steps,
            checkpoint_every=args.checkpoint_every,
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
    frames = {c: [e.arrays[f"images/{c}/rgb"] for e in episodes] for c in config.cameras}
    data = prepare(
        config,
        [e.arrays["obs"] for e in episodes],
        [e.arrays["action"] for e in episodes],
        frames or None,
    )
    return run_training(
        out,
        lambda device: train(
            config, data, out, resume=not args.no_resume, device=device, snapshots=args.snapshots
        ),
        args.device,
    )


def _image_fields(args: argparse.Namespace, meta: dict, task: str) -> dict:
    """The DiffusionConfig fields of an image policy, from the flags and the dataset."""
    from sim.envs import scene

    recorded = list(meta.get("cameras") or [])
    if not meta.get("images") or not recorded:
        raise ValueError(f"{args.data or 'the dataset'} has no images: collect with --images")
    cameras = tuple(args.cameras or recorded)
    missing = [c for c in cameras if c not in recorded]
    if missing:
        raise ValueError(f"cameras {missing} were not recorded; the dataset has {recorded}")
    size = int(meta["image_size"])
    state_dims = tuple(scene(task).task.proprio_dims)
    aux = {}
    if args.aux_state_weight is not None:
        hidden = tuple(d for d in range(int(meta["obs_dim"])) if d not in state_dims)
        aux = {"aux_state_dims": hidden, "aux_state_weight": args.aux_state_weight}
    return {
        **aux,
        "cameras": cameras,
        "state_dims": state_dims,
        "image_size": size,
        "crop_size": args.crop_size or size * 7 // 8,
        "backbone": args.backbone,
        "image_features": args.image_features,
        "obs_dim": len(state_dims),
    }
