"""PushT: a round pusher slides a T-shaped block onto a target pose (Diffusion Policy's
benchmark, in MuJoCo). The block moves in the plane (x, y, yaw) with joint damping, so
it moves only while pushed, as on a table with friction.

Action (2): absolute pusher target x, y in metres (followed at a bounded speed).
Observation (6): pusher xy, block xy, block yaw as (sin, cos).
Reward: coverage of the target T by the block; success when coverage >= 0.95.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from sim.scene import Physics, Task

BAR_HALF = (0.06, 0.015)  # the T's top bar, half sizes x, y (its centre is the origin)
STEM_HALF = (0.015, 0.045)  # the stem, centred at (0, STEM_Y)
STEM_Y = -(BAR_HALF[1] + STEM_HALF[1])
PUSHER_RADIUS = 0.012
PUSHER_SPEED = 0.4  # m/s
TARGET_POSE = np.array([0.0, 0.02, math.pi / 4])
SUCCESS_COVERAGE = 0.95
LIMIT = 0.25  # the pusher stays within ±LIMIT in x and y

OBJECTS = f"""
    <body name="target" pos="{TARGET_POSE[0]} {TARGET_POSE[1]} .0005"
          euler="0 0 {TARGET_POSE[2]}">
      <geom type="box" size="{BAR_HALF[0]} {BAR_HALF[1]} .0005" rgba=".3 .8 .4 .5"
            contype="0" conaffinity="0"/>
      <geom type="box" size="{STEM_HALF[0]} {STEM_HALF[1]} .0005" pos="0 {STEM_Y} 0"
            rgba=".3 .8 .4 .5" contype="0" conaffinity="0"/>
    </body>
    <body name="block" pos="0 0 .012">
      <joint name="block_x" type="slide" axis="1 0 0" damping="6"/>
      <joint name="block_y" type="slide" axis="0 1 0" damping="6"/>
      <joint name="block_yaw" type="hinge" axis="0 0 1" damping=".012"/>
      <geom name="bar" type="box" size="{BAR_HALF[0]} {BAR_HALF[1]} .01" mass=".06"
            rgba=".35 .45 .75 1"/>
      <geom name="stem" type="box" size="{STEM_HALF[0]} {STEM_HALF[1]} .01"
            pos="0 {STEM_Y} 0" mass=".04" rgba=".35 .45 .75 1"/>
    </body>
"""


def pusht_xml(pusher_shape: str = f'type="cylinder" size="{PUSHER_RADIUS} .012"') -> str:
    """The PushT scene; another pusher shape stands in for another pusher's footprint."""
    return f"""
<mujoco model="pusht">
  <compiler angle="radian"/>
  <option timestep="0.002" integrator="implicitfast"/>
  <visual><global offwidth="640" offheight="480"/><map zfar="20"/></visual>
  <asset>
    <texture name="felt" type="2d" builtin="flat" rgb1=".82 .82 .8" width="64" height="64"/>
    <material name="table" texture="felt"/>
  </asset>
  <default><geom contype="1" conaffinity="1"/></default>
  <worldbody>
    <light pos="0 0 1.5" dir="0 0 -1" diffuse=".8 .8 .8" castshadow="false"/>
    <camera name="top" pos="0 0 .75" xyaxes="1 0 0 0 1 0" fovy="45"/>
    <geom name="table" type="plane" size="1.5 1.5 .01" material="table" contype="2"
          conaffinity="2"/>
    {OBJECTS}
    <body name="pusher" mocap="true" pos="0 -.2 .012">
      <geom name="pusher" {pusher_shape} rgba=".9 .4 .2 1"
            friction=".2 .005 .0001"/>
    </body>
  </worldbody>
</mujoco>
"""


XML = pusht_xml()


def _grid_points(spacing: float = 0.003) -> np.ndarray:
    """Points filling the T in its own frame, for coverage by counting."""

    def box(cx: float, cy: float, hx: float, hy: float) -> np.ndarray:
        xs = np.arange(-hx + spacing / 2, hx, spacing) + cx
        ys = np.arange(-hy + spacing / 2, hy, spacing) + cy
        return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)

    return np.concatenate([box(0, 0, *BAR_HALF), box(0, STEM_Y, *STEM_HALF)])


