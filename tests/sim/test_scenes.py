from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim  # noqa: F401 - registers the scenes
from sim.envs import SCENES, make_env
from sim.tasks.explore import keys_to_action
from sim.tasks.pickplace import PickPlaceExpert
from sim.tasks.pusht import TARGET_POSE, coverage
from sim.trajectories import loop


@pytest.mark.parametrize("name", sorted(SCENES))
def test_check_env_passes(name: str) -> None:
    env = gym.make(SCENES[name].env_id, render_mode="rgb_array")
    # check_env's render check opens every declared mode, "human" included, which needs
    # a display; the headless modes are checked below instead.
    check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.metadata["render_fps"] == 10
    env.reset(seed=0)
    assert env.render().shape == (96, 96, 3)
    env.close()
    depth_env = gym.make(SCENES[name].env_id, render_mode="depth_array", width=32, height=24)
    depth_env.reset(seed=0)
    depth = depth_env.render()
    assert depth.shape == (24, 32) and depth.dtype == np.float32 and (depth > 0).all()
    depth_env.close()


def test_human_render_without_a_display_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    env = gym.make(SCENES["pusht"].env_id, render_mode="human")
    with pytest.raises(RuntimeError, match="needs a display"):
        env.reset(seed=0)
        env.step(np.zeros(2, np.float32))


@pytest.mark.parametrize("name", sorted(SCENES))
def test_a_seed_reproduces_an_episode_exactly(name: str) -> None:
    def rollout() -> np.ndarray:
        env = make_env(name)
        observation, _ = env.reset(seed=11)
        rng = np.random.default_rng(0)
        trace = [observation]
        for _ in range(15):
            observation, *_ = env.step(
                env.action_space.sample() * 0
                + rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
            )
            trace.append(observation)
        env.close()
        return np.array(trace)

    first, second = rollout(), rollout()
    np.testing.assert_array_equal(first, second)
    other = make_env(name)
    assert not np.array_equal(other.reset(seed=12)[0], first[0])


def test_bad_actions_are_refused_with_a_clear_error() -> None:
    env = make_env("pickplace")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([0, 0, np.nan, 0], np.float32))


def test_pickplace_expert_succeeds_and_varies() -> None:
    env = make_env("pickplace")
    sides = set()
    for seed in range(4):
        observation, info = env.reset(seed=seed)
        expert = PickPlaceExpert(np.random.default_rng(seed))
        sides.add(expert.side)
        done = False
        while not done:
            observation, _, terminated, truncated, info = env.step(expert.act(observation))
            done = terminated or truncated
        assert info["success"], seed
    assert sides == {-1.0, 1.0}  # both approach modes appear


@pytest.mark.slow
def test_pusht_expert_succeeds_on_most_of_a_handful_of_seeds() -> None:
    from sim.tasks.pusht_expert import PushTExpert

    env = make_env("pusht")
    successes = 0
    for seed in range(3):
        observation, info = env.reset(seed=seed)
        expert = PushTExpert(env.unwrapped, np.random.default_rng(seed))
        done = False
        while not done:
            observation, _, terminated, truncated, info = env.step(expert.act(observation))
            done = terminated or truncated
        successes += info["success"]
    assert successes >= 2  # 100 seeds: `warmloop bench sim`


def test_a_smoke_run_caps_episodes_and_nothing_else_does(monkeypatch) -> None:
    from sim.envs import SMOKE_EPISODE_STEPS

    assert make_env("pusht").spec.max_episode_steps == 300
    monkeypatch.setenv(SMOKE_EPISODE_STEPS, "24")
    env = make_env("pusht")
    env.reset(seed=0)
    ticks, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        ticks, done = ticks + 1, terminated or truncated
    assert ticks == 24 and truncated


