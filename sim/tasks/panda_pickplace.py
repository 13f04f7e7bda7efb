"""PandaPickPlace: a Franka Panda moves a cube onto a target square (sim/panda.py).

The same problem, action and observation as PickPlace (sim/tasks/pickplace.py), so the
same policies, expert and tools apply: action (4) = absolute end-effector target x, y,
z in metres in the task frame (the table's centre, z up) and the gripper command (> 0
closes); observation (11) = end-effector xyz, finger opening, cube xyz, cube yaw as
(sin 4θ, cos 4θ), target xy. The end effector is the point between the fingers, about
5 cm above their tips. Its target moves at a bounded speed; IK (mink) turns it into
joint targets at IK_HZ while the physics runs at 500 Hz.
"""

from __future__ import annotations

import math

import gymnasium as gym
import mujoco
import numpy as np

from sim.panda import (
    END_EFFECTOR,
    FINGER_JOINTS,
    FINGER_OPEN,
    IK_HZ,
    NOMINAL_POSTURE,
    PandaIK,
    panda_xml,
    set_arm,
)
from sim.scene import Physics, Task
from sim.tasks.pickplace import _separated_positions, cube_and_target, cube_placed

BASE = (-0.55, 0.0, 0.0)  # the arm's base in the task frame
WORKSPACE_LOW = np.array([-0.3, -0.3, 0.05], np.float32)  # fingertips just above the table
WORKSPACE_HIGH = np.array([0.3, 0.3, 0.35], np.float32)
HAND_SPEED = 0.5  # m/s of the end-effector target
TIP_BELOW_HAND = 0.05  # end-effector site z minus fingertip z, gripper pointing down

# The front camera faces the arm from across the table, 40 degrees down, and the
# workspace fills its frame: the 4 cm cube is ~6 px of 96. From 0.75 m, 30 degrees
# down, it was ~4 px in a frame mostly of floor, and the image policy trained on that
# view missed most grasps (checkpoints/README.md).
# The top camera looks straight down from 1 m. From over the arm's shoulder (0.35 m
# behind the table's centre, 0.7 m up, 27 degrees from vertical) the arm hid the cube
# in 25 of 60 first frames; from straight above, in 4 (the hand over it).
# The cube is matte: seen straight down under the light above, MuJoCo's default
# specular turned its top face pale pink (246, 156, 155 where it is 228, 77, 73).
WORLD = """
    <light pos="0 0 1.5" dir="0 0 -1" diffuse=".8 .8 .8" castshadow="false"/>
    <light pos=".6 -.6 1" dir="-.5 .5 -1" diffuse=".3 .3 .3" castshadow="false"/>
    <camera name="top" pos="0 0 1" xyaxes="1 0 0 0 1 0" fovy="35"/>
    <camera name="front" pos=".45 0 .6" xyaxes="0 1 0 -.64 0 .768" fovy="55"/>
    <geom name="table" type="plane" size="1.5 1.5 .01" material="table"/>
    <site name="target" type="box" size=".05 .05 .0005" pos=".1 .1 .0005" rgba=".2 .8 .3 .6"/>
    <body name="cube" pos="0 0 .02">
      <freejoint name="cube"/>
      <geom name="cube" type="box" size=".02 .02 .02" rgba=".85 .2 .2 1" mass=".05" material="matte"
            friction="1.5 .01 .001" condim="4"/>
    </body>
"""
MATERIALS = """
  <asset>
    <texture name="wood" type="2d" builtin="checker" rgb1=".55 .45 .35" rgb2=".5 .4 .3"
             width="256" height="256"/>
    <material name="table" texture="wood" texrepeat="8 8"/>
    <material name="matte" specular="0" shininess="0"/>
  </asset>
"""
# In link7's frame: beside the hand, looking past the fingers at what they will grasp.
WRIST_CAMERA = (
    '<camera name="wrist" pos=".07 -.07 .1" xyaxes=".707 .707 0 .611 -.611 .503" fovy="70"/>'
)


