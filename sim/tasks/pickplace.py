"""PickPlace: a Cartesian two-finger gripper moves a cube onto a target square.

Action (4): absolute hand target x, y, z in metres, then the gripper command, which is
discrete: > 0 closes, <= 0 opens (RTI's "scale" method exists for such a dimension).
The hand follows its target at a bounded speed through a mocap weld.

Observation (11): hand xyz, finger opening, cube xyz, cube yaw as (sin 4θ, cos 4θ)
(a cube looks the same every quarter turn), target xy.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from sim.scene import Physics, Task

XML = """
<mujoco model="pickplace">
  <option timestep="0.002" integrator="implicitfast"/>
  <visual><global offwidth="640" offheight="480"/><map zfar="20"/></visual>
  <asset>
    <texture name="wood" type="2d" builtin="checker" rgb1=".55 .45 .35" rgb2=".5 .4 .3"
             width="256" height="256"/>
    <material name="table" texture="wood" texrepeat="8 8"/>
  </asset>
  <worldbody>
    <light pos="0 0 1.5" dir="0 0 -1" diffuse=".8 .8 .8" castshadow="false"/>
    <light pos=".6 -.6 1" dir="-.5 .5 -1" diffuse=".3 .3 .3" castshadow="false"/>
    <camera name="top" pos="0 -.35 .7" xyaxes="1 0 0 0 .894 .447" fovy="50"/>
    <camera name="front" pos="0 -.7 .25" xyaxes="1 0 0 0 .3 .95" fovy="50"/>
    <geom name="table" type="plane" size="1.5 1.5 .01" material="table"/>
    <site name="target" type="box" size=".05 .05 .0005" pos=".1 .1 .0005" rgba=".2 .8 .3 .6"/>
    <body name="cube" pos="0 0 .02">
      <freejoint name="cube"/>
      <geom name="cube" type="box" size=".02 .02 .02" rgba=".85 .2 .2 1" mass=".05"
            friction="1.5 .01 .001" condim="4"/>
    </body>
    <body name="hand_target" mocap="true" pos="0 0 .2"/>
    <body name="hand" pos="0 0 .2" gravcomp="1">
      <freejoint name="hand"/>
      <geom name="palm" type="box" size=".02 .06 .012" rgba=".3 .3 .35 1" mass=".3"
            contype="0" conaffinity="0"/>
      <camera name="wrist" pos="-.07 0 .02" xyaxes="0 -1 0 .819 0 .574" fovy="75"/>
      <body name="left_finger" gravcomp="1">
        <joint name="left_finger" type="slide" axis="0 1 0" range="0 .05" damping="5"/>
        <geom name="left_finger" type="box" size=".012 .006 .03" pos="0 .006 -.04" mass=".03"
              rgba=".5 .5 .55 1" friction="2 .01 .001" condim="4"/>
      </body>
      <body name="right_finger" gravcomp="1">
        <joint name="right_finger" type="slide" axis="0 -1 0" range="0 .05" damping="5"/>
        <geom name="right_finger" type="box" size=".012 .006 .03" pos="0 -.006 -.04"
              mass=".03" rgba=".5 .5 .55 1" friction="2 .01 .001" condim="4"/>
      </body>
    </body>
  </worldbody>
  <equality>
    <weld body1="hand_target" body2="hand" solref=".005 1"/>
  </equality>
  <actuator>
    <position name="left_finger" joint="left_finger" kp="400" ctrlrange="0 .05"
              forcerange="-15 15"/>
    <position name="right_finger" joint="right_finger" kp="400" ctrlrange="0 .05"
              forcerange="-15 15"/>
  </actuator>
</mujoco>
"""

WORKSPACE_LOW = np.array([-0.3, -0.3, 0.04], np.float32)
WORKSPACE_HIGH = np.array([0.3, 0.3, 0.3], np.float32)
HAND_SPEED = 0.6  # m/s
FINGER_OPEN = 0.045  # half opening, m
TARGET_HALF = 0.05
FINGER_TIP_BELOW_HAND = 0.07  # hand z minus finger tip z


class PickPlaceTask(Task):
    xml = XML
    control_dt = 0.1
    cameras = ("top", "front", "wrist")
    discrete_action_dims = (3,)  # the gripper command
    proprio_dims = (0, 1, 2, 3)  # hand position, finger opening
    action_space = gym.spaces.Box(
        np.append(WORKSPACE_LOW, -1.0).astype(np.float32),
        np.append(WORKSPACE_HIGH, 1.0).astype(np.float32),
        dtype=np.float32,
    )
    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(11,), dtype=np.float32)

    def initialize_episode(self, physics: Physics, rng: np.random.Generator) -> None:
        model, data = physics.model, physics.data
        cube_xy, target_xy = _separated_positions(rng)
        yaw = rng.uniform(-0.4, 0.4)
        cube_qpos = model.joint("cube").qposadr[0]
        data.qpos[cube_qpos : cube_qpos + 7] = [
            *cube_xy,
            0.02,
            math.cos(yaw / 2),
            0,
            0,
            math.sin(yaw / 2),
        ]
        model.site("target").pos[:2] = target_xy
        hand = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.2, -0.1), 0.18])
        hand_qpos = model.joint("hand").qposadr[0]
        data.qpos[hand_qpos : hand_qpos + 7] = [*hand, 1, 0, 0, 0]
        data.mocap_pos[0] = hand
        for finger in ("left_finger", "right_finger"):
            data.qpos[model.joint(finger).qposadr[0]] = FINGER_OPEN
        data.ctrl[:] = FINGER_OPEN
        self._start = hand.copy()
        self._goal = hand.copy()

    def before_step(self, physics: Physics, action: np.ndarray) -> None:
        current = physics.data.mocap_pos[0].copy()
        goal = np.clip(action[:3], WORKSPACE_LOW, WORKSPACE_HIGH)
        step = goal - current
        reach = HAND_SPEED * self.control_dt
        distance = float(np.linalg.norm(step))
        self._start = current
        self._goal = current + step * min(1.0, reach / distance) if distance > 0 else current
        physics.data.ctrl[:] = 0.0 if action[3] > 0 else FINGER_OPEN

    def substep(self, physics: Physics, fraction: float) -> None:
        physics.data.mocap_pos[0] = self._start + (self._goal - self._start) * fraction

    def hold_action(self, physics: Physics) -> np.ndarray:
        """Arm still where it is commanded now, gripper command unchanged."""
        closed = physics.data.ctrl[0] < FINGER_OPEN / 2
        return np.array([*physics.data.mocap_pos[0], 1.0 if closed else -1.0], np.float32)

    def observation(self, physics: Physics) -> np.ndarray:
        data = physics.data
        opening = data.joint("left_finger").qpos[0] + data.joint("right_finger").qpos[0]
        return np.concatenate([physics.body_pos("hand"), [opening], cube_and_target(physics)])

    def success(self, physics: Physics) -> bool:
        return cube_placed(physics) and not _fingers_touch_cube(physics)

    def info(self, physics: Physics) -> dict:
        return {"score": float(self.success(physics))}


def cube_and_target(physics: Physics) -> np.ndarray:
    """The observation's last 7 entries: cube xyz, its yaw as (sin 4θ, cos 4θ), target xy."""
    quat = physics.body_quat("cube")
    yaw = math.atan2(
        2 * (quat[0] * quat[3] + quat[1] * quat[2]), 1 - 2 * (quat[2] ** 2 + quat[3] ** 2)
    )
    return np.concatenate(
        [
            physics.body_pos("cube"),
            [math.sin(4 * yaw), math.cos(4 * yaw)],
            physics.model.site("target").pos[:2],
        ]
    )


