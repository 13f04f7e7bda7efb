"""`warmloop eval CHECKPOINT`: closed-loop success, score and latency in simulation.

Evaluation seeds start at 100,000, far from the collection seeds (0, 1, 2, ...), so a
policy is scored on starts it never saw.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.stats import wilson_half_width

log = logging.getLogger(__name__)
EVAL_SEED = 100_000


@dataclass
class EvalResult:
    episodes: int
    success_rate: float
    success_ci95: float  # half-width of the Wilson interval
    mean_score: float
    latency_p50_ms: float  # per prediction, after the first of each episode
    latency_p99_ms: float
    network_calls_per_prediction: float
    actions_per_prediction: int


def evaluate(
    policy,
    task: str,
    episodes: int,
    executed: int,
    seed: int = EVAL_SEED,
    video: Path | None = None,
    progress: bool = True,
) -> EvalResult:
    """Run `episodes` episodes; `executed` actions of each predicted chunk are played."""
    from tqdm import tqdm

    from sim.envs import make_env

    env = make_env(task)
    start = policy.obs_horizon - 1  # the chunk's action for the current step
    successes, scores, latencies, calls, predictions = 0, [], [], 0, 0
    frames: list[np.ndarray] = []
    for episode in tqdm(range(episodes), desc=f"eval {task}", disable=not progress):
        observation, info = env.reset(seed=seed + episode)
        policy.reset()
        history = deque([observation] * policy.obs_horizon, maxlen=policy.obs_horizon)
        queue: deque[np.ndarray] = deque()
        done, best, first = False, 0.0, True
        while not done:
            if not queue:
                calls_before, began = policy.network_calls, time.perf_counter()
                chunk = policy.infer(np.stack(history))
                if not first:  # the first prediction of an episode always denoises fully
                    latencies.append(time.perf_counter() - began)
                    calls += policy.network_calls - calls_before
                    predictions += 1
                first = False
                queue.extend(chunk[start : start + executed])
            observation, reward, terminated, truncated, info = env.step(queue.popleft())
            history.append(observation)
            best = max(best, float(info.get("score", reward)))
            done = terminated or truncated
            if video is not None and episode == 0:
                frames.append(env.unwrapped.render_camera(width=240, height=240, depth=False).rgb)
        successes += bool(info["success"])
        scores.append(best)
    env.close()
    if video is not None and frames:
        import imageio.v2 as imageio

        video.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(video, frames, fps=env.unwrapped.metadata["render_fps"])
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return EvalResult(
        episodes=episodes,
        success_rate=successes / episodes,
        success_ci95=wilson_half_width(successes, episodes),
        mean_score=float(np.mean(scores)),
        latency_p50_ms=float(np.percentile(ms, 50)),
        latency_p99_ms=float(np.percentile(ms, 99)),
        network_calls_per_prediction=calls / max(predictions, 1),
        actions_per_prediction=executed,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", type=Path, help="checkpoint directory, or an exported (ONNX) one"
    )
    parser.add_argument("--sampler", choices=["ddpm", "ddim", "rti"], default="rti")
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps")
    parser.add_argument("--k-prime", type=int, help="RTI warm-start step (default: checkpoint)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument(
        "--execute", type=int, help="actions executed per prediction (default: 1 for rti, Ta else)"
    )
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help="first evaluation seed")
    parser.add_argument("--video", type=Path, help="write an MP4 of the first episode here")


def main_from_args(args: argparse.Namespace) -> int:
    try:
        policy, task, executed = load_policy(args)
        if args.episodes < 1:
            raise ValueError(f"--episodes must be at least 1, got {args.episodes}")
    except ValueError as exc:  # CheckpointError and ExportError are ValueErrors
        sys.stderr.write(f"warmloop eval: {exc}\n")
        return 2
    result = evaluate(policy, task, args.episodes, executed, args.seed, args.video)
    for key, value in asdict(result).items():
        sys.stdout.write(
            f"{key}: {value:.4g}\n" if isinstance(value, float) else f"{key}: {value}\n"
        )
    return 0


def load_policy(args: argparse.Namespace):
    """(policy, task, actions executed per prediction) for a checkpoint or an export."""
    if (Path(args.checkpoint) / "manifest.json").exists():
        from policies.deploy.manifest import read_manifest
        from policies.deploy.runtime import OnnxPolicy

        if args.k_prime is not None:
            raise ValueError("--k-prime is fixed in an exported policy; export again to change it")
        manifest = read_manifest(args.checkpoint)
        executed = args.execute or (1 if args.sampler == "rti" else manifest.action_horizon)
        policy = OnnxPolicy(args.checkpoint, args.sampler, executed, ddim_steps=args.steps)
        return policy, manifest.task, executed

    from policies.diffusion.checkpoint import load
    from policies.diffusion.policy import DiffusionPolicy

    checkpoint = load(args.checkpoint)
    config = checkpoint.config
    executed = args.execute or (1 if args.sampler == "rti" else config.action_horizon)
    policy = DiffusionPolicy(
        checkpoint,
        sampler=args.sampler,
        ddim_steps=args.steps,
        k_prime=args.k_prime,
        executed=executed,
    )
    return policy, config.task, executed
