"""`warmloop calibrate-rti CHECKPOINT`: choose the RTI warm-start step K' automatically.

The RTI paper suggests, without implementing it, an offline estimate from full
denoising on held-out observations. We make it concrete: a warm start treats the
shifted guess g as a draw of x_{K'} ~ N(√ᾱ_{K'}·A₀, (1 − ᾱ_{K'}) I), where A₀ is what
full denoising predicts at the new step. The match is good when the guess deviates from
√ᾱ_{K'}·A₀ by about the noise the chain expects at K':

    ratio(K') = mean ‖g − √ᾱ_{K'}·A₀‖² / (d · (1 − ᾱ_{K'}))      (d = Tp · A)

Too small a K' (ratio ≫ 1) leaves more error than K'+1 steps can remove; too large a
K' wastes network calls. The estimate is the K' with ratio closest to 1 (in log).
Then a closed-loop check evaluates K'−1, K', K'+1, 2K' and the smaller 1, 2 and K'/2
(see `check_candidates`), and keeps the smallest K' whose success is within one Wilson
half-width of the best. Candidates enter and denoise the chain as the checkpoint's RTI
does, or as `--warm-start`, `--rti-sampler` and `--rti-steps` say (stored with K'); a
DDIM step count above a candidate's K'+1 is cut to K'+1.

Tune on one range, report on another (policies/seeds.py): the held-out observations are
the scripted expert's, on tuning seeds the dataset never saw (training saw every dataset
episode), and the closed-loop checks run on tuning seeds too, never on the seeds that
`warmloop eval` and the benchmarks report on.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from policies.diffusion.configuration import rti_denoising_problem, rti_steps_within


@dataclass
class Calibration:
    k_prime_offline: int
    k_prime: int
    ratios: dict[int, float]  # K' -> mean residual energy / expected noise energy
    closed_loop_success: dict[int, float]
    rti_sampler: str = "ddpm"  # how the candidates denoised from K'
    warm_start: str = "state"  # how they entered the chain at K'
    rti_steps: int = 0  # DDIM steps per update (0: K'+1), cut to K'+1 per candidate
    anchor_every: int = 0  # re-anchoring the candidates ran with (0: none)
    anchor_steps: int = 10
    held_out_first_seed: int | None = None  # expert episodes, tuning range
    check_first_seed: int | None = None  # closed-loop checks, tuning range


def offline_ratios(
    policy,
    observation_episodes: list[np.ndarray],
    executed: int = 1,
    max_k: int = 20,
    frame_episodes: list[dict[str, np.ndarray]] | None = None,
) -> dict[int, float]:
    """ratio(K') over consecutive steps of the given episodes (see the module doc).

    An image policy also takes each episode's frames, {camera: (T, H, W, 3) uint8}."""
    import torch

    from policies.diffusion.sampler import shift_chunk

    schedule, horizon = policy.schedule, policy.obs_horizon
    energies: list[torch.Tensor] = []
    for index, observations in enumerate(observation_episodes):
        steps = np.arange(len(observations))
        rows = np.clip(steps[:, None] + np.arange(1 - horizon, 1), 0, None)  # (T, To)
        windows, images = observations[rows], None
        if policy.cameras:
            windows = windows[..., list(policy.state_dims)]
            images = {c: frame_episodes[index][c][rows] for c in policy.cameras}
        # A₀ at every step of the episode: one batched full chain (a "ddpm" policy).
        clean = policy.predict_normalized(windows, range(len(windows)), images)
        for i in range(executed, len(windows)):
            guess = shift_chunk(clean[i - executed : i - executed + 1], executed)
            energies.append(
                torch.stack(
                    [
                        ((guess - schedule.alpha_bar(k) ** 0.5 * clean[i : i + 1]) ** 2).mean()
                        for k in range(max_k)
                    ]
                )
            )
    if not energies:
        raise ValueError("need episodes longer than the executed actions")
    mean = torch.stack(energies).mean(0)
    return {k: float(mean[k]) / (1.0 - schedule.alpha_bar(k)) for k in range(max_k)}


def choose(ratios: dict[int, float]) -> int:
    return min(ratios, key=lambda k: abs(np.log(max(ratios[k], 1e-12))))


def check_candidates(offline: int) -> list[int]:
    """K' values to try closed-loop: around the offline estimate, and below it.

    The offline ratio compares a shifted guess with a fresh full-chain prediction that
    carries the chain's own sampling spread, so it overstates the error a warm start
    must remove and tends to pick K' too large. PickPlace, 30 closed-loop episodes
    each: offline 14; success K' = 1: 0.93, 2: 0.97, 7: 0.90, 13: 0.87, 14: 0.90,
    15: 0.80. Trying 1, 2 and half the estimate lets the check find the small K'.
    Twice the estimate is there for the opposite case: PushT, whose block must end
    within millimetres, scored 11/16 at K' = 10 but 14/16 at K' = 30 (offline 14).
    """
    near = (1, 2, offline // 2, offline - 1, offline, offline + 1, 2 * offline)
    return sorted({k for k in near if k >= 0})


def expert_observations(
    task: str, episodes: int, cameras: tuple[str, ...] = (), image_size: int | None = None
) -> tuple[list[np.ndarray], list[dict[str, np.ndarray]]]:
    """Observations (and frames of `cameras`) along the scripted expert's episodes on the
    first tuning seeds."""
    from policies import seeds
    from sim.collect import collect_episode
    from sim.envs import make_env

    env = make_env(task)
    size = image_size if cameras else None
    observations, frames = [], []
    try:
        for i in range(episodes):
            seed = seeds.TUNING_DEMONSTRATIONS + i
            arrays = collect_episode(env, task, i, seed, cameras, size, depth=False)[0]
            observations.append(arrays["obs"])
            frames.append({c: arrays[f"images/{c}/rgb"] for c in cameras})
    finally:
        env.close()
    return observations, frames


def calibrate(
    checkpoint_dir: Path,
    episodes: int = 10,
    check_episodes: int = 20,
    progress: bool = True,
    rti_sampler: str | None = None,
    rti_steps: int | None = None,
    warm_start: str | None = None,
    anchor_every: int | None = None,
    anchor_steps: int | None = None,
) -> Calibration:
    from policies import seeds
    from policies.diffusion.checkpoint import load
    from policies.diffusion.policy import DiffusionPolicy
    from runtime.stats import wilson_half_width

    checkpoint = load(checkpoint_dir)
    rti_sampler = checkpoint.config.rti_sampler if rti_sampler is None else rti_sampler
    rti_steps = checkpoint.config.rti_steps if rti_steps is None else rti_steps
    warm_start = checkpoint.config.rti_mode if warm_start is None else warm_start
    config = checkpoint.config
    anchor_every = config.rti_anchor_every if anchor_every is None else anchor_every
    anchor_steps = config.rti_anchor_steps if anchor_steps is None else anchor_steps
    # Checked before the offline estimate; the step count is cut per candidate K' below.
    problem = rti_denoising_problem(checkpoint.config.train_steps - 1, rti_sampler, rti_steps)
    if problem:
        raise ValueError(f"--{problem[0].replace('_', '-')} {problem[1]}")
    held_out, frames = expert_observations(config.task, episodes, config.cameras, config.image_size)
    policy = DiffusionPolicy(checkpoint, sampler="ddpm", seed=0)
    ratios = offline_ratios(policy, held_out, frame_episodes=frames)
    offline = choose(ratios)
    warm = {
        "rti_sampler": rti_sampler,
        "warm_start": warm_start,
        "anchor_every": anchor_every,
        "anchor_steps": anchor_steps,
    }
    success = _closed_loop(
        checkpoint, check_candidates(offline), rti_steps, warm, check_episodes, progress
    )
    best = max(success.values())
    margin = wilson_half_width(round(best * check_episodes), check_episodes)
    k_prime = min(k for k, s in success.items() if s >= best - margin)
    return Calibration(
        offline,
        k_prime,
        ratios,
        success,
        rti_steps=rti_steps,
        held_out_first_seed=seeds.TUNING_DEMONSTRATIONS,
        check_first_seed=seeds.TUNING_CLOSED_LOOP,
        **warm,
    )


def _closed_loop(
    checkpoint, candidates, rti_steps: int, warm: dict, episodes: int, progress: bool
) -> dict[int, float]:
    """Success of RTI at each candidate K' on the tuning seeds, one action a prediction."""
    from policies import seeds
    from policies.diffusion.evaluate import DEFAULT_NUM_ENVS, evaluate
    from policies.diffusion.policy import DiffusionPolicy

    success: dict[int, float] = {}
    for k in candidates:
        candidate = DiffusionPolicy(
            checkpoint,
            sampler="rti",
            k_prime=k,
            executed=1,
            seed=k,
            rti_steps=rti_steps_within(k, rti_steps),
            **warm,
        )
        success[k] = evaluate(
            candidate,
            checkpoint.config.task,
            episodes,
            executed=1,
            seed=seeds.TUNING_CLOSED_LOOP,
            progress=progress,
            num_envs=DEFAULT_NUM_ENVS,
        ).success_rate
    return success


def anchoring(every: int, steps: int) -> str:
    """', re-anchored every N by DDIM-S' for messages; '' without re-anchoring."""
    return f", re-anchored every {every} by DDIM-{steps}" if every else ""


def store(checkpoint_dir: Path, calibration: Calibration) -> None:
    """Write K' into config.json (weights untouched, so their hash still holds)."""
    path = Path(checkpoint_dir) / "config.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    config = meta["config"]
    config["rti_k_prime"] = calibration.k_prime
    config["rti_sampler"] = calibration.rti_sampler
    config["rti_mode"] = calibration.warm_start
    config["rti_steps"] = rti_steps_within(calibration.k_prime, calibration.rti_steps)
    config["rti_anchor_every"] = calibration.anchor_every
    config["rti_anchor_steps"] = calibration.anchor_steps
    meta.setdefault("extra", {})["rti_calibration"] = {
        **asdict(calibration),
        "ratios": {str(k): v for k, v in calibration.ratios.items()},
        "closed_loop_success": {str(k): v for k, v in calibration.closed_loop_success.items()},
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from policies.diffusion.eval_cli import (  # argparse and numpy only
        add_rti_arguments,
        add_threads_argument,
    )

    parser.add_argument("checkpoint", type=Path, help="checkpoint directory")
    parser.add_argument(
        "--episodes",
        type=int,
        default=10,
        help="held-out expert episodes, on tuning seeds (policies/seeds.py)",
    )
    parser.add_argument(
        "--check-episodes", type=int, default=20, help="closed-loop episodes per K' candidate"
    )
    add_rti_arguments(parser)  # how the candidates denoise; stored with the chosen K'
    add_threads_argument(parser, "1, for inference")


def main_from_args(args: argparse.Namespace) -> int:
    from policies.diffusion.checkpoint import CheckpointError
    from training.threads import INFERENCE, set_threads

    set_threads(args.threads, INFERENCE)
    try:
        result = calibrate(
            args.checkpoint,
            args.episodes,
            args.check_episodes,
            rti_sampler=args.rti_sampler,
            rti_steps=args.rti_steps,
            warm_start=args.warm_start,
            anchor_every=args.anchor_every,
            anchor_steps=args.anchor_steps,
        )
    except (CheckpointError, ValueError) as exc:
        sys.stderr.write(f"warmloop calibrate-rti: {exc}\n")
        return 2
    store(args.checkpoint, result)
    ratios = ", ".join(f"{k}: {v:.2f}" for k, v in list(result.ratios.items())[:8])
    sys.stdout.write(
        f"offline ratio (K': residual/noise energy) {ratios} ...\n"
        f"offline K' = {result.k_prime_offline}; closed-loop success "
        f"{result.closed_loop_success} ({result.warm_start}, {result.rti_sampler}"
        f"{f', {result.rti_steps} steps' if result.rti_steps else ''}"
        f"{anchoring(result.anchor_every, result.anchor_steps)}); "
        f"chose K' = {result.k_prime}, stored in "
        f"{args.checkpoint / 'config.json'}\n"
    )
    return 0
