"""The Franka Panda from the installed wheel, driven by mink's differential IK."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import mujoco
import numpy as np
import pytest

from sim.panda import (
    END_EFFECTOR,
    FINGER_JOINTS,
    IK_HZ,
    NOMINAL_POSTURE,
    PandaIK,
    Tracking,
    assets_dir,
    panda_xml,
    set_arm,
)

TABLE = '<geom name="table" type="plane" size="1.5 1.5 .01" rgba=".5 .4 .3 1"/>'
PHYSICS_STEPS = 50  # per 0.1 s control step
IK_EVERY = 500 // IK_HZ


@pytest.fixture
def arm():
    model = mujoco.MjModel.from_xml_string(panda_xml(TABLE, (-0.55, 0.0, 0.0)))
    data = mujoco.MjData(model)
    set_arm(model, data, NOMINAL_POSTURE)
    mujoco.mj_forward(model, data)
    controller = PandaIK(model)
    controller.reset(data)
    return model, data, controller


def _control_steps(model, data, controller, target, steps: int) -> list[float]:
    """Errors (m) of the end-effector site after each 0.1 s control step."""
    controller.set_target(target)
    errors = []
    for _ in range(steps):
        for physics_step in range(PHYSICS_STEPS):
            if physics_step % IK_EVERY == 0:
                controller.step(data)
            mujoco.mj_step(model, data)
        errors.append(float(np.linalg.norm(data.site(END_EFFECTOR).xpos - target)))
    return errors


def test_the_meshes_come_from_the_installed_package() -> None:
    assert "site-packages" in str(assets_dir()) or "dist-packages" in str(assets_dir())
    assert (assets_dir() / "meshes" / "visual" / "link0.stl").is_file()


# End-effector site heights: the site sits ~4.5 cm above the fingertips, so 0.05 m
# has the fingers just above the table.
@pytest.mark.parametrize(
    "target", [(0.1, 0.1, 0.05), (-0.15, -0.2, 0.2), (0.2, -0.1, 0.1), (0.0, 0.25, 0.06)]
)
def test_ik_tracks_a_target_within_5_mm_in_50_control_steps(arm, target) -> None:
    model, data, controller = arm
    errors = _control_steps(model, data, controller, np.array(target), 50)
    assert errors[-1] <= 0.005, errors[::5]
    # The gripper points down at the end, as the task asks.
    z_axis = data.site(END_EFFECTOR).xmat.reshape(3, 3)[:, 2]
    assert z_axis[2] < -0.99


def _ramp_overshoot(tracking: Tracking) -> tuple[float, float]:
    """An 8 cm move at 0.4 m/s then a hold, the target fed at the IK rate as PushT does:
    the hand's overshoot past the goal (m), and its distance from the goal 0.5 s after
    the target stopped."""
    model = mujoco.MjModel.from_xml_string(panda_xml(TABLE, (-0.55, 0.0, 0.0)))
    data = mujoco.MjData(model)
    set_arm(model, data, NOMINAL_POSTURE)
    mujoco.mj_forward(model, data)
    controller = PandaIK(model, tracking=tracking)
    controller.reset(data)
    start, goal = np.array([0.0, -0.04, 0.055]), np.array([0.0, 0.04, 0.055])
    controller.settle(data, start)
    along = []
    for physics_step in range(500 * 7 // 10):  # 0.2 s moving, 0.5 s holding
        if physics_step % IK_EVERY == 0:
            fraction = min(1.0, physics_step / 100)
            controller.set_target(start + (goal - start) * fraction)
            controller.step(data)
        mujoco.mj_step(model, data)
        along.append(data.site(END_EFFECTOR).xpos[1] - start[1])
    return max(along) - 0.08, float(np.linalg.norm(data.site(END_EFFECTOR).xpos - goal))


def test_tracking_stops_the_hand_where_it_is_sent() -> None:
    plain, _ = _ramp_overshoot(Tracking())
    tracked, settled = _ramp_overshoot(Tracking(filter_omega=30.0, inertia_feedforward=True))
    assert plain > 0.003  # the soft servo alone runs millimetres past a stop
    assert tracked < 0.001, (plain, tracked)
    assert settled < 0.001  # the filter's lag is gone half a second later


def test_a_target_below_the_table_leaves_the_arm_on_it(arm) -> None:
    model, data, controller = arm
    _control_steps(model, data, controller, np.array([0.1, 0.0, -0.1]), 30)
    table = model.geom("table").id
    deepest = min(
        (data.contact[i].dist for i in range(data.ncon) if table in data.contact[i].geom),
        default=0.0,
    )
    assert deepest > -0.01 and data.site(END_EFFECTOR).xpos[2] > -0.01


def _expert_episodes(task: str, seeds: range, before_step=None) -> list[tuple[bool, float]]:
    """(success, deepest arm-table penetration in m) of the task's expert, per episode;
    `before_step(env, step)`, when given, looks at the scene before every step."""
    from sim.envs import make_env, scene

    env = make_env(task)
    physics = env.unwrapped.physics
    model = physics.model
    table = model.geom("table").id
    # The arm: every body whose root (the world's child it hangs from) is the base.
    base = model.body("panda_base").id
    arm = {b for b in range(model.nbody) if model.body_rootid[b] == base}
    results = []
    for seed in seeds:
        observation, _ = env.reset(seed=seed)
        expert = scene(task).expert(env.unwrapped, np.random.default_rng(seed))
        deepest, done, info, step = 0.0, False, {}, 0
        while not done:
            if before_step is not None:
                before_step(env.unwrapped, step)
            observation, _, terminated, truncated, info = env.step(expert.act(observation))
            done, step = terminated or truncated, step + 1
            data = physics.data
            for contact in data.contact[: data.ncon]:
                pair = (contact.geom1, contact.geom2)
                if table in pair and model.geom_bodyid[sum(pair) - table] in arm:
                    deepest = min(deepest, contact.dist)
        results.append((bool(info["success"]), deepest))
    env.close()
    return results


def test_the_panda_expert_places_the_cube_and_the_arm_stays_on_the_table() -> None:
    results = _expert_episodes("panda-pickplace", range(10))
    assert sum(success for success, _ in results) >= 9
    assert min(deepest for _, deepest in results) > -0.003  # never through the table


@pytest.mark.slow
def test_the_panda_pusht_expert_places_the_block_and_the_hand_stays_off_the_table() -> None:
    # Seeds 10-19, tuning seeds (`bench sim` reports on others), one episode a task on
    # the two cores: ~31 s of episodes. Seeds 0-9 succeed too but take 55 s (one 15 s).
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        episodes = pool.map(
            _expert_episodes, ["panda-pusht"] * 10, [range(s, s + 1) for s in range(10, 20)]
        )
        results = [episode for one in episodes for episode in one]
    assert sum(success for success, _ in results) >= 9
    assert min(deepest for _, deepest in results) > -0.003


def test_end_effector_targets_outside_the_workspace_are_clamped() -> None:
    from sim.envs import make_env

    env = make_env("panda-pickplace")
    env.reset(seed=0)
    for _ in range(30):
        observation, *_ = env.step(np.array([2.0, -2.0, -1.0, -1.0], np.float32))
    assert np.all(observation[:3] <= [0.3 + 0.01, 0.3, 0.36])
    assert np.all(observation[:3] >= [-0.3, -0.3 - 0.01, 0.045])
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0, 0.1, 1], np.float32))
    env.close()


def test_panda_pusht_keeps_the_closed_hand_at_push_height_and_clamps_targets() -> None:
    from sim.envs import make_env
    from sim.tasks.panda_pusht import PUSH_HEIGHT

    env = make_env("panda-pusht")
    env.reset(seed=0)
    physics = env.unwrapped.physics
    rng = np.random.default_rng(0)
    heights, openings = [], []
    for step in range(30):
        # Far outside the workspace every third step: the target is clamped to ±0.25 m.
        target = rng.uniform(-0.25, 0.25, 2) * (4 if step % 3 == 0 else 1)
        observation, *_ = env.step(target.astype(np.float32))
        heights.append(physics.data.site(END_EFFECTOR).xpos[2])
        openings.append(sum(physics.data.joint(j).qpos[0] for j in FINGER_JOINTS))
    assert np.all(np.abs(observation[:2]) <= 0.25 + 0.01)
    assert max(abs(h - PUSH_HEIGHT) for h in heights) < 0.01
    assert max(openings) < 0.005  # closed: the fingertips push as one
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0.0], np.float32))
    env.close()


def test_the_pusht_experts_replica_plays_a_plan_exactly_as_the_arm_does() -> None:
    # The expert keeps the plan that ends best in its replica of the arm's scene; that
    # choice is only as good as the replica is exact, contacts with the block included.
    from sim.envs import make_env
    from sim.tasks.panda_pusht import PandaPushTExpert
    from sim.tasks.pusht import block_pose

    env = make_env("panda-pusht")
    observation, _ = env.reset(seed=3)
    base = env.unwrapped
    for _ in range(5):  # mid-motion: the filter and the servos carry state
        observation, *_ = env.step(observation[:2] + np.float32(0.02))
    replica = PandaPushTExpert(base, np.random.default_rng(0))._replica
    replica.load(base)
    block = observation[2:4]
    # Through the block's centre and beyond, then back: contacts, a stop, a reversal.
    actions = [block + (block - observation[:2]) * 0.5] * 8 + [observation[:2]] * 4
    for action in actions:
        action = action.astype(np.float32)
        env.step(action)
        replica.step(action)
    assert np.linalg.norm(block_pose(base.physics)[:2] - block) > 0.01  # it was pushed
    np.testing.assert_allclose(block_pose(replica.physics), block_pose(base.physics), atol=1e-9)
    np.testing.assert_allclose(replica.hand(), base.physics.data.site(END_EFFECTOR).xpos[:2])
    env.close()


def test_the_panda_pusht_side_camera_keeps_the_block_in_view() -> None:
    # Why the camera is in the scene: the top camera looks down past the arm, which hides
    # the block in some frames (0 pixels); measured over seeds 20-29 the side camera's
    # fewest block pixels in a frame was 23 (checkpoints/README.md, "a side camera").
    pixels = []

    def count_block_pixels(env, step: int) -> None:
        if step % 5 == 0:
            model = env.physics.model
            block = np.flatnonzero(model.geom_bodyid == model.body("block").id)
            pixels.append(int(np.isin(env.render_segmentation("side", 96, 96), block).sum()))

    _expert_episodes("panda-pusht", range(20, 21), before_step=count_block_pixels)
    assert len(pixels) > 10 and min(pixels) >= 10
