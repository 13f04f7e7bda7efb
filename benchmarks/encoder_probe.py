"""What an image policy's encoder sees: `python -m benchmarks.encoder_probe CHECKPOINT DATA`.

A linear probe. Each camera's encoder (frozen, centre crop, as at inference) turns the
frames of the approach (the first 12 steps of every episode in DATA, the hand not yet
on the object) into its features, and a ridge regression from them predicts the
positions of the hand and of the object on the table. Fitted on the first three
quarters of the episodes, scored on the rest. A policy whose encoder places the hand
to a centimetre but the cube to several cannot grasp from images, whatever its
sampler: the probe tells a blind encoder from a bad controller in seconds. A linear
probe bounds what the features hold from below; the U-Net reads them non-linearly.

Both PickPlace scenes share the observation layout (hand xyz at 0-2, cube xyz at 4-6),
both PushT scenes theirs (pusher xy at 0-1, block xy at 2-3, the block's yaw as sin and
cos at 4-5, probed as an angle: the T must be turned as well as moved). `--steps 300` probes
whole episodes, where the Panda arm may hide the object from a camera.
Not a registered benchmark; it prints a table and, with --out, writes JSON with commit
and machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.machine import describe
from benchmarks.provenance import git_state

_PICKPLACE = {"hand": slice(0, 2), "cube": slice(4, 6)}  # xy in the observation
_PUSHT = {"pusher": slice(0, 2), "block": slice(2, 4)}
TARGETS = {
    "pickplace": _PICKPLACE,
    "panda-pickplace": _PICKPLACE,
    "pusht": _PUSHT,
    "panda-pusht": _PUSHT,
}
YAWS = {"pusht": slice(4, 6), "panda-pusht": slice(4, 6)}  # (sin, cos) of the block's yaw
APPROACH_STEPS = 12  # frames probed per episode: the approach, every other step
TRAIN_FRACTION = 0.75
RIDGE = 1e-3


def ridge_probe(features: np.ndarray, targets: np.ndarray, train: int) -> np.ndarray:
    """Held-out Euclidean errors of a ridge regression fitted on the first `train` rows."""
    return np.linalg.norm(ridge_predict(features, targets, train) - targets[train:], axis=1)


def ridge_predict(features: np.ndarray, targets: np.ndarray, train: int) -> np.ndarray:
    """The held-out rows' predictions of a ridge regression fitted on the first `train`."""
    design = np.c_[features, np.ones(len(features))]
    fit, held_out = design[:train], design[train:]
    weights = np.linalg.solve(
        fit.T @ fit + RIDGE * np.eye(design.shape[1]), fit.T @ targets[:train]
    )
    return held_out @ weights


def yaw_errors_deg(features: np.ndarray, sin_cos: np.ndarray, train: int) -> np.ndarray:
    """Held-out angle errors, in degrees, of a ridge regression to (sin, cos) of a yaw."""
    predicted = ridge_predict(features, sin_cos, train)
    return _angle_apart_deg(np.arctan2(*predicted.T), np.arctan2(*sin_cos[train:].T))


def _angle_apart_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in degrees, the short way round (179 and -179 are 2 apart)."""
    return np.degrees(np.abs(np.angle(np.exp(1j * (a - b)))))


def probe(checkpoint: Path, data: Path, approach_steps: int = APPROACH_STEPS) -> dict:
    """The probe's table; `approach_steps` 1 probes each episode's first frame only
    (the object in view, the arm not yet moved)."""
    import torch

    from policies.diffusion.checkpoint import load
    from policies.diffusion.policy import DiffusionPolicy
    from sim.dataset import load_episodes

    policy = DiffusionPolicy(load(checkpoint))
    cameras = policy.config.cameras
    if not cameras:
        raise ValueError(f"{checkpoint} sees no cameras: nothing to probe")
    if policy.config.task not in TARGETS:
        raise ValueError(
            f"the probe reads the layouts of {tuple(TARGETS)}, not {policy.config.task}"
        )
    encoder = policy.network.encoder.eval()
    episodes = load_episodes(data)
    frames = {camera: [] for camera in cameras}
    states, per_episode = [], []
    for episode in episodes:
        steps = range(0, min(episode.length, approach_steps), 2)
        per_episode.append(len(steps))
        for step in steps:
            states.append(episode.arrays["obs"][step])
            for camera in cameras:
                frames[camera].append(episode.arrays[f"images/{camera}/rgb"][step])
    states = np.asarray(states)
    with torch.no_grad():
        features = {
            camera: encoder.encoders[camera](torch.from_numpy(np.stack(frames[camera]))).numpy()
            for camera in cameras
        }
    features["all cameras"] = np.concatenate([features[c] for c in cameras], axis=1)
    # Episodes stay whole on one side of the split: its frames are not independent.
    train = sum(per_episode[: int(TRAIN_FRACTION * len(episodes))])
    rows = {}
    for target, dims in TARGETS[policy.config.task].items():
        truth = states[:, dims]
        mean_only = np.linalg.norm(truth[train:] - truth[:train].mean(0), axis=1)
        rows[f"{target}: the mean position (no image)"] = _summary(mean_only)
        for name, values in features.items():
            rows[f"{target}: from {name}"] = _summary(ridge_probe(values, truth, train))
    if policy.config.task in YAWS:
        rows.update(_yaw_rows(states[:, YAWS[policy.config.task]], features, train))
    return {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "approach_steps": approach_steps,
        "frames": len(states),
        "rows": rows,
    }


def _yaw_rows(sin_cos: np.ndarray, features: dict, train: int) -> dict[str, dict]:
    guess = _angle_apart_deg(np.arctan2(*sin_cos[:train].mean(0)), np.arctan2(*sin_cos[train:].T))
    rows = {"block yaw: the mean yaw (no image)": _summary(guess, "deg", 1)}
    for name, values in features.items():
        rows[f"block yaw: from {name}"] = _summary(yaw_errors_deg(values, sin_cos, train), "deg", 1)
    return rows


def _summary(errors: np.ndarray, unit: str = "cm", scale: float = 100) -> dict[str, float]:
    return {
        f"median_{unit}": float(scale * np.median(errors)),
        f"p90_{unit}": float(scale * np.percentile(errors, 90)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.encoder_probe", description=__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", type=Path, help="a dataset from `warmloop collect --images`")
    parser.add_argument(
        "--steps",
        type=int,
        default=APPROACH_STEPS,
        help=f"the first N steps of each episode, every other (default {APPROACH_STEPS}; "
        "1: the first frame only, before the arm moves)",
    )
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    try:
        result = probe(args.checkpoint, args.data, args.steps)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        sys.stderr.write(f"encoder_probe: {exc}\n")
        return 2
    print(f"{'held-out error (cm; yaw: degrees)':45s} median   p90")
    for name, row in result["rows"].items():
        median, p90 = row.values()
        print(f"{name:45s} {median:6.1f} {p90:5.1f}")
    if args.out:
        commit, dirty = git_state(Path.cwd(), ["policies", "sim", "benchmarks/encoder_probe.py"])
        result.update(commit=commit, dirty=dirty, machine=describe())
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
