"""`warmloop collect TASK --episodes N --out DIR`: expert demonstrations into a dataset.

Episode i is reset with seed `--seed + i`, so a dataset is reproducible and an
interrupted collection resumes where it stopped (see sim/dataset.py). `--workers N`
runs episodes in N processes, each writing its own episodes into the dataset: the same
dataset as one process writes, sooner where episodes are slow (PandaPushT's planner).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from tqdm import tqdm

from sim import trajectories
from sim.dataset import DatasetError, DatasetWriter, write_episode
from sim.envs import ENV_VERSION, make_env, scene

log = logging.getLogger(__name__)


def collect_episode(
    env: Any,
    task: str,
    index: int,
    seed: int,
    cameras: tuple[str, ...],
    image_size: int | None,
    depth: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Run one expert episode; return its arrays and attributes."""
    spec = scene(task)
    base = env.unwrapped
    observation, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    if spec.expert is not None:
        expert = spec.expert(base, rng)
        kind = getattr(expert, "name", type(expert).__name__)
    else:
        kind = trajectories.TRAJECTORIES[index % len(trajectories.TRAJECTORIES)]
        plan = trajectories.make(kind, rng, spec.max_episode_steps)
    columns: dict[str, list] = defaultdict(list)
    best_score, success, done = 0.0, False, False
    while not done:
        step = len(columns["action"])
        action = expert.act(observation) if spec.expert is not None else plan[step]
        columns["obs"].append(observation)
        columns["action"].append(action)
        columns["time"].append(base.time)
        if image_size:
            _record_images(base, cameras, image_size, columns, depth)
        observation, reward, terminated, truncated, info = env.step(action)
        columns["reward"].append(reward)
        best_score = max(best_score, float(info.get("score", reward)))
        success = success or bool(info["success"])
        done = terminated or truncated
    arrays = {name: np.asarray(values) for name, values in columns.items()}
    for name in ("obs", "action", "reward"):
        arrays[name] = arrays[name].astype(np.float32)
    if image_size:
        for camera in cameras:
            image = base.render_camera(camera, image_size, image_size, depth=False)
            arrays[f"images/{camera}/intrinsics"] = image.intrinsics
    return arrays, {"seed": seed, "success": success, "score": best_score, "behaviour": kind}


def _record_images(
    env: Any, cameras: tuple[str, ...], size: int, columns: dict, depth: bool
) -> None:
    for camera in cameras:
        image = env.render_camera(camera, size, size, depth=depth)
        columns[f"images/{camera}/rgb"].append(image.rgb)
        if depth:
            columns[f"images/{camera}/depth"].append(image.depth)
        columns[f"images/{camera}/pose"].append(image.pose)


def collect(
    task: str,
    episodes: int,
    out: Path,
    seed: int = 0,
    images: bool = False,
    image_size: int = 96,
    progress: bool = True,
    cameras: tuple[str, ...] | None = None,
    depth: bool | None = None,
    workers: int = 1,
) -> dict[str, float]:
    """Collect (or finish collecting) `episodes` episodes; return summary figures.

    `cameras` defaults to every camera of the task; `depth` to on for explore (the world
    model trains on RGB-D) and off for the manipulation tasks, whose image policies see
    RGB only (depth would more than double the dataset).
    """
    spec = scene(task)
    _check_counts(episodes, image_size, workers)
    images = images or spec.expert is None  # Explore data is for the world model: RGB-D
    depth = spec.expert is None if depth is None else depth
    env = make_env(task)
    cameras = _check_cameras(env.unwrapped.task.cameras, cameras)
    writer = DatasetWriter(out, _dataset_meta(task, env, seed, cameras, images, image_size, depth))
    done = writer.completed()
    todo = [i for i in range(episodes) if i not in done]
    settings = _Settings(task, out, seed, cameras, image_size if images else None, depth)
    with tqdm(
        total=episodes,
        initial=episodes - len(todo),
        desc=f"collect {task}",
        unit="episode",
        disable=not progress,
    ) as bar:
        results = []
        for success in _episodes(settings, todo, workers, env, writer):
            results.append(success)
            bar.set_postfix(success=f"{np.mean(results):.2f}")
            bar.update()
    env.close()
    return {
        "episodes": episodes,
        "collected_now": len(todo),
        "success_rate_now": float(np.mean(results)) if results else float("nan"),
    }


def _check_counts(episodes: int, image_size: int, workers: int) -> None:
    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {episodes}")
    if not 8 <= image_size <= 1024:
        raise ValueError(f"--image-size must be within 8..1024, got {image_size}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")