def cube_placed(physics: Physics) -> bool:
    """The cube on the target square and at rest (whoever holds it: the task asks)."""
    cube = physics.body_pos("cube")
    target = physics.model.site("target").pos[:2]
    inside = bool(np.all(np.abs(cube[:2] - target) <= TARGET_HALF))
    return (
        inside and cube[2] < 0.025 and float(np.linalg.norm(physics.data.body("cube").cvel)) < 0.1
    )


def _separated_positions(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cube and target centres at least 12 cm apart, inside the reachable table."""
    while True:
        cube = rng.uniform([-0.18, -0.12], [0.18, 0.12])
        target = rng.uniform([-0.18, -0.12], [0.18, 0.12])
        if np.linalg.norm(cube - target) > 0.12:
            return cube, target


def _fingers_touch_cube(physics: Physics) -> bool:
    model, data = physics.model, physics.data
    cube = model.geom("cube").id
    fingers = {model.geom("left_finger").id, model.geom("right_finger").id}
    for contact in data.contact[: data.ncon]:
        pair = {contact.geom1, contact.geom2}
        if cube in pair and pair & fingers:
            return True
    return False


class PickPlaceExpert:
    """A scripted expert with varied, multimodal behaviour.

    Per episode it draws: the side it approaches from (left or right of the cube), the
    approach and carry heights, and the grasp height on the cube. Then it runs through
    phases: approach side -> above cube -> down -> close -> lift -> above target ->
    down -> open -> up.
    """

    name = "pickplace-scripted-v1"

    def __init__(self, rng: np.random.Generator, tip_below_hand: float = FINGER_TIP_BELOW_HAND):
        self.rng = rng
        self.tip_below_hand = tip_below_hand  # the gripper's: observed hand z − finger tips
        self.reset()

    def reset(self) -> None:
        rng = self.rng
        self.side = rng.choice([-1.0, 1.0])
        self.approach_height = rng.uniform(0.10, 0.16)
        self.carry_height = rng.uniform(0.10, 0.16)
        self.grasp_z = 0.02 + self.tip_below_hand - rng.uniform(0.028, 0.036)
        self.phase = 0
        self.hold = 0

    def act(self, observation: np.ndarray) -> np.ndarray:
        hand, cube, target = observation[:3], observation[4:7], observation[9:11]
        plan = [
            (np.array([cube[0] + 0.07 * self.side, cube[1], self.approach_height]), -1, 0.02, 0),
            (np.array([cube[0], cube[1], self.approach_height]), -1, 0.01, 0),
            (np.array([cube[0], cube[1], self.grasp_z]), -1, 0.006, 0),
            (np.array([cube[0], cube[1], self.grasp_z]), 1, 1.0, 4),
            (np.array([hand[0], hand[1], self.carry_height]), 1, 0.015, 0),
            (np.array([target[0], target[1], self.carry_height]), 1, 0.01, 0),
            (np.array([target[0], target[1], self.grasp_z + 0.004]), 1, 0.006, 0),
            (np.array([target[0], target[1], self.grasp_z + 0.004]), -1, 1.0, 3),
            (np.array([target[0], target[1], 0.16]), -1, 0.02, 0),
        ]
        goal, grip, tolerance, hold = plan[min(self.phase, len(plan) - 1)]
        if self.phase < len(plan) - 1 and self._reached(hand, goal, tolerance, hold):
            self.phase += 1
        return np.array([*goal, grip], dtype=np.float32)

    def _reached(self, hand: np.ndarray, goal: np.ndarray, tolerance: float, hold: int) -> bool:
        if hold:
            self.hold += 1
            if self.hold >= hold:
                self.hold = 0
                return True
            return False
        return float(np.linalg.norm(hand - goal)) < tolerance
