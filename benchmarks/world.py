"""`warmloop bench world`: the generate → reconstruct → guide loop on the Explore scene.

Shipped checkpoints: checkpoints/explore-teacher (multi-step) and explore-student (DMD).
All paths start from one simulator frame; every later frame is generated at 64x64.

- Speed: MMPL (pipelined) over 4 segments of 8 frames, guidance rendered from a memory
  fitted on frame 0 (in the live loop a reconstruction node fits in another process),
  so the figure is the generator side: guidance render + sampling. Median over runs.
- Fidelity (benchmarks/world_truth.py): the same path against the simulator's truth,
  the generators beside classical baselines (copy, depth warp), split by co-visibility
  and camera motion; with-memory rows use a memory fitted on frame 0 and the generated
  frames only, as the loop has it; the student's spread over seeds and torch threads.
- Revisit: `excursion` paths go more than 1 m and 45 degrees away and come back along
  the same poses. A frame generated on the way back is scored against the simulator's
  truth at that pose (with the memory and without), beside frame 0 warped there; the
  comparison with the frame generated at the same pose on the way out is secondary
  (self-consistency).
- Drift: 30 s `loop` paths (38 segments, out and back) without memory, with the warp
  of frame 0 and the contexts where the generator takes it (6 seeds; 1 with --quick);
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

from benchmarks import world_truth
from benchmarks.harness import BenchResult, save_figure
from benchmarks.world_table import loop_table, notes, table
from sim import trajectories
from world.generation import checkpoint as generator_checkpoint
from world.generation.generator import from_model
from world.generation.memory import FieldMemory, LocalMemory, MemoryConfig
from world.generation.rollout import CameraPath, WorldStream, explore_path, rollout
from world.metrics import psnr, ssim
from world.warp import camera_motion, depth_warp

log = logging.getLogger(__name__)
N = 8
TEACHER = "explore-teacher"
STUDENT = "explore-student"
# Every generated frame is fitted with 24 steps: the memory is a few hundred steps old
# when the camera turns back, as it would be with a reconstruction node fitting alongside.
REVISIT_MEMORY = MemoryConfig(steps_per_frame=24)
PLOT = Path("docs") / "img" / "world_drift.png"
STRIP = Path("docs") / "img" / "world_revisit.png"
DRIFT_SEGMENTS = 38  # 304 frames at 10 Hz: the 30 s loop path of issue #26


def image_scores(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM of the RGB of two model-space frames."""
    x = from_model(a)[0].astype(np.float64) / 255
    y = from_model(b)[0].astype(np.float64) / 255
    return psnr(float(np.mean((x - y) ** 2))), ssim(x, y)


def start_memory(path: CameraPath, seed: int) -> FieldMemory:
    """A memory fitted on frame 0 alone, for timing the render it costs (the render's
    cost does not depend on what the field holds)."""
    local = LocalMemory(path.intrinsics, MemoryConfig(steps_per_frame=6), seed=seed)
    local.add(path.truth[:1], path.poses[:1], path.times[:1])
    memory = FieldMemory(path.intrinsics)
    memory.field = local.field
    return memory


def speed(model, steps: int, runs: int, path, memory: FieldMemory) -> dict[str, float]:
    fps, latency, gaps, warp = [], [], [], []
    for run in range(runs):
        stream = WorldStream(model, steps, N, memory, seed=run, intrinsics=path.intrinsics)
        result = rollout(stream, path)
        fps.append(result.fps)
        latency.append(1000 * result.first_frame_latency)
        gaps.extend(np.diff(result.released_at[1:]) * 1000)
        warp.append(1000 * result.timings["warp"] / (len(path) - 1))
    return {
        "fps": statistics.median(fps),
        "latency_ms": statistics.median(latency),
        # MMPL releases frames in bursts (a populate wave frees several at once): the
        # gap between consecutive frames is what a viewer without a buffer would feel.
        "gap_p50_ms": float(np.percentile(gaps, 50)),
        "gap_p99_ms": float(np.percentile(gaps, 99)),
        "warp_ms": statistics.median(warp),  # building the geometry channels, per frame
    }


