"""Closed-loop success, score and latency in simulation (`warmloop eval`; its CLI is
policies/diffusion/eval_cli.py).

Evaluation seeds start at 100,000 (policies/seeds.py: REPORT), far from the collection
seeds (0, 1, 2, ...) and from the tuning ones, so a policy is scored on starts it never
saw and nothing was chosen on. `--delay D` plays the chunks late, as a robot whose
inference takes D control ticks does (policies/diffusion/execution.py).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policies import seeds
from policies.diffusion.execution import (
    MERGES,
    ChunkPlan,
    check_timing,
)
from policies.images import render_frames
from runtime.stats import wilson_half_width, wilson_interval

log = logging.getLogger(__name__)
EVAL_SEED = seeds.REPORT
DEFAULT_NUM_ENVS = 8


@dataclass
class EvalResult:
    episodes: int
    success_rate: float
    success_ci95: float  # half-width of the Wilson interval
    mean_score: float
    latency_p50_ms: float  # per (batched) prediction, after the first of each episode
    latency_p99_ms: float
    network_calls_per_prediction: float
    actions_per_prediction: int
    mean_batch: float  # episodes served by one prediction call, on average
    delay: int = 0  # ticks between an observation and its chunk becoming executable
    jitter: int = 0
    merge: str = "latest"
    success_low: float = 0.0  # Wilson 95% interval bounds (not centred on the rate)
    success_high: float = 1.0
    boundary_jump: float = float("nan")  # mean ‖a_τ − a_τ−1‖ where a new chunk first plays
    mean_step: float = float("nan")  # mean ‖a_τ − a_τ−1‖ over every tick, for reference
    jerk: float = float("nan")  # mean ‖Δ³a‖ of the executed continuous actions
    calls_per_tick: float = float("nan")  # network calls per episode tick, first predictions apart
    cold_start_ms: float = float("nan")  # median first prediction of an episode (batched call)
    # one record per episode: episode, seed, success, score, length (steps)
    per_episode: list[dict] = field(default_factory=list, repr=False)


@dataclass
class _Slot:
    """One of the environments stepped in lockstep, and the episode it is playing."""

    env: Any
    episode: int = -1
    history: deque = field(default_factory=deque)
    frames: deque = field(default_factory=deque)  # image policies: {camera: frame} per step
    plan: ChunkPlan = field(default_factory=ChunkPlan)
    first: bool = True  # no prediction made yet in this episode
    best: float = 0.0
    length: int = 0  # steps played in this episode


@dataclass
class _Tally:
    successes: int = 0
    scores: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    calls: int = 0
    episode_calls: int = 0  # per episode served, after each episode's first prediction
    cold_starts: list[float] = field(default_factory=list)  # first predictions, seconds
    ticks: int = 0
    smoothness: list[dict] = field(default_factory=list)
    per_episode: list[dict] = field(default_factory=list)


def evaluate(
    policy,
    task: str,
    episodes: int,
    executed: int,
    seed: int = EVAL_SEED,
    video: Path | None = None,
    progress: bool = True,
    num_envs: int = 1,
    videos: tuple[Path, int] | None = None,
    delay: int = 0,
    jitter: int = 0,
    merge: str = "latest",
) -> EvalResult:
    """Run `episodes` episodes, `num_envs` at a time in lockstep with batched inference.

    Episode i is reset with seed + i whatever `num_envs` is; a prediction is made every
    `executed` ticks, and its chunk plays `delay` (+ up to `jitter`) ticks later, merged
    with the plan by `merge` (execution.py). With num_envs > 1 the policy needs
    `infer_batch`. `video` is an MP4 of episode 0; `videos` = (DIR, N) writes
    DIR/episodeI.mp4 for the first N episodes.
    """
    from tqdm import tqdm

    from sim.envs import make_env

    _check_arguments(policy, num_envs, merge)
    check_timing(delay, jitter, executed, policy.obs_horizon - 1, policy.pred_horizon)
    timing = {"delay": delay, "jitter": jitter, "executed": executed, "merge": merge}
    slots = [_Slot(make_env(task)) for _ in range(min(num_envs, episodes))]
    tally = _Tally()
    cameras = policy_cameras(policy)
    filmed = max(1 if video is not None else 0, videos[1] if videos else 0)
    frames: dict[int, list[np.ndarray]] = {}
    upcoming = iter(range(episodes))
    bar = tqdm(total=episodes, desc=f"eval {task}", disable=not progress)
    for index, slot in enumerate(slots):
        _start_episode(slot, index, next(upcoming), policy, seed, timing)
    active = list(enumerate(slots))
    while active:
        waiting = [(i, s) for i, s in active if s.plan.needs_prediction()]
        for group in _prediction_groups(policy, waiting):
            _predict(policy, group, tally)
        for index, slot in list(active):
            info = _step(slot, frames if slot.episode < filmed else None, cameras)
            if info is not None:  # the episode ended
                _tally_episode(tally, slot, info, seed)
                bar.update()
                episode = next(upcoming, None)
                if episode is None:
                    active.remove((index, slot))
                else:
                    _start_episode(slot, index, episode, policy, seed, timing)
    bar.close()
    fps = slots[0].env.unwrapped.metadata["render_fps"]
    for slot in slots:
        slot.env.close()
    _write_videos(frames, fps, video, videos)
    tally.per_episode.sort(key=lambda record: record["episode"])
    return _result(tally, episodes, timing)


def _check_arguments(policy, num_envs: int, merge: str) -> None:
    if num_envs > 1 and not hasattr(policy, "infer_batch"):
        raise ValueError("this policy predicts one episode at a time: use num_envs=1")
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")


def _write_videos(
    frames: dict[int, list[np.ndarray]],
    fps: float,
    video: Path | None,
    videos: tuple[Path, int] | None,
) -> None:
    """`video`: episode 0's MP4; `videos` (DIR, N): DIR/episodeI.mp4 for each filmed one."""
    if video is not None and frames.get(0):
        _write_video(video, frames[0], fps)
    if videos is not None:
        for episode in range(videos[1]):
            if frames.get(episode):
                _write_video(videos[0] / f"episode{episode}.mp4", frames[episode], fps)


