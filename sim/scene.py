"""A MuJoCo scene as a gymnasium environment: physics + task, composed, not inherited.

The environment owns the model, the data, stepping and rendering. A Task owns what
makes a scene a problem, through hooks called in this order (as in dm_control):

    reset:  initialize_episode(physics, rng)            then mj_forward
    step:   before_step(physics, action)                set controls and targets
            substep(physics, fraction) + mj_step        n_substeps times
            after_step(physics)
            observation / reward / success              read the new state
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from sim.camera import CameraImage, CameraRenderer, camera_pose

FULL_PHYSICS = mujoco.mjtState.mjSTATE_FULLPHYSICS


@dataclass
class Physics:
    model: mujoco.MjModel
    data: mujoco.MjData

    def body_pos(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos.copy()

    def body_quat(self, name: str) -> np.ndarray:
        return self.data.body(name).xquat.copy()


class Task:
    """Base of every task; subclasses set the class attributes and override hooks."""

    xml: ClassVar[str]
    control_dt: ClassVar[float] = 0.1
    default_camera: ClassVar[str] = "top"
    # What the sim node films (an episode's MP4): by default the default camera.
    video_camera: ClassVar[str | None] = None
    cameras: ClassVar[tuple[str, ...]] = ("top",)
    discrete_action_dims: ClassVar[tuple[int, ...]] = ()  # never averaged between chunks
    # What a robot knows about itself (its hand, its gripper): the part of the observation
    # an image policy keeps beside its cameras. Everything else it must see.
    proprio_dims: ClassVar[tuple[int, ...]] = ()
    scored: ClassVar[bool] = True  # False: no success to reach (a camera to fly around)
    action_space: gym.spaces.Box
    observation_space: gym.spaces.Box

    def initialize_episode(self, physics: Physics, rng: np.random.Generator) -> None:
        """Randomise the initial state (qpos, mocap, sites) from `rng` only."""

    def before_step(self, physics: Physics, action: np.ndarray) -> None:
        """Turn an action into controls and targets for the coming substeps."""

    def substep(self, physics: Physics, fraction: float) -> None:
        """Called before each physics substep; fraction runs from 1/n to 1."""

    def after_step(self, physics: Physics) -> None:
        """Bookkeeping after the substeps (for example contact history)."""

    def observation(self, physics: Physics) -> np.ndarray:
        raise NotImplementedError

    def hold_action(self, physics: Physics) -> np.ndarray:
        """The safe action held when no fresh command arrives: stay still."""
        raise NotImplementedError

    def reward(self, physics: Physics) -> float:
        return float(self.success(physics))

    def success(self, physics: Physics) -> bool:
        return False

    def info(self, physics: Physics) -> dict[str, Any]:
        return {}


def control_step(task: Task, physics: Physics, action: np.ndarray, n_substeps: int) -> None:
    """One control period of `task` on `physics`: its targets for `action`, then the
    substeps. The env steps this way, and so do the planners' copies of its physics."""
    task.before_step(physics, action)
    for i in range(n_substeps):
        task.substep(physics, (i + 1) / n_substeps)
        mujoco.mj_step(physics.model, physics.data)