T_POINTS = _grid_points()


def inside_t(points_local: np.ndarray) -> np.ndarray:
    x, y = points_local[:, 0], points_local[:, 1]
    in_bar = (np.abs(x) <= BAR_HALF[0]) & (np.abs(y) <= BAR_HALF[1])
    in_stem = (np.abs(x) <= STEM_HALF[0]) & (np.abs(y - STEM_Y) <= STEM_HALF[1])
    return in_bar | in_stem


def _to_world(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    c, s = math.cos(pose[2]), math.sin(pose[2])
    return points @ np.array([[c, s], [-s, c]]) + pose[:2]


def _to_local(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    c, s = math.cos(pose[2]), math.sin(pose[2])
    return (points - pose[:2]) @ np.array([[c, -s], [s, c]])


def coverage(block_pose: np.ndarray, target_pose: np.ndarray = TARGET_POSE) -> float:
    """Fraction of the target T's area that the block covers."""
    target_points = _to_world(T_POINTS, target_pose)
    return float(inside_t(_to_local(target_points, block_pose)).mean())


def block_pose(physics: Physics) -> np.ndarray:
    data = physics.data
    return np.array(
        [
            data.joint("block_x").qpos[0],
            data.joint("block_y").qpos[0],
            data.joint("block_yaw").qpos[0],
        ]
    )


def place_block(physics: Physics, rng: np.random.Generator) -> np.ndarray:
    """Put the block at a random start pose; the pusher's start, clear of it."""
    while True:
        pose = np.array([*rng.uniform(-0.1, 0.1, 2), rng.uniform(-math.pi, math.pi)])
        pusher = rng.uniform(-0.2, 0.2, 2)
        far_from_block = not inside_t(_to_local(pusher[None], pose) * 0.8).any()
        if coverage(pose) < 0.5 and far_from_block and np.linalg.norm(pusher - pose[:2]) > 0.12:
            break
    for name, value in zip(("block_x", "block_y", "block_yaw"), pose, strict=True):
        physics.data.joint(name).qpos[0] = value
    return pusher


class PushTTask(Task):
    xml = XML
    control_dt = 0.1
    cameras = ("top",)
    proprio_dims = (0, 1)  # the pusher's position
    action_space = gym.spaces.Box(-LIMIT, LIMIT, shape=(2,), dtype=np.float32)
    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(6,), dtype=np.float32)

    def initialize_episode(self, physics: Physics, rng: np.random.Generator) -> None:
        pusher = place_block(physics, rng)
        physics.data.mocap_pos[0, :2] = pusher
        self._start = self._goal = pusher.copy()
        self.after_step(physics)

    def before_step(self, physics: Physics, action: np.ndarray) -> None:
        current = physics.data.mocap_pos[0, :2].copy()
        step = np.clip(action, -LIMIT, LIMIT) - current
        distance = float(np.linalg.norm(step))
        reach = PUSHER_SPEED * self.control_dt
        self._start = current
        self._goal = current + step * min(1.0, reach / distance) if distance > 0 else current

    def substep(self, physics: Physics, fraction: float) -> None:
        physics.data.mocap_pos[0, :2] = self._start + (self._goal - self._start) * fraction

    def hold_action(self, physics: Physics) -> np.ndarray:
        """The pusher stays where it is."""
        return physics.data.mocap_pos[0, :2].astype(np.float32)

    def observation(self, physics: Physics) -> np.ndarray:
        pose = block_pose(physics)
        return np.array(
            [*physics.data.mocap_pos[0, :2], pose[0], pose[1], math.sin(pose[2]), math.cos(pose[2])]
        )

    def after_step(self, physics: Physics) -> None:
        # Reward, success and info all need it: measure the overlap once per step.
        self._coverage = coverage(block_pose(physics))

    def reward(self, physics: Physics) -> float:
        return float(np.clip(self._coverage / SUCCESS_COVERAGE, 0.0, 1.0))

    def success(self, physics: Physics) -> bool:
        return self._coverage >= SUCCESS_COVERAGE

    def info(self, physics: Physics) -> dict:
        return {"coverage": self._coverage, "score": self.reward(physics)}
