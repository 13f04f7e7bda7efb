"""The registry of warmloop scenes: gymnasium ids, tasks, experts and episode limits."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from sim.scene import MujocoScene, Task
from sim.tasks.explore import ExploreTask
from sim.tasks.panda_pickplace import PandaPickPlaceTask
from sim.tasks.panda_pusht import PandaPushTExpert, PandaPushTTask
from sim.tasks.pickplace import PickPlaceExpert, PickPlaceTask
from sim.tasks.pusht import PushTTask
from sim.tasks.pusht_expert import PushTExpert

ENV_VERSION = 0  # the -v0 in the ids; bump with any change that alters episodes
# Set only by a smoke benchmark run (benchmarks/harness.py), for itself and the nodes it
# starts: episodes end after this many ticks, so the run walks its code path in seconds.
SMOKE_EPISODE_STEPS = "WARMLOOP_SMOKE_EPISODE_STEPS"


@dataclass(frozen=True)
class SceneSpec:
    name: str
    env_id: str
    task: Callable[[], Task]
    max_episode_steps: int
    # Builds a scripted expert for an env, or None where the scene has no expert.
    expert: Callable[[MujocoScene, np.random.Generator], Any] | None


SCENES = {
    spec.name: spec
    for spec in (
        SceneSpec(
            "pickplace",
            f"warmloop/PickPlace-v{ENV_VERSION}",
            PickPlaceTask,
            100,
            lambda env, rng: PickPlaceExpert(rng),
        ),
        SceneSpec("pusht", f"warmloop/PushT-v{ENV_VERSION}", PushTTask, 300, PushTExpert),
        SceneSpec("explore", f"warmloop/Explore-v{ENV_VERSION}", ExploreTask, 200, None),
        # The same problem and expert as pickplace, with a Franka Panda (sim/panda.py).
        SceneSpec(
            "panda-pickplace",
            f"warmloop/PandaPickPlace-v{ENV_VERSION}",
            PandaPickPlaceTask,
            100,
            lambda env, rng: PickPlaceExpert(rng),
        ),
        # PushT with the Panda's closed hand as the pusher; the expert plans in PushT.
        SceneSpec(
            "panda-pusht",
            f"warmloop/PandaPushT-v{ENV_VERSION}",
            PandaPushTTask,
            300,
            PandaPushTExpert,
        ),
    )
}


def scene(name: str) -> SceneSpec:
    if name not in SCENES:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(SCENES)}")
    return SCENES[name]


def _entry_point(name: str) -> Callable[..., MujocoScene]:
    def make(**kwargs: Any) -> MujocoScene:
        return MujocoScene(SCENES[name].task(), **kwargs)

    return make


def register_all() -> None:
    for spec in SCENES.values():
        if spec.env_id not in gym.registry:
            gym.register(
                spec.env_id,
                entry_point=_entry_point(spec.name),
                max_episode_steps=spec.max_episode_steps,
            )


def make_env(name: str, **kwargs: Any) -> gym.Env:
    """gymnasium.make of a warmloop scene by short name (pickplace, pusht, explore)."""
    register_all()
    spec = scene(name)
    cap = os.environ.get(SMOKE_EPISODE_STEPS)
    if cap and "max_episode_steps" not in kwargs:
        kwargs["max_episode_steps"] = min(int(cap), spec.max_episode_steps)
    return gym.make(spec.env_id, **kwargs)