class MujocoScene(gym.Env):
    """gymnasium env over a Task. render_mode: rgb_array, depth_array or human."""

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array", "depth_array", "human"],
        "render_fps": 10,
    }

    def __init__(
        self, task: Task, render_mode: str | None = None, width: int = 96, height: int = 96
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        if width < 8 or height < 8:
            raise ValueError(f"image size must be at least 8×8, got {width}×{height}")
        self.task = task
        model = mujoco.MjModel.from_xml_string(task.xml)
        self.physics = Physics(model, mujoco.MjData(model))
        self.n_substeps = max(1, round(task.control_dt / model.opt.timestep))
        self.metadata = {**self.metadata, "render_fps": round(1 / task.control_dt)}
        # Copies: a Box carries its own random generator, and tasks declare their spaces
        # once per class; seeding one env's action_space must not move another's samples.
        self.action_space = copy.deepcopy(task.action_space)
        self.observation_space = copy.deepcopy(task.observation_space)
        self.render_mode = render_mode
        self.width, self.height = width, height
        self._renderer: CameraRenderer | None = None
        self._viewer = None

    @property
    def time(self) -> float:
        return float(self.physics.data.time)

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        mujoco.mj_resetData(self.physics.model, self.physics.data)
        self.task.initialize_episode(self.physics, self.np_random)
        mujoco.mj_forward(self.physics.model, self.physics.data)
        return self._observation(), self._info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape:
            raise ValueError(
                f"action must have shape {self.action_space.shape}, got {action.shape}"
            )
        if not np.isfinite(action).all():
            raise ValueError("action contains NaN or infinity")
        action = np.clip(action, self.action_space.low, self.action_space.high)
        physics = self.physics
        control_step(self.task, physics, action, self.n_substeps)
        self.task.after_step(physics)
        success = self.task.success(physics)
        if self.render_mode == "human":
            self.render()
        return self._observation(), self.task.reward(physics), success, False, self._info()

    def _observation(self) -> np.ndarray:
        return self.task.observation(self.physics).astype(np.float32)

    def _info(self) -> dict[str, Any]:
        return {
            "success": self.task.success(self.physics),
            "time": self.time,
            **self.task.info(self.physics),
        }

    def render_camera(
        self,
        camera: str | None = None,
        width: int | None = None,
        height: int | None = None,
        depth: bool = True,
        data: mujoco.MjData | None = None,
    ) -> CameraImage:
        """RGB, depth (metres), intrinsics and camera-to-world pose of a named camera, in
        the live simulation or in `data` (another state of the same model)."""
        return self._camera_renderer().render(
            self.physics.data if data is None else data,
            camera or self.task.default_camera,
            width or self.width,
            height or self.height,
            depth=depth,
        )

    def physics_state(self) -> np.ndarray:
        """Everything that puts the simulation back where it is now (mj_getState)."""
        model, data = self.physics.model, self.physics.data
        state = np.empty(mujoco.mj_stateSize(model, FULL_PHYSICS))
        mujoco.mj_getState(model, data, state, FULL_PHYSICS)
        return state

    def render_states(
        self, states: list[np.ndarray], camera: str | None, width: int, height: int
    ) -> list[np.ndarray]:
        """RGB frames of a named camera at saved `physics_state()`s, rendered on a scratch
        copy of the data: the live simulation is not touched."""
        model, scratch = self.physics.model, mujoco.MjData(self.physics.model)
        frames = []
        for state in states:
            mujoco.mj_setState(model, scratch, state, FULL_PHYSICS)
            mujoco.mj_forward(model, scratch)  # positions, cameras and lights of that state
            frames.append(self.render_camera(camera, width, height, False, scratch).rgb)
        return frames

    def camera_pose(self, camera: str | None = None) -> np.ndarray:
        """(4, 4) camera-to-world pose of a named camera, without rendering."""
        name = camera or self.task.default_camera
        camera_id = mujoco.mj_name2id(self.physics.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if camera_id < 0:
            raise ValueError(f"unknown camera {name!r}")
        return camera_pose(self.physics.data, camera_id)

    def _camera_renderer(self) -> CameraRenderer:
        if self._renderer is None:
            self._renderer = CameraRenderer(self.physics.model)
        return self._renderer

    def render_segmentation(
        self, camera: str | None = None, width: int | None = None, height: int | None = None
    ) -> np.ndarray:
        """(H, W) geom ids seen by a named camera (−1: nothing): exact object masks."""
        return self._camera_renderer().segmentation(
            self.physics.data,
            camera or self.task.default_camera,
            width or self.width,
            height or self.height,
        )

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self.render_camera(depth=False).rgb
        if self.render_mode == "depth_array":
            return self.render_camera().depth
        if self.render_mode == "human":
            return self._render_human()
        return None

    def _render_human(self) -> None:
        if self._viewer is None:
            if sys.platform.startswith("linux") and not (
                os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
            ):
                # MuJoCo's window code would end the process without a display.
                raise RuntimeError(
                    "render_mode='human' needs a display; use 'rgb_array' or "
                    "'depth_array' headless (MUJOCO_GL=egl)"
                )
            import mujoco.viewer  # needs a display; imported only when asked for

            self._viewer = mujoco.viewer.launch_passive(self.physics.model, self.physics.data)
        self._viewer.sync()
        return None

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