def test_pusht_coverage_is_the_overlap_of_the_two_ts() -> None:
    assert coverage(TARGET_POSE) == 1.0
    assert coverage(TARGET_POSE + np.array([1.0, 0, 0])) == 0.0
    # T at the origin, block 1.5 cm along the bar: the bar keeps 10.5 of its 12 cm, the
    # 3 cm stem keeps half: (0.105·0.03 + 0.015·0.09) / (0.12·0.03 + 0.03·0.09) = 0.714.
    shifted = coverage(np.array([0.015, 0.0, 0.0]), np.zeros(3))
    assert shifted == pytest.approx(0.714, abs=0.02)


def test_rendered_depth_matches_the_table_plane_and_rgb_shows_the_pusher() -> None:
    env = make_env("pusht")
    env.reset(seed=3)
    image = env.unwrapped.render_camera("top", 96, 96)
    # The camera looks straight down from 0.75 m: the table is 0.75 m away everywhere,
    # the block (2.4 cm tall) a little nearer.
    assert np.median(image.depth) == pytest.approx(0.75, abs=1e-3)
    assert image.depth.min() > 0.72
    assert image.rgb.std() > 5  # not a blank image
    pusher = env.unwrapped.physics.data.mocap_pos[0]
    world_to_camera = np.linalg.inv(image.pose)
    x, y, z = (world_to_camera @ [*pusher[:2], 0.024, 1.0])[:3]
    # OpenGL camera: looks along -z, y up; pixel rows grow downwards.
    u = image.intrinsics[0, 0] * x / -z + image.intrinsics[0, 2]
    v = -image.intrinsics[1, 1] * y / -z + image.intrinsics[1, 2]
    r, g, b = image.rgb[int(v), int(u)].astype(int)
    assert r > 150 and r > g + 40 and r > b + 60  # the orange pusher


def test_explore_keys_and_loops() -> None:
    np.testing.assert_array_equal(keys_to_action(["w", "left"]), [1, 0, 0, 1, 0])
    with pytest.raises(ValueError, match="unknown keys"):
        keys_to_action(["z"])
    env = make_env("explore")
    start, _ = env.reset(seed=4)
    for action in loop(np.random.default_rng(4), 60):
        end, *_ = env.step(action)
    np.testing.assert_allclose(end[:5], start[:5], atol=1e-4)  # back at the start pose
    image = env.unwrapped.render_camera(width=64, height=48)
    assert image.rgb.shape == (48, 64, 3) and np.isfinite(image.depth).all()
    assert float(image.depth.min()) > 0.05 and float(image.depth.max()) < 9.0


@pytest.mark.parametrize("name", ["pickplace", "pusht", "explore"])
def test_each_env_has_its_own_spaces(name: str) -> None:
    first, second = make_env(name), make_env(name)
    assert first.action_space is not second.action_space
    first.action_space.seed(1)
    second.action_space.seed(1)
    drawn = first.action_space.sample()
    first.action_space.seed(2)  # reseeding one env leaves the other's stream alone
    assert np.array_equal(second.action_space.sample(), drawn)
    first.close()
    second.close()


def test_a_saved_state_renders_the_frame_the_live_scene_showed() -> None:
    """The sim node films its first episode from saved states after the episode (off the
    control clock): each frame must be the one the live scene shows at that step, and
    the live simulation must be left where it was."""
    import mujoco

    env = make_env("panda-pickplace")
    env.reset(seed=3)
    scene = env.unwrapped
    live, states = [], []
    for _ in range(4):
        env.step(env.action_space.sample())
        # After mj_step the bodies' world positions are those of the last substep's start
        # (~1 mm behind qpos); a forward pass brings them to the state that is saved.
        mujoco.mj_forward(scene.physics.model, scene.physics.data)
        live.append(scene.render_camera("front", 64, 64, depth=False).rgb)
        states.append(scene.physics_state())
    before = scene.physics_state()
    replayed = scene.render_states(states, "front", 64, 64)
    assert all(np.array_equal(a, b) for a, b in zip(live, replayed, strict=True))
    assert not np.array_equal(live[0], live[-1])  # the arm moved: the test can tell frames apart
    assert np.array_equal(scene.physics_state(), before)
    env.close()
