"""`warmloop eval CHECKPOINT`: its arguments, loading a checkpoint or an export, the report.

The closed loop itself is policies/diffusion/evaluate.py; `calibrate-rti` shares the RTI
and thread arguments defined here.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from policies.diffusion.evaluate import DEFAULT_NUM_ENVS, EVAL_SEED, evaluate
from policies.diffusion.execution import add_delay_arguments, check_timing, frozen_rows
from policies.diffusion.inpainting import DEFAULT_BETA


def add_rti_arguments(parser: argparse.ArgumentParser) -> None:
    """How a warm RTI update enters and walks the chain from K'; eval and calibrate-rti."""
    parser.add_argument(
        "--warm-start",
        choices=["state", "renoise"],
        help="RTI: the shifted guess as the state at K' (the paper) or re-noised to level K' "
        "(Diffuser); default: the checkpoint's",
    )
    parser.add_argument(
        "--rti-sampler",
        choices=["ddpm", "ddim"],
        help="RTI: denoise from K' with stochastic DDPM (the paper) or deterministic DDIM; "
        "default: the checkpoint's",
    )
    parser.add_argument(
        "--rti-steps",
        type=int,
        help="RTI with DDIM: network calls per update, spaced evenly from K' to 0 "
        "(0: all K'+1); default: the checkpoint's",
    )
    parser.add_argument(
        "--anchor-every",
        type=int,
        help="RTI re-anchoring: every Nth prediction of an episode is a cold DDIM one "
        "(0: never); default: the checkpoint's",
    )
    parser.add_argument(
        "--anchor-steps",
        type=int,
        help="RTI re-anchoring: DDIM steps of an anchor; default: the checkpoint's",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", type=Path, help="checkpoint directory, or an exported (ONNX) one"
    )
    parser.add_argument("--sampler", choices=["ddpm", "ddim", "rti"], default="rti")
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps")
    parser.add_argument("--k-prime", type=int, help="RTI warm-start step (default: checkpoint)")
    add_rti_arguments(parser)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument(
        "--execute",
        type=int,
        help="actions executed per prediction (default: 1 for rti, Ta else; at least "
        "delay + jitter, since one inference runs at a time)",
    )
    add_delay_arguments(parser)
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help="first evaluation seed")
    parser.add_argument(
        "--num-envs",
        type=int,
        help="environments stepped in lockstep, their predictions batched (default: 8 for "
        "a checkpoint, 1 for an export); latency is per batched call, so use 1 to see what "
        "one robot would",
    )
    parser.add_argument("--video", type=Path, help="write an MP4 of the first episode here")
    parser.add_argument(
        "--out",
        type=Path,
        help="write DIR/eval.json: the figures, every episode's seed, success, score and "
        "length, and the command",
    )
    parser.add_argument(
        "--videos", type=int, default=0, help="with --out: DIR/episodeI.mp4 for the first N"
    )
    add_threads_argument(parser, "1, for inference")


def add_threads_argument(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"CPU threads for the network (default: {default}; docs/runtime.md has the rule)",
    )


def main_from_args(args: argparse.Namespace) -> int:
    try:
        policy, task, executed = load_policy(args)
        if args.episodes < 1:
            raise ValueError(f"--episodes must be at least 1, got {args.episodes}")
        exported = not hasattr(policy, "infer_batch")
        num_envs = args.num_envs
        if num_envs is None:
            num_envs = 1 if exported else DEFAULT_NUM_ENVS
        if num_envs < 1:
            raise ValueError(f"--num-envs must be at least 1, got {num_envs}")
        if num_envs > 1 and exported:
            raise ValueError("an exported policy predicts one episode at a time: --num-envs 1")
        if args.videos and args.out is None:
            raise ValueError("--videos N writes into --out DIR: give --out")
        check_timing(args.delay, args.jitter, executed, policy.obs_horizon - 1, policy.pred_horizon)
    except ValueError as exc:  # CheckpointError and ExportError are ValueErrors
        sys.stderr.write(f"warmloop eval: {exc}\n")
        return 2
    videos = (args.out, args.videos) if args.out and args.videos else None
    result = evaluate(
        policy,
        task,
        args.episodes,
        executed,
        args.seed,
        args.video,
        num_envs=num_envs,
        videos=videos,
        delay=args.delay,
        jitter=args.jitter,
        merge=args.merge,
    )
    figures = asdict(result)
    for key, value in figures.items():
        if key != "per_episode":
            sys.stdout.write(
                f"{key}: {value:.4g}\n" if isinstance(value, float) else f"{key}: {value}\n"
            )
    if args.out is not None:
        _write_results(args, task, figures)
    return 0