def _dataset_meta(
    task: str,
    env: Any,
    seed: int,
    cameras: tuple[str, ...],
    images: bool,
    image_size: int,
    depth: bool,
) -> dict:
    """What the dataset says about itself: its task and scene version, the expert, the
    cameras and the action and observation sizes."""
    spec = scene(task)
    expert_name = (
        getattr(spec.expert(env.unwrapped, np.random.default_rng(0)), "name", "")
        if spec.expert
        else "camera-trajectories-v1"
    )
    return {
        "task": task,
        "env_id": spec.env_id,
        "env_version": ENV_VERSION,
        "expert": expert_name,
        "seed": seed,
        "images": images,
        "image_size": image_size if images else None,
        "cameras": list(cameras) if images else [],
        "depth": bool(images and depth),
        "control_dt": env.unwrapped.task.control_dt,
        "action_dim": int(env.action_space.shape[0]),
        "obs_dim": int(env.observation_space.shape[0]),
        "discrete_action_dims": list(env.unwrapped.task.discrete_action_dims),
    }


@dataclass(frozen=True)
class _Settings:
    """What every episode of one collection shares (sent to worker processes)."""

    task: str
    out: Path
    seed: int
    cameras: tuple[str, ...]
    image_size: int | None
    depth: bool


def _episodes(settings: _Settings, todo: list[int], workers: int, env: Any, writer: DatasetWriter):
    """Collect and write the episodes `todo`; yield each one's success as it is written."""
    if workers == 1 or len(todo) < 2:
        for index in todo:
            arrays, attrs = _run(env, settings, index)
            writer.write_episode(index, arrays, attrs)
            yield attrs["success"]
        return
    # spawn, not fork: a child must not inherit this process's renderer or threads.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        min(workers, len(todo)), context, initializer=_start_worker, initargs=(settings,)
    ) as pool:
        futures = [pool.submit(_collect_and_write, index) for index in todo]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            # A worker's error (or an interrupt) stops the collection: episodes not yet
            # started are dropped, not run first; a resume collects them.
            for future in futures:
                future.cancel()
            raise


def _run(env: Any, settings: _Settings, index: int) -> tuple[dict, dict]:
    return collect_episode(
        env,
        settings.task,
        index,
        settings.seed + index,
        settings.cameras,
        settings.image_size,
        settings.depth,
    )


_worker: dict[str, Any] = {}  # a worker process's env and dataset, opened once


def _start_worker(settings: _Settings) -> None:
    _worker.update(
        settings=settings,
        env=make_env(settings.task),
        root=zarr.open_group(str(settings.out), mode="a"),
    )


def _collect_and_write(index: int) -> bool:
    arrays, attrs = _run(_worker["env"], _worker["settings"], index)
    write_episode(_worker["root"], index, arrays, attrs)
    return bool(attrs["success"])


def _check_cameras(available: tuple[str, ...], asked: tuple[str, ...] | None) -> tuple[str, ...]:
    if not asked:
        return tuple(available)
    unknown = [camera for camera in asked if camera not in available]
    if unknown:
        raise ValueError(f"unknown cameras {unknown}; this task has {list(available)}")
    return tuple(dict.fromkeys(asked))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", help="pickplace, pusht, panda-pickplace, panda-pusht or explore")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--out", type=Path, required=True, help="dataset directory (zarr)")
    p.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    p.add_argument(
        "--images", action="store_true", help="also record camera images (always on for explore)"
    )
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument(
        "--cameras", nargs="+", help="cameras to record (default: every camera of the task)"
    )
    p.add_argument(
        "--depth",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record metric depth too (default: on for explore, off otherwise)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="episodes collected side by side in this many processes (the same dataset)",
    )


def main_from_args(args: argparse.Namespace) -> int:
    try:
        summary = collect(
            args.task,
            args.episodes,
            args.out,
            seed=args.seed,
            images=args.images,
            image_size=args.image_size,
            cameras=tuple(args.cameras) if args.cameras else None,
            depth=args.depth,
            workers=args.workers,
        )
    except (ValueError, DatasetError) as exc:
        sys.stderr.write(f"warmloop collect: {exc}\n")
        return 2
    sys.stdout.write(
        f"{args.out}: {summary['episodes']} episodes "
        f"({summary['collected_now']} collected now, success rate "
        f"{summary['success_rate_now']:.2f})\n"
    )
    return 0