def _tally_episode(tally: _Tally, slot: _Slot, info: dict, seed: int) -> None:
    smoothness = slot.plan.smoothness()
    tally.successes += bool(info["success"])
    tally.scores.append(slot.best)
    tally.ticks += slot.length
    tally.smoothness.append(smoothness)
    tally.per_episode.append(
        {
            "episode": slot.episode,
            "seed": seed + slot.episode,
            "success": bool(info["success"]),
            "score": slot.best,
            "length": slot.length,
            **smoothness,
        }
    )


def _step(
    slot: _Slot, frames: dict[int, list[np.ndarray]] | None, cameras: tuple | None = None
) -> dict | None:
    """Play the slot's next queued action; the final info when its episode ends.
    With `frames`, the camera image is kept for the episode's video; with `cameras`
    ((names, size) of an image policy) the policy's frames are rendered."""
    observation, reward, terminated, truncated, info = slot.env.step(slot.plan.next_action())
    slot.history.append(observation)
    if cameras:
        slot.frames.append(render_frames(slot.env, *cameras))
    slot.length += 1
    slot.best = max(slot.best, float(info.get("score", reward)))
    if frames is not None:
        image = slot.env.unwrapped.render_camera(width=240, height=240, depth=False).rgb
        frames.setdefault(slot.episode, []).append(image)
    return info if terminated or truncated else None


def _start_episode(slot: _Slot, index: int, episode: int, policy, seed: int, timing: dict) -> None:
    observation, _ = slot.env.reset(seed=seed + episode)
    if hasattr(policy, "infer_batch"):
        policy.reset(index)  # this slot's warm-start guess only
    else:
        policy.reset()
    slot.episode, slot.first, slot.best, slot.length = episode, True, 0.0, 0
    slot.history = deque([observation] * policy.obs_horizon, maxlen=policy.obs_horizon)
    cameras = policy_cameras(policy)
    if cameras:
        first = render_frames(slot.env, *cameras)
        slot.frames = deque([first] * policy.obs_horizon, maxlen=policy.obs_horizon)
    # The jitter draws follow the episode's seed, so an episode replays whatever
    # environment slot it lands in.
    rng = np.random.default_rng(seed + episode)
    slot.plan = ChunkPlan(discrete_dims=discrete_dims(policy), rng=rng, **timing)


