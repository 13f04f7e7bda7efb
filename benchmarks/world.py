"""`warmloop bench world`: the generate → reconstruct → guide loop on the Explore scene.

Shipped checkpoints: checkpoints/explore-teacher (multi-step) and explore-student (DMD).
All paths start from one simulator frame; every later frame is generated at 64x64.

- Speed: MMPL (pipelined) over 4 segments of 8 frames, guidance rendered from a memory
  fitted beforehand (in the live loop a reconstruction node fits in another process),
  so the figure is the generator side: guidance render + sampling. Median over runs.
- Revisit: `loop` paths go out and come back along the same poses. Frames generated
  on the way back are compared with frames generated at the same pose on the way out,
  with the memory (every generated frame fitted in this process) and without it.
- Drift: random-walk paths of 8 segments without memory (6 seeds; 1 with --quick);
  error against the simulator's ground truth per segment, averaged over seeds; the
  slope of a least-squares line, MMPL against frame-by-frame autoregression.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import BenchResult, save_figure
from sim import trajectories
from world.generation import checkpoint as generator_checkpoint
from world.generation.generator import from_model
from world.generation.memory import FieldMemory, LocalMemory, MemoryConfig
from world.generation.rollout import WorldStream, explore_path, rollout
from world.metrics import psnr, ssim

log = logging.getLogger(__name__)
N = 8
TEACHER = "explore-teacher"
STUDENT = "explore-student"
# Every generated frame is fitted with 24 steps: the memory is a few hundred steps old
# when the camera turns back, as it would be with a reconstruction node fitting alongside.
REVISIT_MEMORY = MemoryConfig(steps_per_frame=24)
PLOT = Path("docs") / "img" / "world_drift.png"
STRIP = Path("docs") / "img" / "world_revisit.png"


def image_scores(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM of the RGB of two model-space frames."""
    x = from_model(a)[0].astype(np.float64) / 255
    y = from_model(b)[0].astype(np.float64) / 255
    return psnr(float(np.mean((x - y) ** 2))), ssim(x, y)


def fitted_memory(path, seed: int) -> FieldMemory:
    """A memory fitted on the path's ground truth, for timing the render it costs."""
    local = LocalMemory(path.intrinsics, MemoryConfig(steps_per_frame=6), seed=seed)
    local.add(path.truth, path.poses, path.times)
    memory = FieldMemory(path.intrinsics)
    memory.field = local.field
    return memory


def speed(model, steps: int, runs: int, path, memory: FieldMemory) -> dict[str, float]:
    fps, latency, quality, gaps = [], [], [], []
    for run in range(runs):
        result = rollout(WorldStream(model, steps, N, memory, seed=run), path)
        fps.append(result.fps)
        latency.append(1000 * result.first_frame_latency)
        quality.append(mean_psnr(result.frames[1:], path.truth[1:]))
        gaps.extend(np.diff(result.released_at[1:]) * 1000)
    alone = rollout(WorldStream(model, steps, N, None, seed=0), path)
    return {
        "fps": statistics.median(fps),
        "latency_ms": statistics.median(latency),
        # MMPL releases frames in bursts (a populate wave frees several at once): the
        # gap between consecutive frames is what a viewer without a buffer would feel.
        "gap_p50_ms": float(np.percentile(gaps, 50)),
        "gap_p99_ms": float(np.percentile(gaps, 99)),
        "psnr_truth": float(np.mean(quality)),
        "psnr_truth_unguided": mean_psnr(alone.frames[1:], path.truth[1:]),
    }


def mean_psnr(frames: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([image_scores(a, b)[0] for a, b in zip(frames, truth, strict=True)]))


