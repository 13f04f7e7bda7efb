"""`warmloop bench reconstruction`: fit the Explore room from a stream, score held-out views.

The camera orbits the room for 12 s (120 frames at 10 Hz, 64×64 RGB-D). Even frames
stream into the fitter as they would from the sim node (a few steps per frame, then
the remaining budget over the keyframe buffer); odd frames are held out: each lies
between two training frames in pose *and* time. A second set of held-out views lies
off the training path: the same start, a wider orbit (30 views). Ground truth includes
exact masks of the moving objects (the door and the ball) from MuJoCo's segmentation
rendering. The same run without deformation is the static ablation.

Classical peers on the same frames and views (benchmarks/reconstruction_peers.py): TSDF
fusion (Open3D) and the nearest views splatted. A curve of held-out PSNR against the
wall-clock fitting time puts the tri-plane's time to quality beside theirs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import BenchResult, save_figure
from benchmarks.reconstruction_peers import peers, score_views
from streams import encode
from world.reconstruction.exchange import to_message
from world.reconstruction.field import EXPLORE_BOUNDS, FieldConfig, TriPlaneField
from world.reconstruction.fit import FitConfig, OnlineFitter
from world.reconstruction.occupancy import OccupancyGrid
from world.reconstruction.render import render_image

SIZE, STEPS = 64, 120
PLOT = Path("docs") / "img" / "reconstruction.png"
CURVE = Path("docs") / "img" / "reconstruction_time.png"
ORBIT_SPEED, OFF_PATH_SPEED = 0.5, 0.65  # m/s at the same turn rate: radius 1.1 vs 1.4 m
CURVE_VIEWS = 12  # held-out views scored at each point of the time curve
TIME_STEPS = 16  # the deformation's time slices
# Chosen on a tuning orbit (seed 3; the benchmark's is seed 0): the buffer's rays from
# 7 keyframes a step, whose deformation then samples in 2-D, ~20 % faster a step at the
# same PSNR (moving objects 15.9 dB after 1500 steps against 16.1). Samples near each
# ray's known depth (16 + 8 in place of 32) were faster still but cost moving objects
# 1.3 dB, and were dropped.
FIT = FitConfig(rays_per_step=1024, samples=32, frames_per_step=7, keyframes=64)


@dataclass
class Sample:
    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: np.ndarray
    pose: np.ndarray
    time: float
    dynamic: np.ndarray  # (H, W) bool: the door or the ball


def explore_frames(
    steps: int = STEPS, size: int = SIZE, seed: int = 0, speed: float = ORBIT_SPEED
) -> list[Sample]:
    from sim.envs import make_env
    from sim.trajectories import orbit

    env = make_env("explore")
    env.reset(seed=seed)
    scene = env.unwrapped
    model = scene.physics.model
    moving = [model.geom(name).id for name in ("door", "ball")]
    samples = []
    for action in orbit(steps, speed=speed, turn=0.45):
        image = scene.render_camera("eye", size, size)
        ids = scene.render_segmentation("eye", size, size)
        samples.append(
            Sample(
                image.rgb,
                image.depth,
                image.intrinsics,
                image.pose,
                scene.time,
                np.isin(ids, moving),
            )
        )
        env.step(action)
    env.close()
    return samples


def fit(
    train: list[Sample],
    deform: bool,
    total_steps: int,
    steps_per_frame: int,
    curve: Callable[[TriPlaneField], float] | None = None,
    curve_at: tuple[int, ...] = (),
):
    """Stream the frames in, then spend the rest of the step budget. With `curve`,
    score the field after each step count in `curve_at`: (fit seconds, score) pairs,
    the scoring time left out of the clock."""
    torch.manual_seed(0)
    t_end = max(s.time for s in train) + 0.1
    config = FieldConfig(resolution=64, channels=16, time_steps=TIME_STEPS, deform=deform)
    field = TriPlaneField(config, torch.tensor(EXPLORE_BOUNDS), (0.0, t_end))
    fitter = OnlineFitter(field, FIT)
    seconds, points = 0.0, []

    def step() -> None:
        nonlocal seconds
        began = time.perf_counter()
        fitter.step()
        seconds += time.perf_counter() - began
        if curve is not None and fitter.steps in curve_at:
            points.append((seconds, curve(field)))

    for sample in train:  # streaming: frames arrive one by one
        began = time.perf_counter()
        fitter.add_frame(sample.rgb, sample.depth, sample.intrinsics, sample.pose, sample.time)
        seconds += time.perf_counter() - began
        for _ in range(steps_per_frame):
            step()
    while fitter.steps < total_steps:
        step()
    return field, fitter.steps / seconds, seconds, points


def field_renderer(field: TriPlaneField, skip_empty: bool = True):
    """Renders of `field` at a sample's camera and time; `skip_empty` builds the field's
    occupancy grid first (its cost is `occupancy_build_s`, once per field)."""
    grid = OccupancyGrid.from_field(field) if skip_empty else None

    def render(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        out = render_image(
            field,
            sample.intrinsics,
            sample.pose,
            SIZE,
            SIZE,
            sample.time,
            field.bounds,
            occupancy=grid,
        )
        return out["rgb"], out["depth"]

    return render


def render_costs(field: TriPlaneField, marched, views: list[Sample]) -> dict[str, float]:
    """The occupancy grid's build time, and the full render's ms (every sample
    evaluated) with its PSNR against `marched` (field_renderer's), over `views`."""
    began = time.perf_counter()
    OccupancyGrid.from_field(field)
    build = time.perf_counter() - began
    full = field_renderer(field, skip_empty=False)
    seconds, errors = [], []
    for sample in views:
        began = time.perf_counter()
        reference = full(sample)[0]
        seconds.append(time.perf_counter() - began)
        errors.append(np.mean((reference / 255.0 - marched(sample)[0] / 255.0) ** 2))
    return {
        "occupancy_build_s": build,
        "render_full_ms": float(np.median(seconds) * 1e3),
        "marched_vs_full_psnr": float(-10 * np.log10(max(np.mean(errors), 1e-12))),
    }


@dataclass(frozen=True)
class Size:
    frames: int  # of the orbit; even ones train, odd ones are held out
    total_steps: int  # optimisation steps in all
    steps_per_frame: int  # while frames stream in
    curve_at: tuple[int, ...]  # step counts at which the time curve is scored


SIZES = {
    "full": Size(STEPS, 3000, 4, (60, 120, 240, 300, 360, 420, 500, 1000, 2000, 3000)),
    "quick": Size(STEPS, 300, 2, (60, 120, 300)),
    "smoke": Size(8, 6, 1, (2, 6)),
}


def run(size: str, checkpoints: Path | None = None) -> BenchResult:
    del checkpoints  # the field is fitted here, from nothing
    torch.set_num_threads(max(1, torch.get_num_threads()))
    plan = SIZES[size]
    frames = explore_frames(plan.frames)
    train, test = frames[0::2], frames[1::2]
    off_path = explore_frames(plan.frames, speed=OFF_PATH_SPEED)[1::4]
    curve_views = test[:: max(1, len(test) // CURVE_VIEWS)][:CURVE_VIEWS]

    def curve(field: TriPlaneField) -> float:
        return score_views(field_renderer(field), curve_views)["psnr_static"]

    results, curves = {}, {}
    for deform in (True, False):
        field, updates_per_s, seconds, curves[deform] = fit(
            train, deform, plan.total_steps, plan.steps_per_frame, curve, plan.curve_at
        )
        render = field_renderer(field)
        results[deform] = {
            **score_views(render, test),
            **{f"offpath_{k}": v for k, v in score_views(render, off_path).items()},
            "updates_per_s": updates_per_s,
            "model_s": seconds,
        }
        if deform:
            costs = render_costs(field, render, curve_views)
            message_bytes = sum(
                len(memoryview(f).cast("B"))
                for f in encode("w", to_message(field), seq=0, source="b", t_sent=0.0)
            )
            plot = _plot(field, test)
    others = peers(train, {"heldout": test, "offpath": off_path, "curve": curve_views})
    result = _result(results, others, curves, message_bytes, plan.total_steps, costs)
    result.files[str(PLOT)] = save_figure(plot)
    result.files[str(CURVE)] = save_figure(_plot_curve(curves, others))
    return result


def _plot(field: TriPlaneField, test: list[Sample]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = [test[i] for i in np.linspace(0, len(test) - 1, 4).astype(int)]
    figure, axes = plt.subplots(3, len(picks), figsize=(2.2 * len(picks), 6.6))
    for column, sample in enumerate(picks):
        out = render_image(
            field, sample.intrinsics, sample.pose, SIZE, SIZE, sample.time, field.bounds
        )
        axes[0, column].imshow(sample.rgb)
        axes[1, column].imshow(out["rgb"])
        axes[2, column].imshow(out["depth"], cmap="viridis", vmin=0, vmax=6)
        axes[0, column].set_title(f"t = {sample.time:.1f} s", fontsize=8)
    for row, label in enumerate(("ground truth", "tri-planes", "depth (m)")):
        axes[row, 0].set_ylabel(label)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    return figure


PEERS = (
    ("tsdf_3cm_views", "TSDF 3 cm, 2-view colour"),
    ("tsdf_3cm_vertex", "TSDF 3 cm, vertex colour"),
    ("tsdf_5cm_views", "TSDF 5 cm, 2-view colour"),
    ("tsdf_5cm_vertex", "TSDF 5 cm, vertex colour"),
    ("splat", "2 nearest views splatted"),
)
ROWS = (
    ("PSNR static content (dB)", "psnr_static", "{:.2f}"),
    ("PSNR whole image (dB)", "psnr_full", "{:.2f}"),
    ("PSNR on moving-object masks (dB)", "psnr_dynamic", "{:.2f}"),
    ("SSIM", "ssim", "{:.3f}"),
    ("depth error (m, L1)", "depth_l1_m", "{:.3f}"),
    (
        "per view, static PSNR: median / worst",
        ("psnr_static_view_median", "psnr_static_view_worst"),
        "{:.1f}",
    ),
    ("off the path (a wider orbit): PSNR static", "offpath_psnr_static", "{:.2f}"),
    (
        "off the path, per view: median / worst",
        ("offpath_psnr_static_view_median", "offpath_psnr_static_view_worst"),
        "{:.1f}",
    ),
    ("time to model (s)", "model_s", "{:.1f}"),
    ("render ms per 64×64 frame", "render_ms", "{:.1f}"),
)


def _cell(scores: dict, key, fmt: str) -> str:
    if isinstance(key, tuple):
        return " / ".join(fmt.format(scores[k]) for k in key)
    return fmt.format(scores[key])


def time_to_reach(points: list[tuple[float, float]], target: float) -> float | None:
    """Fit seconds at the first curve point at or above `target`, if any."""
    return next((seconds for seconds, value in points if value >= target), None)


def _result(
    results, others, curves, message_bytes: int, total_steps: int, costs: dict
) -> BenchResult:
    dyn, static = results[True], results[False]
    columns = {"tri-planes 4D": dyn, "static ablation": static}
    for key, label in PEERS:  # peers' scores carry the test set's name first
        columns[label] = {k.removeprefix("heldout_"): v for k, v in others[key].items()}
    best_tsdf = max(others[k]["curve_psnr_static"] for k, _ in PEERS if k.startswith("tsdf"))
    reached = time_to_reach(curves[True], best_tsdf)
    figures = {
        "psnr_heldout": dyn["psnr_static"],
        "psnr_heldout_full": dyn["psnr_full"],
        "ssim_heldout": dyn["ssim"],
        "depth_l1_m_heldout": dyn["depth_l1_m"],
        "psnr_dynamic_mask": dyn["psnr_dynamic"],
        "psnr_dynamic_mask_static_ablation": static["psnr_dynamic"],
        "psnr_heldout_static_ablation": static["psnr_static"],
        "psnr_offpath": dyn["offpath_psnr_static"],
        "updates_per_s": dyn["updates_per_s"],
        "fit_seconds": dyn["model_s"],
        "fit_steps": total_steps,
        "render_ms_64": dyn["render_ms"],
        **costs,
        "triplanes_message_bytes": message_bytes,
        "best_tsdf_psnr_curve_views": best_tsdf,
        "seconds_to_best_tsdf": reached,
        **{
            f"{name}_{k}": v
            for name, scores in others.items()
            for k, v in scores.items()
            if not k.startswith("curve_")
        },
        **{f"curve_s_{i}": p[0] for i, p in enumerate(curves[True])},
        **{f"curve_psnr_{i}": p[1] for i, p in enumerate(curves[True])},
    }
    rows = [["held-out views (between training frames, 64×64)", *columns]]
    for label, key, fmt in ROWS:
        rows.append([label, *(_cell(c, key, fmt) for c in columns.values())])
    return BenchResult(figures=figures, table=rows, notes=_notes(figures, dyn, static))


def _notes(figures: dict, dyn: dict, static: dict) -> list[str]:
    reached = figures["seconds_to_best_tsdf"]
    when = f"after {reached:.0f} s" if reached is not None else "not within the run"
    return [
        f"Time to quality: the best TSDF scores {figures['best_tsdf_psnr_curve_views']:.2f} dB "
        f"(static content, {CURVE_VIEWS} held-out views) after "
        f"{min(figures['tsdf_3cm_views_model_s'], figures['tsdf_5cm_views_model_s']):.1f} s "
        f"of fusion; the tri-plane field reaches it {when} of fitting (target: 30 s). "
        f"Curve: [{CURVE.name}](img/{CURVE.name}).",
        f"Targets (64×64, CPU): held-out PSNR on static content >= 26 dB: "
        f"{figures['psnr_heldout']:.2f} ({'met' if figures['psnr_heldout'] >= 26 else 'NOT met'}); "
        f"moving-object PSNR above the static ablation: {dyn['psnr_dynamic']:.2f} vs "
        f"{static['psnr_dynamic']:.2f} dB; >= 5 updates/s: {figures['updates_per_s']:.1f} "
        f"({'met' if figures['updates_per_s'] >= 5 else 'NOT met'}); render <= 20 ms: "
        f"{figures['render_ms_64']:.1f} ms "
        f"({'met' if figures['render_ms_64'] <= 20 else 'NOT met'}).",
        f"Rendering skips empty space: an occupancy grid (64³, the field's density at "
        f"each cell centre over its {TIME_STEPS} time slices, built once per field in "
        f"{figures['occupancy_build_s']:.2f} s) and rays that end once 99 % opaque. "
        f"Every sample evaluated, the same frame takes {figures['render_full_ms']:.0f} ms; "
        f"the two renders agree to {figures['marched_vs_full_psnr']:.1f} dB PSNR.",
        "Peers: Open3D TSDF (VoxelBlockGrid, truncation 3 voxels, surfaces seen once kept), "
        "mesh ray-cast with Open3D; pixels the mesh misses are filled from the nearest hit. "
        "The 60 on-path views lie between training frames 0.1 s apart, which favours "
        "copying from neighbours; the off-path views (a wider orbit) do not.",
        f"{figures['fit_steps']} steps of {FIT.rays_per_step} rays x {FIT.samples} samples, "
        f"the buffer's rays from {FIT.frames_per_step} keyframes a step; "
        f"planes 64x64x16, deformation {TIME_STEPS} time slices x 8 channels; TriPlanes message "
        f"{figures['triplanes_message_bytes'] / 1e6:.2f} MB (planes float16).",
        f"![ground truth, tri-plane renders and depth of held-out views]({Path(*PLOT.parts[1:])})",
    ]


def _plot_curve(curves: dict, others: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 3.4))
    for deform, label in ((True, "tri-planes 4D"), (False, "static ablation")):
        seconds, values = zip(*curves[deform], strict=True) if curves[deform] else ((), ())
        axis.plot(seconds, values, "o-", label=label)
    for key, label in PEERS:
        scores = others[key]
        axis.plot(max(scores["model_s"], 0.01), scores["curve_psnr_static"], "s", label=label)
    axis.set_xscale("log")
    axis.set_xlabel("wall-clock seconds to model (2 CPU cores)")
    axis.set_ylabel(f"PSNR static, {CURVE_VIEWS} held-out views (dB)")
    axis.set_title("Time to quality: tri-plane fitting vs classical peers")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure
