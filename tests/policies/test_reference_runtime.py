"""The export is enough to write a runtime: a second one, from the docs, matches bit for bit.

tests/policies/reference_runtime.py reads only manifest.json and the graphs. Fed the same
noise draws, it must produce the very actions `OnnxPolicy` produces over whole closed-loop
episodes of both shipped policies (PickPlace: DDPM RTI from the state; PushT: re-noised,
two DDIM steps), including the gripper's snap and the shift of the guess.
"""

from __future__ import annotations

import json
from collections import deque

import numpy as np
import pytest

from policies.deploy.export import export
from policies.deploy.runtime import OnnxPolicy
from sim.envs import make_env
from tests.no_torch import ROOT
from tests.policies.reference_runtime import ReferenceRuntime

pytestmark = pytest.mark.slow
SEED = 300_000  # a known-good seed (test_shipped_checkpoints), so the episode is whole


def _noise(seed: int):
    rng = np.random.default_rng(seed)
    return lambda shape: rng.standard_normal(shape, dtype=np.float32)


@pytest.mark.parametrize(("task", "anchor"), [("pickplace", 0), ("pusht", 0), ("pickplace", 4)])
def test_reference_runtime_reproduces_the_onnx_policy_over_an_episode(
    task, anchor, tmp_path
) -> None:
    directory = tmp_path / "export"
    export(ROOT / "checkpoints" / task, directory)
    if anchor:  # re-anchored every 4th prediction by a 5-step DDIM
        manifest = directory / "manifest.json"
        data = json.loads(manifest.read_text())
        data.update(rti_anchor_every=anchor, rti_anchor_steps=5)
        manifest.write_text(json.dumps(data))
    ours = OnnxPolicy(directory, seed=7)
    theirs = ReferenceRuntime(directory, _noise(7))
    env = make_env(task)
    observation, _ = env.reset(seed=SEED)
    window = deque([observation] * ours.obs_horizon, maxlen=ours.obs_horizon)
    done, steps, snapped = False, 0, set()
    while not done:
        observations = np.stack(window).astype(np.float32)
        expected = ours.infer(observations)
        np.testing.assert_array_equal(theirs.act(observations, executed=1), expected)
        snapped |= {float(v) for d in ours.manifest.discrete_dims for v in expected[:, d]}
        observation, _, terminated, truncated, info = env.step(expected[ours.obs_horizon - 1])
        window.append(observation)
        done, steps = terminated or truncated, steps + 1
    assert info["success"], f"{task} seed {SEED} failed: the comparison covered a bad episode"
    anchors = (steps - 1) // anchor if anchor else 0
    warm = steps - 1 - anchors
    assert steps > 20 and ours.network_calls == 100 + warm * ours.rti_calls + anchors * 5
    assert not ours.manifest.discrete_dims or snapped == {-1.0, 1.0}