def revisit(
    model,
    steps: int,
    seeds: list[int],
    segments: int = 4,
    memory_config: MemoryConfig = REVISIT_MEMORY,
) -> dict[str, object]:
    kinds = (
        "guided",
        "unguided",
        "ssim_guided",
        "ssim_unguided",
        "truth_guided",
        "truth_unguided",
        "truth_copy",
    )
    scores: dict[str, list[float]] = {k: [] for k in kinds}
    strip: list[np.ndarray] = []
    for seed in seeds:
        log.info("revisit: loop path %d of %d (fitting every frame)", seed + 1, len(seeds))
        path = explore_path(trajectories.loop(np.random.default_rng(seed), segments * N), seed)
        length = len(path) - 1
        pairs = [
            (k, length - k)
            for k in range(1, length // 2)
            if np.allclose(path.poses[k], path.poses[length - k], atol=1e-6)
        ]
        for _, back in pairs:  # a baseline no one tuned: show the true start frame again
            scores["truth_copy"].append(image_scores(path.truth[0], path.truth[back])[0])
        for mode in ("guided", "unguided"):
            memory = LocalMemory(path.intrinsics, memory_config, seed) if mode == "guided" else None
            stream = WorldStream(model, steps, N, memory, fit="all", seed=seed)
            frames = rollout(stream, path).frames
            for first, back in pairs:
                value, similarity = image_scores(frames[back], frames[first])
                scores[mode].append(value)
                scores[f"ssim_{mode}"].append(similarity)
                scores[f"truth_{mode}"].append(image_scores(frames[back], path.truth[back])[0])
            if seed == seeds[0]:  # a picture: truth | first visit | revisit, per mode
                first, back = pairs[len(pairs) // 2]
                strip = strip or [path.truth[back], frames[first]]
                strip.append(frames[back])
    means = {k: float(np.mean(v)) for k, v in scores.items()}
    means["pairs"] = len(scores["guided"])
    means["strip"] = strip
    return means


def drift(model, steps: int, seeds: list[int], segments: int = 8) -> dict[str, object]:
    curves = {}
    for kind in ("mmpl", "framewise"):
        log.info("drift: %s over %d paths of %d segments", kind, len(seeds), segments)
        errors = []
        for seed in seeds:
            rng = np.random.default_rng(100 + seed)
            path = explore_path(trajectories.random_walk(rng, segments * N), 100 + seed)
            frames = rollout(WorldStream(model, steps, N, None, kind=kind, seed=seed), path).frames
            mse = np.mean((frames[1:, :3] - path.truth[1:, :3]) ** 2, axis=(1, 2, 3)) / 4
            errors.append(mse.reshape(segments, N).mean(1))
        curves[kind] = np.mean(errors, 0)
    slopes = {k: float(np.polyfit(np.arange(1, segments + 1), v, 1)[0]) for k, v in curves.items()}
    return {"curves": curves, "slopes": slopes}


def _plot(curves: dict[str, np.ndarray]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for kind, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), [psnr(v) for v in values], "o-", label=kind)
    ax.set_xlabel("segment (8 frames each)")
    ax.set_ylabel("PSNR against the simulator (dB)")
    ax.set_title("Drift without memory: MMPL vs frame-by-frame")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _write_strip(strip: list[np.ndarray]):
    def write(path: Path) -> None:
        import imageio.v2 as imageio

        image = np.concatenate([from_model(f)[0] for f in strip], 1)
        imageio.imwrite(path, image.repeat(3, 0).repeat(3, 1))

    return write


@dataclass(frozen=True)
class Size:
    runs: int  # speed: rollouts timed per model
    revisit_seeds: tuple[int, ...]  # loop paths
    drift_seeds: tuple[int, ...]  # random walks without memory
    segments: int  # of the speed and revisit paths, N frames each
    drift_segments: int
    memory: MemoryConfig = REVISIT_MEMORY  # how hard the revisit memory fits each frame


SIZES = {
    "full": Size(3, (0, 1, 2), (0, 1, 2, 3, 4, 5), 4, 8),
    "quick": Size(1, (0,), (0,), 4, 8),
    "smoke": Size(1, (0, 1), (0,), 2, 2, MemoryConfig(steps_per_frame=2)),
}


def run(size: str, checkpoints: Path) -> BenchResult:
    torch.set_num_threads(2)
    torch.manual_seed(0)  # memory fields start from torch's global generator
    teacher_saved = generator_checkpoint.load(checkpoints / TEACHER)
    student_saved = generator_checkpoint.load(checkpoints / STUDENT)
    teacher, student = teacher_saved.build(), student_saved.build()
    plan = SIZES[size]
    runs = plan.runs
    path = explore_path(trajectories.random_walk(np.random.default_rng(0), plan.segments * N), 0)
    fitted = fitted_memory(path, 0)
    log.info("speed: student, teacher, teacher cut to the student's steps (%d runs)", runs)
    fast = speed(student, student_saved.sampling_steps, runs, path, fitted)
    slow = speed(teacher, teacher_saved.sampling_steps, runs, path, fitted)
    # The teacher cut to the student's step count: what distillation is measured against.
    cut = speed(teacher, student_saved.sampling_steps, runs, path, fitted)
    memory = revisit(
        student, student_saved.sampling_steps, list(plan.revisit_seeds), plan.segments, plan.memory
    )
    drifts = drift(
        student, student_saved.sampling_steps, list(plan.drift_seeds), plan.drift_segments
    )
    figures = {
        "fps_student_64": fast["fps"],
        "fps_teacher_64": slow["fps"],
        "student_speedup": fast["fps"] / slow["fps"],
        "first_frame_latency_ms": fast["latency_ms"],
        "first_frame_latency_ms_teacher": slow["latency_ms"],
        "frame_gap_p50_ms_student": fast["gap_p50_ms"],
        "frame_gap_p99_ms_student": fast["gap_p99_ms"],
        "psnr_truth_student": fast["psnr_truth"],
        "psnr_truth_teacher": slow["psnr_truth"],
        "psnr_truth_unguided_student": fast["psnr_truth_unguided"],
        "psnr_truth_unguided_teacher": slow["psnr_truth_unguided"],
        "fps_teacher_at_student_steps": cut["fps"],
        "psnr_truth_teacher_at_student_steps": cut["psnr_truth"],
        "psnr_truth_unguided_teacher_at_student_steps": cut["psnr_truth_unguided"],
        "student_steps": student_saved.sampling_steps,
        "teacher_steps": teacher_saved.sampling_steps,
        # The headline: a revisited frame against the simulator's truth at that pose.
        "revisit_psnr_truth_guided": memory["truth_guided"],
        "revisit_psnr_truth_unguided": memory["truth_unguided"],
        "revisit_gain_truth_db": memory["truth_guided"] - memory["truth_unguided"],
        "revisit_psnr_truth_copy_start": memory["truth_copy"],
        # Secondary: a revisit against the frame generated at the same pose on the way
        # out, which the memory was fitted on (self-consistency, not fidelity).
        "self_consistency_psnr_guided": memory["guided"],
        "self_consistency_psnr_unguided": memory["unguided"],
        "self_consistency_ssim_guided": memory["ssim_guided"],
        "self_consistency_ssim_unguided": memory["ssim_unguided"],
        "self_consistency_gain_db": memory["guided"] - memory["unguided"],
        "revisit_pairs": memory["pairs"],
        "drift_slope_mmpl": drifts["slopes"]["mmpl"],
        "drift_slope_framewise": drifts["slopes"]["framewise"],
    }
    files = {str(PLOT): save_figure(_plot(drifts["curves"]))}
    if memory["strip"]:
        files[str(STRIP)] = _write_strip(memory["strip"])
    return BenchResult(figures, _table(figures), _notes(figures), files)


def _table(f: dict) -> list[list[str]]:
    return [
        ["measure", "value", "target"],
        [f"student FPS, 64x64 ({f['student_steps']} steps)", f"{f['fps_student_64']:.1f}", ">= 10"],
        [f"teacher FPS, 64x64 ({f['teacher_steps']} steps)", f"{f['fps_teacher_64']:.1f}", ""],
        ["student / teacher speed", f"{f['student_speedup']:.1f}x", ""],
        ["first-frame latency, student (ms)", f"{f['first_frame_latency_ms']:.0f}", ""],
        ["first-frame latency, teacher (ms)", f"{f['first_frame_latency_ms_teacher']:.0f}", ""],
        [
            "gap between released frames p50 / p99, student (ms)",
            f"{f['frame_gap_p50_ms_student']:.1f} / {f['frame_gap_p99_ms_student']:.1f}",
            "",
        ],
        [
            "PSNR vs simulator with memory, student / teacher (dB)",
            f"{f['psnr_truth_student']:.2f} / {f['psnr_truth_teacher']:.2f}",
            "",
        ],
        [
            "PSNR vs simulator, no memory, student / teacher (dB)",
            f"{f['psnr_truth_unguided_student']:.2f} / {f['psnr_truth_unguided_teacher']:.2f}",
            "",
        ],
        [
            f"teacher cut to {f['student_steps']} steps: FPS, PSNR with / without memory",
            f"{f['fps_teacher_at_student_steps']:.1f}, "
            f"{f['psnr_truth_teacher_at_student_steps']:.2f} / "
            f"{f['psnr_truth_unguided_teacher_at_student_steps']:.2f}",
            "",
        ],
        [
            "revisit PSNR vs truth, guided / unguided (dB)",
            f"{f['revisit_psnr_truth_guided']:.2f} / {f['revisit_psnr_truth_unguided']:.2f}",
            "guided - unguided >= 3",
        ],
        [
            "revisit PSNR vs truth, baseline: the true start frame shown again (dB)",
            f"{f['revisit_psnr_truth_copy_start']:.2f}",
            "",
        ],
        [
            "self-consistency: revisit vs first visit, guided / unguided (dB)",
            f"{f['self_consistency_psnr_guided']:.2f} / {f['self_consistency_psnr_unguided']:.2f}",
            "secondary",
        ],
        [
            "self-consistency SSIM, guided / unguided",
            f"{f['self_consistency_ssim_guided']:.3f} / {f['self_consistency_ssim_unguided']:.3f}",
            "secondary",
        ],
        [
            "drift slope (MSE per segment), MMPL / framewise",
            f"{f['drift_slope_mmpl']:.5f} / {f['drift_slope_framewise']:.5f}",
            "MMPL lower",
        ],
    ]


def _notes(f: dict) -> list[str]:
    return [
        f"Revisit: {f['revisit_pairs']} frame pairs at equal poses on `loop` paths. Against "
        f"the simulator's truth, guidance changes PSNR by {f['revisit_gain_truth_db']:+.2f} "
        f"dB (target +3); showing the true start frame again scores "
        f"{f['revisit_psnr_truth_copy_start']:.2f} dB. Against the frame generated on the "
        f"first visit (self-consistency, which the memory was fitted on) guidance gains "
        f"{f['self_consistency_gain_db']:+.2f} dB: repeatable is not right.",
        "Speed excludes fitting (a reconstruction node does that in its own process); "
        "it includes rendering guidance from a fitted tri-plane memory at 32x32.",
        f"Plot: [{PLOT.name}](img/{PLOT.name}); revisit strip (truth | first visit | "
        f"revisit guided | revisit unguided): [{STRIP.name}](img/{STRIP.name}).",
    ]
