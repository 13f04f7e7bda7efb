"""`warmloop bench sim`: physics and rendering speed, and expert success rates."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks.harness import BenchResult
from policies.seeds import REPORT
from runtime.stats import wilson_half_width
from sim.envs import make_env, scene


def _physics_steps_per_s(task: str, seconds: float) -> float:
    # Imported here, after `sim` has chosen the headless GL backend: MuJoCo picks its
    # backend when first imported, and a top-level import ran before `sim`'s (the
    # benchmark failed with "an OpenGL platform library has not been loaded").
    import mujoco

    env = make_env(task)
    env.reset(seed=0)
    model, data = env.unwrapped.physics.model, env.unwrapped.physics.data
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(500):
            mujoco.mj_step(model, data)
        steps += 500
    env.close()
    return steps / (time.perf_counter() - start)


def _render_fps(
    width: int, height: int, frames: int, task: str = "pickplace", camera: str = "top"
) -> tuple[float, float]:
    """Median and p99 frame time turned into FPS, RGB only, one camera of one task."""
    env = make_env(task)
    env.reset(seed=0)
    base = env.unwrapped
    base.render_camera(camera, width, height, depth=False)  # context creation
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        base.render_camera(camera, width, height, depth=False)
        times.append(time.perf_counter() - start)
    env.close()
    return 1.0 / float(np.median(times)), float(np.percentile(times, 99)) * 1e3


def _ik_ms_per_control_step(control_steps: int) -> tuple[float, float]:
    """Median and p99 ms of the Panda's IK within one 0.1 s control step (its 10 mink
    solves), timed apart from the physics, along the expert's episodes."""
    from sim.panda import PandaIK

    env = make_env("panda-pickplace")
    times: list[float] = []
    original = PandaIK.step

    def timed(self, data) -> None:
        began = time.perf_counter()
        original(self, data)
        times.append(time.perf_counter() - began)

    PandaIK.step = timed  # every solve of this process's Panda, this function only
    try:
        seed = 0
        while len(times) < control_steps * 10:
            before = len(times)
            observation, _ = env.reset(seed=seed)
            del times[before:]  # the solves that settle the arm at reset are not control
            expert = scene("panda-pickplace").expert(env.unwrapped, np.random.default_rng(seed))
            done = False
            while not done and len(times) < control_steps * 10:
                observation, _, terminated, truncated, _ = env.step(expert.act(observation))
                done = terminated or truncated
            seed += 1
    finally:
        PandaIK.step = original
    env.close()
    per_step = np.add.reduceat(np.array(times), np.arange(0, len(times), 10)) * 1e3
    return float(np.median(per_step)), float(np.percentile(per_step, 99))


def expert_success(task: str, seeds: int) -> tuple[float, float, float]:
    """Success rate, its 95% Wilson interval half-width, and mean episode length, on
    report seeds: the experts were developed on the low seeds datasets are collected on."""
    spec = scene(task)
    env = make_env(task)
    successes, lengths = 0, []
    for seed in tqdm(range(REPORT, REPORT + seeds), desc=f"expert {task}", leave=False):
        observation, info = env.reset(seed=seed)
        expert = spec.expert(env.unwrapped, np.random.default_rng(seed))
        done, length = False, 0
        while not done:
            observation, _, terminated, truncated, info = env.step(expert.act(observation))
            done, length = terminated or truncated, length + 1
        successes += bool(info["success"])
        lengths.append(length)
    env.close()
    return successes / seeds, wilson_half_width(successes, seeds), float(np.mean(lengths))


TASKS = ("pickplace", "pusht", "panda-pickplace", "panda-pusht")
# size -> (expert seeds, seconds of physics, frames at 96x96, frames at 640x480)
SIZES = {"full": (100, 3.0, 300, 100), "quick": (20, 1.0, 50, 20), "smoke": (1, 0.1, 5, 3)}


def run(size: str, checkpoints: Path | None = None) -> BenchResult:
    del checkpoints  # the experts are scripted
    seeds, physics_s, frames_96, frames_640 = SIZES[size]
    f: dict = {}
    for task in TASKS:
        f[f"physics_steps_per_s_{task}"] = _physics_steps_per_s(task, physics_s)
    f["render_fps_96"], f["render_p99_ms_96"] = _render_fps(96, 96, frames_96)
    f["render_fps_640x480"], f["render_p99_ms_640x480"] = _render_fps(640, 480, frames_640)
    for camera in ("top", "wrist"):
        fps, p99 = _render_fps(96, 96, frames_96, "panda-pickplace", camera)
        f[f"render_fps_96_panda_{camera}"], f[f"render_p99_ms_96_panda_{camera}"] = fps, p99
    fps, p99 = _render_fps(96, 96, frames_96, "panda-pusht", "side")
    f["render_fps_96_panda-pusht_side"], f["render_p99_ms_96_panda-pusht_side"] = fps, p99
    f["ik_ms_per_control_step"], f["ik_p99_ms_per_control_step"] = _ik_ms_per_control_step(
        frames_96
    )
    for task in TASKS:
        start = time.perf_counter()
        rate, half, length = expert_success(task, seeds)
        f[f"expert_success_{task}"], f[f"expert_success_ci95_{task}"] = rate, half
        f[f"expert_mean_length_{task}"] = length
        f[f"expert_seconds_per_episode_{task}"] = (time.perf_counter() - start) / seeds
    f["expert_seeds"] = seeds
    table = [
        ["figure", "value"],
        *[[k, f"{v:.3g}" if isinstance(v, float) else str(v)] for k, v in f.items()],
    ]
    notes = [
        "Physics: raw mj_step calls per second (PickPlace 0.002 s steps; PushT likewise).",
        "Rendering: headless EGL (Mesa llvmpipe on a CPU), RGB only, PickPlace top camera, "
        "FPS from the median frame time. Lights cast no shadows: on llvmpipe shadow maps "
        "cost ~20× (112 ms vs 5.5 ms per 96×96 frame).",
        f"Experts: report seeds {REPORT}..{REPORT + seeds - 1} "
        "(policies/seeds.py; until 2026-12-02 seeds 0..N-1, on which the experts were "
        "developed); ± is the 95% Wilson interval half-width. The PushT "
        "expert plans each push by rolling candidates out in a copy of the physics; from "
        "80% coverage it tries pushes of 1-10 mm at five angles, which finish what coarse "
        "pushes overshoot (85% -> 100% success when they were added).",
        "panda-pickplace: a Franka Panda under mink IK (sim/panda.py) runs the PickPlace "
        "expert unchanged; IK is timed apart from the physics, 10 solves per 0.1 s control "
        "step; its cameras render the Panda's meshes (top, and the wrist camera on the hand).",
        "panda-pusht_side: the camera beside the table added for Panda PushT from images "
        "(the top camera, under the arm, loses the block).",
        "panda-pusht: the Panda's closed hand under Tracking (a filtered target, inertia "
        "fed forward); its expert ranks pushes in PushT's scene and plays the best whole "
        "in a replica of the arm's scene (sim/tasks/panda_pusht.py), tuned on seeds 0..19.",
    ]
    return BenchResult(figures=f, table=table, notes=notes)