MODES = ("guided", "geometry", "unguided")


def generate(model, steps: int, path: CameraPath, mode: str, seed: int, memory_config):
    """One rollout as the loop runs it. guided: a memory that sees frame 0 and the
    generated frames, and (for a generator trained with it) frame 0 and the contexts
    warped into each target; geometry: the warp without a memory; unguided: neither."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    torch.manual_seed(seed)  # memory fields start from torch's global generator
    memory = LocalMemory(path.intrinsics, memory_config, seed) if mode == "guided" else None
    stream = WorldStream(
        model,
        steps,
        N,
        memory,
        fit="all",
        seed=seed,
        intrinsics=path.intrinsics,
        geometry=mode != "unguided",
    )
    return rollout(stream, path)


def fidelity(models: dict, path: CameraPath, runs: int, memory_config) -> dict[str, dict]:
    """Every row of benchmarks/world_truth.py on one path: name -> scores."""
    targets = world_truth.Targets.of(path)
    rows = {name: targets.score(rgb).summary() for name, rgb in world_truth.classical(path).items()}
    guidance: dict[int, np.ndarray] = {}
    use = {"guided": 0, "withheld": 0}  # the student's guided seed 0: targets by gate
    for name, (model, steps) in models.items():
        # The student's rows carry the seed spread; the teacher's (16 steps, and a memory
        # fitted alongside) one seed each, to keep the full run within half an hour.
        seeds = list(range(runs)) if name == "student" else [0]
        for mode in MODES if model.config.geometry else ("guided", "unguided"):
            log.info("fidelity: %s, %s, %d seeds", name, mode, len(seeds))

            def produce(seed: int, model=model, steps=steps, mode=mode, name=name):
                result = generate(model, steps, path, mode, seed, memory_config)
                if (name, mode, seed) == ("student", "guided", 0):
                    guidance.update(result.guidance)
                    use.update(result.memory_use)
                return world_truth.generated_rgb(result.frames)

            rows[f"{name}-{mode}"] = world_truth.score_runs(targets, seeds, produce)
    size = path.truth.shape[-1]
    rendered = world_truth.guidance_rgb(guidance, len(path) - 1, size)
    rows["memory-render"] = targets.score(rendered).summary()
    # Run-to-run spread from the thread count alone: the same seed with one torch thread.
    model, steps = models["student"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = generate(model, steps, path, "guided", 0, memory_config)
    finally:
        torch.set_num_threads(threads)
    rows["student-guided-1-thread"] = targets.score(world_truth.generated_rgb(one.frames)).summary()
    rows["counts"] = {**targets.counts(), "memory_guided_targets": use["guided"]}
    rows["counts"]["memory_withheld_targets"] = use["withheld"]
    return rows


def revisit_pairs(path: CameraPath, away_m: float, away_deg: float) -> list[tuple[int, int]]:
    """(first visit, revisit) at equal poses, with a pose more than away_m and away_deg
    from it in between, whose true revisit frame is not frame 0's pixels again."""
    length = len(path) - 1
    pairs = []
    for first in range(1, length // 2):
        back = length - first
        if not np.allclose(path.poses[first], path.poses[back], atol=1e-6):
            continue
        moves = [camera_motion(path.poses[k], path.poses[first]) for k in range(first, back)]
        went_away = any(d > away_m and a > away_deg for d, a in moves)
        if went_away and not np.array_equal(path.truth[back], path.truth[0]):
            pairs.append((first, back))
    return pairs


def revisit(model, steps: int, plan: Size) -> dict[str, object]:
    kinds = ("guided", "unguided", "ssim_guided", "ssim_unguided")
    kinds += ("truth_guided", "truth_unguided", "truth_geometry", "truth_copy", "truth_warp")
    scores: dict[str, list[float]] = {k: [] for k in kinds}
    strip: list[np.ndarray] = []
    use = {"guided": 0, "withheld": 0}  # guided rollouts' targets, by the memory's gates
    for seed in plan.revisit_seeds:
        log.info("revisit: excursion path %d (fitting every frame)", seed)
        actions = world_truth.excursion(np.random.default_rng(seed), plan.revisit_segments * N)
        path = explore_path(actions, seed)
        pairs = revisit_pairs(path, *plan.revisit_away)
        start = world_truth.view_of(path.truth[0], path.poses[0])
        size = path.truth.shape[-1]
        for _, back in pairs:  # baselines no one tuned: frame 0 again, and warped there
            scores["truth_copy"].append(image_scores(path.truth[0], path.truth[back])[0])
            warped = depth_warp([start], path.intrinsics, path.poses[back], size, size).rgb
            truth = from_model(path.truth[back])[0]
            error = np.mean((warped / 255.0 - truth / 255.0) ** 2)
            scores["truth_warp"].append(psnr(float(error)))
        for mode in MODES:
            result = generate(model, steps, path, mode, seed, plan.memory)
            frames = result.frames
            if mode == "guided":
                for key, count in result.memory_use.items():
                    use[key] += count
            if mode == "geometry":  # the warp without a memory: scored against the truth
                scores["truth_geometry"].extend(
                    image_scores(frames[back], path.truth[back])[0] for _, back in pairs
                )
                continue
            for first, back in pairs:
                value, similarity = image_scores(frames[back], frames[first])
                scores[mode].append(value)
                scores[f"ssim_{mode}"].append(similarity)
                scores[f"truth_{mode}"].append(image_scores(frames[back], path.truth[back])[0])
            if pairs and seed == plan.revisit_seeds[0]:  # truth | first visit | revisits
                first, back = pairs[0]
                strip = strip or [path.truth[back], frames[first]]
                strip.append(frames[back])
    means = {k: float(np.mean(v)) if v else float("nan") for k, v in scores.items()}
    means["pairs"] = len(scores["guided"])
    means.update({f"memory_{key}_targets": count for key, count in use.items()})
    means["strip"] = strip
    return means


def drift(model, steps: int, seeds: list[int], segments: int = 8) -> dict[str, object]:
    """Truth error per segment along `loop` paths without memory, MMPL and framewise."""
    paths = []
    for seed in seeds:
        rng = np.random.default_rng(100 + seed)
        paths.append(explore_path(trajectories.loop(rng, segments * N), 100 + seed))
    curves = {}
    for kind in ("mmpl", "framewise"):
        log.info("drift: %s over %d paths of %d segments", kind, len(seeds), segments)
        errors = []
        for seed, path in zip(seeds, paths, strict=True):
            stream = WorldStream(model, steps, N, None, kind, seed=seed, intrinsics=path.intrinsics)
            frames = rollout(stream, path).frames
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
    ax.set_title("Drift over a 30 s loop path, no memory: MMPL vs frame-by-frame")
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
    runs: int  # speed: rollouts timed per model; fidelity: seeds per generated row
    revisit_seeds: tuple[int, ...]  # excursion paths
    drift_seeds: tuple[int, ...]  # random walks without memory
    segments: int  # of the speed and fidelity path, N frames each
    revisit_segments: int  # half out, half back
    drift_segments: int
    revisit_away: tuple[float, float] = (1.0, 45.0)  # metres and degrees, in between
    memory: MemoryConfig = REVISIT_MEMORY  # how hard the loop's memory fits each frame


SMOKE_MEMORY = MemoryConfig(
    samples=8, resolution=32, channels=8, rays_per_step=256, fit_samples=16, steps_per_frame=1
)
SIZES = {
    "full": Size(3, (0, 1, 2), (0, 1, 2, 3, 4, 5), 4, 8, DRIFT_SEGMENTS),
    "quick": Size(1, (0,), (0,), 4, 8, DRIFT_SEGMENTS),
    # A smoke run walks the code path: a memory a quarter the size, fitted one step a frame.
    "smoke": Size(1, (0,), (0,), 2, 2, 2, (0.0, 0.0), SMOKE_MEMORY),
}


def run(size: str, checkpoints: Path) -> BenchResult:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    teacher_saved = generator_checkpoint.load(checkpoints / TEACHER)
    student_saved = generator_checkpoint.load(checkpoints / STUDENT)
    teacher, student = teacher_saved.build(), student_saved.build()
    fast_steps, slow_steps = student_saved.sampling_steps, teacher_saved.sampling_steps
    plan = SIZES[size]
    path = explore_path(trajectories.random_walk(np.random.default_rng(0), plan.segments * N), 0)
    timed = start_memory(path, 0)
    log.info("speed: student, teacher, teacher cut to the student's steps (%d runs)", plan.runs)
    fast = speed(student, fast_steps, plan.runs, path, timed)
    slow = speed(teacher, slow_steps, plan.runs, path, timed)
    # The teacher cut to the student's step count: what distillation is measured against.
    cut = speed(teacher, fast_steps, plan.runs, path, timed)
    models = {
        "student": (student, fast_steps),
        "teacher": (teacher, slow_steps),
        "teacher-cut": (teacher, fast_steps),
    }
    rows = fidelity(models, path, plan.runs, plan.memory)
    memory = revisit(student, fast_steps, plan)
    drifts = drift(student, fast_steps, list(plan.drift_seeds), plan.drift_segments)
    figures = {
        "fps_student_64": fast["fps"],
        "fps_teacher_64": slow["fps"],
        "student_speedup": fast["fps"] / slow["fps"],
        "first_frame_latency_ms": fast["latency_ms"],
        "first_frame_latency_ms_teacher": slow["latency_ms"],
        "frame_gap_p50_ms_student": fast["gap_p50_ms"],
        "frame_gap_p99_ms_student": fast["gap_p99_ms"],
        "warp_ms_per_frame_student": fast["warp_ms"],
        "fps_teacher_at_student_steps": cut["fps"],
        "student_steps": fast_steps,
        "teacher_steps": slow_steps,
        "runs": plan.runs,
        **{f"truth_{k}": v for k, v in rows.pop("counts").items()},
        **{
            f"truth_{row.replace('-', '_')}_{metric}": value
            for row, scores in rows.items()
            for metric, value in scores.items()
        },
        # The headline: a revisited frame against the simulator's truth at that pose.
        "revisit_psnr_truth_guided": memory["truth_guided"],
        "revisit_psnr_truth_unguided": memory["truth_unguided"],
        "revisit_psnr_truth_geometry": memory["truth_geometry"],
        "revisit_gain_truth_db": memory["truth_guided"] - memory["truth_unguided"],
        "revisit_psnr_truth_copy_start": memory["truth_copy"],
        "revisit_psnr_truth_warp_start": memory["truth_warp"],
        # Secondary: a revisit against the frame generated at the same pose on the way
        # out, which the memory was fitted on (self-consistency, not fidelity).
        "self_consistency_psnr_guided": memory["guided"],
        "self_consistency_psnr_unguided": memory["unguided"],
        "self_consistency_ssim_guided": memory["ssim_guided"],
        "self_consistency_ssim_unguided": memory["ssim_unguided"],
        "self_consistency_gain_db": memory["guided"] - memory["unguided"],
        "revisit_pairs": memory["pairs"],
        # How often the memory's render reached the generator on the revisit paths (its
        # trust gates: world/generation/memory.py), in targets.
        "revisit_memory_guided_targets": memory["memory_guided_targets"],
        "revisit_memory_withheld_targets": memory["memory_withheld_targets"],
        "drift_slope_mmpl": drifts["slopes"]["mmpl"],
        "drift_slope_framewise": drifts["slopes"]["framewise"],
        "drift_segments": plan.drift_segments,
        # Is the world still recognisable at the end of the path (30 s with the full size)?
        **{
            f"drift_psnr_{which}_segment_{kind}": psnr(float(pick(curve)))
            for kind, curve in drifts["curves"].items()
            for which, pick in (("last", lambda c: c[-1]), ("worst", np.max))
        },
    }
    files = {str(PLOT): save_figure(_plot(drifts["curves"]))}
    if memory["strip"]:
        files[str(STRIP)] = _write_strip(memory["strip"])
    names = {"plot": PLOT.name, "strip": STRIP.name}
    return BenchResult(figures, table(figures), notes(figures, names), files, [loop_table(figures)])
