"""The checkpoints shipped in checkpoints/ load and predict, so demos run without training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from policies.diffusion.checkpoint import load
from policies.diffusion.policy import DiffusionPolicy
from sim.envs import make_env

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints"


@pytest.mark.parametrize("task", ["pickplace", "pusht"])
def test_shipped_checkpoint_loads_and_predicts_in_range(task: str) -> None:
    checkpoint = load(SHIPPED / task)  # verifies the weight hash too
    assert checkpoint.config.task == task
    env = make_env(task)
    observation, _ = env.reset(seed=123)
    policy = DiffusionPolicy(checkpoint, sampler="rti", seed=0)
    observations = np.stack([observation] * policy.obs_horizon)
    low, high = env.action_space.low, env.action_space.high
    for _ in range(2):  # a full chain, then a warm update as the checkpoint calibrated it
        chunk = policy.infer(observations)
        assert chunk.shape == (policy.pred_horizon, env.action_space.shape[0])
        assert np.all(chunk >= low - 0.05) and np.all(chunk <= high + 0.05)
        for d in checkpoint.config.discrete_dims:  # the gripper is binarised
            assert set(np.unique(chunk[:, d])) <= {-1.0, 1.0}
    assert checkpoint.config.discrete_dims == ((3,) if task == "pickplace" else ())