class PandaPickPlaceTask(Task):
    control_dt = 0.1
    cameras = ("top", "front", "wrist")
    video_camera = "front"  # facing the arm: the cube stays in view, lifted and carried
    discrete_action_dims = (3,)
    proprio_dims = (0, 1, 2, 3)  # end-effector position, finger opening
    action_space = gym.spaces.Box(
        np.append(WORKSPACE_LOW, -1.0).astype(np.float32),
        np.append(WORKSPACE_HIGH, 1.0).astype(np.float32),
        dtype=np.float32,
    )
    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(11,), dtype=np.float32)

    @property
    def xml(self) -> str:  # read from the installed wheel when a scene is built
        return panda_xml(WORLD, BASE, MATERIALS, hand=WRIST_CAMERA)

    def initialize_episode(self, physics: Physics, rng: np.random.Generator) -> None:
        model, data = physics.model, physics.data
        self.ik = PandaIK(model)
        cube_xy, target_xy = _separated_positions(rng)
        yaw = rng.uniform(-0.4, 0.4)
        cube = model.joint("cube").qposadr[0]
        data.qpos[cube : cube + 7] = [*cube_xy, 0.02, math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)]
        model.site("target").pos[:2] = target_xy
        hand = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.2, -0.1), 0.2])
        set_arm(model, data, NOMINAL_POSTURE)
        mujoco.mj_forward(model, data)
        self.ik.reset(data)
        self.ik.settle(data, hand)  # the arm starts still, its hand at `hand`
        self._fingers = [model.joint(j).qposadr[0] for j in FINGER_JOINTS]
        self._finger_ctrl = [self.ik.actuator(j) for j in FINGER_JOINTS]
        self._start = self._goal = self.ik.commanded_position()
        self._ik_every = max(1, round(1.0 / (IK_HZ * model.opt.timestep)))
        self._substep = 0

    def before_step(self, physics: Physics, action: np.ndarray) -> None:
        current = self._goal
        goal = np.clip(action[:3], WORKSPACE_LOW, WORKSPACE_HIGH)
        step = goal - current
        reach = HAND_SPEED * self.control_dt
        distance = float(np.linalg.norm(step))
        self._start = current
        self._goal = current + step * min(1.0, reach / distance) if distance > 0 else current
        physics.data.ctrl[self._finger_ctrl] = 0.0 if action[3] > 0 else FINGER_OPEN

    def substep(self, physics: Physics, fraction: float) -> None:
        if self._substep % self._ik_every == 0:
            self.ik.set_target(self._start + (self._goal - self._start) * fraction)
            self.ik.step(physics.data)
        self._substep += 1

    def hold_action(self, physics: Physics) -> np.ndarray:
        """The end effector still where it is commanded now, gripper command unchanged."""
        closed = physics.data.ctrl[self._finger_ctrl[0]] < FINGER_OPEN / 2
        return np.array([*self._goal, 1.0 if closed else -1.0], np.float32)

    def observation(self, physics: Physics) -> np.ndarray:
        data = physics.data
        opening = float(sum(data.qpos[i] for i in self._fingers))
        return np.concatenate([data.site(END_EFFECTOR).xpos, [opening], cube_and_target(physics)])

    def success(self, physics: Physics) -> bool:
        return cube_placed(physics) and not fingers_touch_cube(physics)

    def info(self, physics: Physics) -> dict:
        return {"score": float(self.success(physics))}


def fingers_touch_cube(physics: Physics) -> bool:
    model, data = physics.model, physics.data
    cube = model.geom("cube").id
    fingers = {model.body("panda0_leftfinger").id, model.body("panda0_rightfinger").id}
    for contact in data.contact[: data.ncon]:
        pair = {contact.geom1, contact.geom2}
        if cube in pair and {model.geom_bodyid[g] for g in pair} & fingers:
            return True
    return False