def _write_results(args: argparse.Namespace, task: str, figures: dict) -> None:
    import json

    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "command": getattr(args, "command_line", ""),
        "policy": str(args.checkpoint),
        "task": task,
        "sampler": args.sampler,
        "first_seed": args.seed,
        **figures,
    }
    path = args.out / "eval.json"
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(f"wrote {path}\n")


def load_policy(args: argparse.Namespace):
    """(policy, task, actions executed per prediction) for a checkpoint or an export."""
    directory = Path(args.checkpoint)
    if not (directory / "manifest.json").exists() and not (directory / "config.json").exists():
        # Never guess: a torch-free robot must not be sent to load a torch checkpoint.
        raise ValueError(
            f"{directory} is neither an export (no manifest.json) nor a checkpoint (no config.json)"
        )
    if (directory / "manifest.json").exists():
        from policies.deploy.manifest import read_manifest
        from policies.deploy.runtime import OnnxPolicy

        fixed = (args.k_prime, args.warm_start, args.rti_sampler, args.rti_steps)
        fixed += (args.anchor_every, args.anchor_steps)
        if any(value is not None for value in fixed):
            raise ValueError(
                "--k-prime, --warm-start, --rti-sampler, --rti-steps and --anchor-* are "
                "fixed in an exported policy; export again to change them"
            )
        if getattr(args, "inpaint", "none") != "none":
            raise ValueError("--inpaint runs on a checkpoint (torch) for now, not an export")
        manifest = read_manifest(args.checkpoint)
        executed = _executed(args, manifest.action_horizon)
        policy = OnnxPolicy(
            args.checkpoint,
            args.sampler,
            executed,
            ddim_steps=args.steps,
            threads=args.threads or 1,
        )
        return policy, manifest.task, executed

    from policies.diffusion.checkpoint import load
    from policies.diffusion.policy import DiffusionPolicy
    from training.threads import INFERENCE, set_threads

    set_threads(args.threads, INFERENCE)

    checkpoint = load(args.checkpoint)
    config = checkpoint.config
    executed = _executed(args, config.action_horizon)
    policy = DiffusionPolicy(
        checkpoint,
        sampler=args.sampler,
        ddim_steps=args.steps,
        k_prime=args.k_prime,
        executed=executed,
        warm_start=args.warm_start,
        rti_sampler=args.rti_sampler,
        rti_steps=args.rti_steps,
        anchor_every=args.anchor_every,
        anchor_steps=args.anchor_steps,
        inpaint=getattr(args, "inpaint", "none"),
        frozen=frozen_rows(
            config.obs_horizon, getattr(args, "delay", 0), getattr(args, "jitter", 0)
        ),
        guidance_beta=getattr(args, "guidance_beta", DEFAULT_BETA),
    )
    return policy, config.task, executed


def _executed(args: argparse.Namespace, action_horizon: int) -> int:
    """Actions per prediction: as asked, else 1 for RTI and Ta for the others, raised to
    the delay so that one inference runs at a time."""
    if args.execute:
        return args.execute
    lookahead = getattr(args, "delay", 0) + getattr(args, "jitter", 0)
    return max(1 if args.sampler == "rti" else action_horizon, lookahead)
