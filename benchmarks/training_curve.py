"""Success against training time: `python -m benchmarks.training_curve OUT SNAPSHOT...`.

Each SNAPSHOT is a checkpoint directory saved while `warmloop train` ran: with
`warmloop train ... --snapshots`, OUT/snapshots/step-N, which records its step and its
training time; for a copy taken by hand, `--minutes` gives each one's wall-clock
training time, in the same order. Every snapshot is evaluated closed-loop under the same
sampler on the same seeds; OUT.json (with commit and machine) and OUT.png are written.
Snapshots are saved before `calibrate-rti` runs, so they hold the default RTI settings;
`--rti-from CHECKPOINT` evaluates every snapshot with a calibrated checkpoint's instead.
Not a registered benchmark: the snapshots are not shipped, only the curve is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.machine import describe
from benchmarks.provenance import git_state


def rti_settings(calibrated: Path | None) -> dict:
    """DiffusionPolicy's RTI arguments as a calibrated checkpoint stores them; none (each
    snapshot's own) without one."""
    if calibrated is None:
        return {}
    from policies.diffusion.checkpoint import load

    config = load(calibrated).config
    return {
        "k_prime": config.rti_k_prime,
        "warm_start": config.rti_mode,
        "rti_sampler": config.rti_sampler,
        "rti_steps": config.rti_steps,
        "anchor_every": config.rti_anchor_every,
        "anchor_steps": config.rti_anchor_steps,
    }


def curve(
    snapshots: list[Path],
    minutes: list[float],
    sampler: str,
    episodes: int,
    seed: int,
    rti: dict | None = None,
) -> list[dict]:
    from policies.diffusion.checkpoint import load
    from policies.diffusion.evaluate import DEFAULT_NUM_ENVS, evaluate
    from policies.diffusion.policy import DiffusionPolicy

    points = []
    for snapshot, elapsed in zip(snapshots, minutes, strict=True):
        checkpoint = load(snapshot)
        config = checkpoint.config
        executed = 1 if sampler == "rti" else config.action_horizon
        policy = DiffusionPolicy(checkpoint, sampler=sampler, executed=executed, **(rti or {}))
        result = evaluate(
            policy, config.task, episodes, executed, seed, progress=False,
            num_envs=DEFAULT_NUM_ENVS,
        )  # fmt: skip
        points.append(
            {
                "step": checkpoint.step,
                "minutes": elapsed,
                "success": result.success_rate,
                "success_low": result.success_low,
                "success_high": result.success_high,
                "mean_score": result.mean_score,  # the best score of each episode, averaged
            }
        )
        print(
            f"{snapshot}: step {checkpoint.step}, {elapsed:.1f} min: {result.success_rate:.2f}",
            flush=True,
        )
    return points


def recorded_minutes(snapshot: Path) -> float:
    """The training time a `warmloop train --snapshots` snapshot recorded."""
    from policies.diffusion.training import snapshot_minutes

    minutes = snapshot_minutes(snapshot)
    if minutes is None:
        raise ValueError(f"{snapshot} records no training time: give --minutes")
    return minutes


def plot(
    points: list[dict], title: str, path: Path, references: list[str], budget: float | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    minutes = [p["minutes"] for p in points]
    success = [p["success"] for p in points]
    low = [p["success"] - p["success_low"] for p in points]
    high = [p["success_high"] - p["success"] for p in points]
    axis.errorbar(minutes, success, yerr=[low, high], marker="o", capsize=3)
    for reference in references:
        label, value = parse_reference(reference)
        axis.axhline(value, linestyle="--", color="grey", linewidth=1)
        # x in axes units, y in data units: the label sits at the left edge, on its line.
        where = axis.get_yaxis_transform()
        axis.text(0.01, value - 0.01, label, transform=where, fontsize=8, va="top")
    if budget is not None:
        axis.axvline(budget, linestyle=":", color="grey", linewidth=1)
        axis.text(budget, 0.02, " training budget", fontsize=8, rotation=90, va="bottom")
    axis.set_xlabel("training time on the 2-core CPU (minutes)")
    axis.set_ylabel("success (95% interval)")
    axis.set_ylim(0, 1.05)
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def parse_reference(text: str) -> tuple[str, float]:
    """`LABEL=VALUE`, a success rate drawn as a line beside the curve."""
    label, sep, value = text.rpartition("=")
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if not sep or not label or not 0.0 <= rate <= 1.0:
        raise ValueError(f"--reference wants LABEL=RATE with RATE in [0, 1], got {text!r}")
    return label, rate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="writes OUT.json and OUT.png")
    parser.add_argument("snapshots", type=Path, nargs="+")
    parser.add_argument(
        "--minutes", type=float, nargs="+", help="default: what each snapshot recorded"
    )
    parser.add_argument("--sampler", choices=["ddpm", "ddim", "rti"], default="rti")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=100_000)
    parser.add_argument(
        "--rti-from", type=Path, help="a calibrated checkpoint: the snapshots use its RTI"
    )
    parser.add_argument(
        "--reference", action="append", default=[], metavar="LABEL=RATE",
        help="a success rate to draw beside the curve (the expert, a target); repeatable",
    )  # fmt: skip
    parser.add_argument("--budget", type=float, help="the training-time target in minutes, drawn")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        for reference in args.reference:
            parse_reference(reference)
        minutes = args.minutes or [recorded_minutes(s) for s in args.snapshots]
    except ValueError as exc:
        parser.error(str(exc))
    if len(minutes) != len(args.snapshots):
        parser.error("give one --minutes value per snapshot")
    if args.rti_from is not None and args.sampler != "rti":
        parser.error(f"--rti-from sets RTI's settings; --sampler {args.sampler} has none")
    try:
        rti = rti_settings(args.rti_from)
    except (OSError, ValueError) as exc:
        parser.error(f"--rti-from: {exc}")
    points = curve(args.snapshots, minutes, args.sampler, args.episodes, args.seed, rti)
    root = Path(__file__).resolve().parents[1]
    commit, dirty = git_state(root, ["policies", "training", "sim"])
    record = {
        "command": " ".join(sys.argv),
        "commit": commit,
        "dirty": dirty,
        "machine": describe(),
        "sampler": args.sampler,
        "episodes": args.episodes,
        "first_seed": args.seed,
        "rti_settings": rti or None,
        "references": args.reference,
        "budget_minutes": args.budget,
        "points": points,
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    title = f"{args.sampler}, {args.episodes} episodes per point, seeds {args.seed}+"
    if rti:
        title += f", K' = {rti['k_prime']} from {args.rti_from}"
    plot(points, title, args.out.with_suffix(".png"), args.reference, args.budget)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