def _prediction_groups(policy, waiting: list[tuple[int, _Slot]]) -> list[list]:
    """Episodes to predict for together. Under RTI (or inpainting) a first prediction
    starts from noise and later ones from the previous chunk: each kind gets its own
    call, so that only later ones are timed. Other samplers cost the same every time:
    one call serves all."""
    warm_starts = getattr(policy, "warm_starts", getattr(policy, "sampler", None) == "rti")
    if not warm_starts:
        return [waiting] if waiting else []
    first = [w for w in waiting if w[1].first]
    later = [w for w in waiting if not w[1].first]
    return [group for group in (first, later) if group]


def discrete_dims(policy) -> tuple[int, ...]:
    """The action dimensions that are commands (a gripper), never averaged."""
    if hasattr(policy, "manifest"):
        return tuple(policy.manifest.discrete_dims)
    return tuple(policy.config.discrete_dims)


def _predict(policy, group: list[tuple[int, _Slot]], tally: _Tally) -> None:
    """One prediction call for every episode in `group`; plan each one's chunk."""
    first = all(slot.first for _, slot in group)
    observations = np.stack([np.stack(s.history) for _, s in group])
    images = None
    if policy_cameras(policy):
        observations = observations[..., list(policy.state_dims)]
        images = {
            c: np.stack([np.stack([f[c] for f in s.frames]) for _, s in group])
            for c in policy.cameras
        }
    calls_before, began = policy.network_calls, time.perf_counter()
    if hasattr(policy, "infer_batch"):
        extra = () if images is None else (images,)  # a state policy's takes no images
        chunks = policy.infer_batch(observations, [i for i, _ in group], *extra)
    elif images is not None:
        chunks = policy.infer(observations[0], {c: f[0] for c, f in images.items()})[None]
    else:
        chunks = policy.infer(observations[0])[None]
    elapsed = time.perf_counter() - began
    if first:  # RTI's first prediction of an episode always denoises fully
        tally.cold_starts.append(elapsed)
    else:
        tally.episode_calls += (policy.network_calls - calls_before) * len(group)
        tally.latencies.append(elapsed)
        tally.calls += policy.network_calls - calls_before
        tally.batches.append(len(group))
    start = policy.obs_horizon - 1  # the chunk's action for the current step
    for (_, slot), chunk in zip(group, chunks, strict=True):
        slot.plan.receive(chunk, start)
        slot.first = False


def policy_cameras(policy) -> tuple[tuple[str, ...], int] | None:
    """(cameras, frame size) of an image policy; None for one on the state alone."""
    cameras = tuple(getattr(policy, "cameras", ()))
    return (cameras, policy.image_size) if cameras else None


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=fps)


def _result(tally: _Tally, episodes: int, timing: dict) -> EvalResult:
    ms = np.array(tally.latencies) * 1e3 if tally.latencies else np.array([np.nan])
    predictions = max(len(tally.batches), 1)
    low, high = wilson_interval(tally.successes, episodes)

    def mean_of(name: str) -> float:
        values = [s[name] for s in tally.smoothness if np.isfinite(s[name])]
        return float(np.mean(values)) if values else float("nan")

    batch = float(np.mean(tally.batches)) if tally.batches else 1.0
    return EvalResult(
        episodes=episodes,
        success_rate=tally.successes / episodes,
        success_ci95=wilson_half_width(tally.successes, episodes),
        mean_score=float(np.mean(tally.scores)),
        latency_p50_ms=float(np.percentile(ms, 50)),
        latency_p99_ms=float(np.percentile(ms, 99)),
        network_calls_per_prediction=tally.calls / predictions,
        actions_per_prediction=timing["executed"],
        mean_batch=batch,
        delay=timing["delay"],
        jitter=timing["jitter"],
        merge=timing["merge"],
        success_low=low,
        success_high=high,
        boundary_jump=mean_of("boundary_jump"),
        mean_step=mean_of("mean_step"),
        jerk=mean_of("jerk"),
        # What one robot would call: a batched call counts once for every episode in it.
        calls_per_tick=tally.episode_calls / max(tally.ticks, 1),
        cold_start_ms=float(np.median(tally.cold_starts) * 1e3) if tally.cold_starts else np.nan,
        per_episode=tally.per_episode,
    )
