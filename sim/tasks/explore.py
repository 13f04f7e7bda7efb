"""Explore: a furnished room with moving objects, seen by a free-flying camera.

There is no robot. The action moves the camera in its own frame (forward, right, up)
and turns it (yaw, pitch); `KEYMAP` maps keyboard-style controls onto actions. A door
swings and a ball rolls along a circular path, both as functions of time, so every
frame has exact ground truth (RGB, depth, pose) for the world model.

Observation (7): camera position, yaw, pitch, scene time, and the door angle.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from sim.scene import Physics, Task

ROOM_HALF = 3.0
MOVE_SPEED = 1.0  # m/s at full action
TURN_SPEED = 1.0  # rad/s at full action
PITCH_LIMIT = 1.2
DOOR_PERIOD = 6.0  # s
BALL_PERIOD = 8.0  # s
BALL_CENTRE = np.array([0.8, -0.6])
BALL_RADIUS_PATH = 0.7

XML = """
<mujoco model="explore">
  <compiler angle="radian"/>
  <option timestep="0.01" gravity="0 0 0"/>
  <visual><global offwidth="640" offheight="480"/><map znear=".02" zfar="30"/>
    <headlight ambient=".35 .35 .35" diffuse=".3 .3 .3"/></visual>
  <asset>
    <texture name="floor" type="2d" builtin="checker" rgb1=".55 .42 .3" rgb2=".45 .33 .22"
             width="512" height="512" mark="edge" markrgb=".3 .2 .15"/>
    <texture name="wall" type="2d" builtin="checker" rgb1=".85 .82 .7" rgb2=".7 .74 .82"
             width="256" height="256" mark="random" random=".02" markrgb=".3 .3 .4"/>
    <texture name="wall2" type="2d" builtin="checker" rgb1=".75 .85 .72" rgb2=".9 .88 .8"
             width="256" height="256" mark="edge" markrgb=".4 .5 .4"/>
    <texture name="rug" type="2d" builtin="checker" rgb1=".7 .15 .15" rgb2=".9 .8 .3"
             width="128" height="128"/>
    <texture name="ball" type="cube" builtin="checker" rgb1=".1 .3 .9" rgb2=".95 .95 .95"
             width="64" height="64"/>
    <material name="floor" texture="floor" texrepeat="6 6"/>
    <material name="wall" texture="wall" texrepeat="4 2"/>
    <material name="wall2" texture="wall2" texrepeat="4 2"/>
    <material name="rug" texture="rug" texrepeat="4 3"/>
    <material name="ball" texture="ball"/>
  </asset>
  <worldbody>
    <light pos="0 0 2.8" dir="0 0 -1" diffuse=".6 .6 .6" castshadow="false"/>
    <light pos="2 2 2.5" dir="-1 -1 -1" diffuse=".3 .3 .3" castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 .1" material="floor"/>
    <geom name="ceiling" type="box" size="3 3 .05" pos="0 0 3.05" rgba=".9 .9 .88 1"/>
    <geom name="wall_n" type="box" size="3 .05 1.5" pos="0 3.05 1.5" material="wall"/>
    <geom name="wall_s" type="box" size="3 .05 1.5" pos="0 -3.05 1.5" material="wall2"/>
    <geom name="wall_e" type="box" size=".05 3 1.5" pos="3.05 0 1.5" material="wall2"/>
    <geom name="wall_w_a" type="box" size=".05 1.2 1.5" pos="-3.05 -1.8 1.5" material="wall"/>
    <geom name="wall_w_b" type="box" size=".05 1.2 1.5" pos="-3.05 1.8 1.5" material="wall"/>
    <geom name="lintel" type="box" size=".05 .6 .45" pos="-3.05 0 2.55" material="wall"/>
    <geom name="rug" type="box" size="1.2 .8 .005" pos="-.5 .4 .005" material="rug"/>
    <geom name="table_top" type="box" size=".6 .4 .03" pos="-.5 .4 .75" rgba=".45 .3 .18 1"/>
    <geom name="table_leg1" type="box" size=".03 .03 .36" pos="-1.05 .75 .36" rgba=".35 .22 .12 1"/>
    <geom name="table_leg2" type="box" size=".03 .03 .36" pos=".05 .75 .36" rgba=".35 .22 .12 1"/>
    <geom name="table_leg3" type="box" size=".03 .03 .36" pos="-1.05 .05 .36" rgba=".35 .22 .12 1"/>
    <geom name="table_leg4" type="box" size=".03 .03 .36" pos=".05 .05 .36" rgba=".35 .22 .12 1"/>
    <geom name="cabinet" type="box" size=".3 .25 .9" pos="2.6 2.4 .9" rgba=".2 .45 .35 1"/>
    <geom name="sofa_seat" type="box" size="1 .4 .22" pos=".8 2.5 .22" rgba=".55 .25 .5 1"/>
    <geom name="sofa_back" type="box" size="1 .12 .45" pos=".8 2.85 .45" rgba=".5 .22 .45 1"/>
    <geom name="lamp" type="cylinder" size=".15 .6" pos="-2.5 -2.5 .6" rgba=".9 .85 .3 1"/>
    <geom name="box_a" type="box" size=".25 .25 .25" pos="2.2 -2.2 .25" rgba=".8 .5 .2 1"/>
    <body name="door" mocap="true" pos="-3.05 -.6 1.05">
      <geom name="door" type="box" size=".6 .03 1.05" pos="0 .6 0" euler="0 0 1.5708"
            rgba=".6 .4 .25 1"/>
    </body>
    <body name="ball" mocap="true" pos="1.5 -.6 .2">
      <geom name="ball" type="sphere" size=".2" material="ball"/>
    </body>
    <body name="camera_rig" mocap="true" pos="0 -2 1.4">
      <camera name="eye" pos="0 0 0" xyaxes="1 0 0 0 0 1" fovy="70"/>
    </body>
  </worldbody>
</mujoco>
"""

# Keyboard-style controls: key -> action (forward, right, up, yaw, pitch).
KEYMAP = {
    "w": (1, 0, 0, 0, 0),
    "s": (-1, 0, 0, 0, 0),
    "d": (0, 1, 0, 0, 0),
    "a": (0, -1, 0, 0, 0),
    "e": (0, 0, 1, 0, 0),
    "q": (0, 0, -1, 0, 0),
    "left": (0, 0, 0, 1, 0),
    "right": (0, 0, 0, -1, 0),
    "up": (0, 0, 0, 0, 1),
    "down": (0, 0, 0, 0, -1),
}


def keys_to_action(keys: set[str] | list[str]) -> np.ndarray:
    """Sum the actions of the pressed keys; unknown keys are an error."""
    unknown = set(keys) - KEYMAP.keys()
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; known: {sorted(KEYMAP)}")
    action = np.sum([KEYMAP[k] for k in keys], axis=0) if keys else np.zeros(5)
    return np.clip(action, -1, 1).astype(np.float32)


def door_angle(t: float) -> float:
    return 0.5 * math.pi * 0.5 * (1 - math.cos(2 * math.pi * t / DOOR_PERIOD))


def ball_position(t: float) -> np.ndarray:
    phase = 2 * math.pi * t / BALL_PERIOD
    xy = BALL_CENTRE + BALL_RADIUS_PATH * np.array([math.cos(phase), math.sin(phase)])
    return np.array([*xy, 0.2])


def rig_quaternion(yaw: float, pitch: float) -> np.ndarray:
    """Rig orientation: yaw about world z, then pitch about the rig's x axis."""
    qz = np.array([math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)])
    qx = np.array([math.cos(pitch / 2), math.sin(pitch / 2), 0, 0])
    w1, x1, y1, z1 = qz
    w2, x2, y2, z2 = qx
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


class ExploreTask(Task):
    scored = False  # a room to fly through: there is nothing to succeed at
    xml = XML
    control_dt = 0.1
    default_camera = "eye"
    cameras = ("eye",)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(5,), dtype=np.float32)
    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(7,), dtype=np.float32)

    def initialize_episode(self, physics: Physics, rng: np.random.Generator) -> None:
        self.position = np.array([*rng.uniform(-1.5, 1.5, 2), rng.uniform(1.0, 1.8)])
        self.yaw = rng.uniform(-math.pi, math.pi)
        self.pitch = rng.uniform(-0.3, 0.2)
        self._pose_rig(physics)
        self._pose_movers(physics, 0.0)

    def before_step(self, physics: Physics, action: np.ndarray) -> None:
        dt = self.control_dt
        forward = np.array([-math.sin(self.yaw), math.cos(self.yaw), 0.0])
        right = np.array([math.cos(self.yaw), math.sin(self.yaw), 0.0])
        move = action[0] * forward + action[1] * right + action[2] * np.array([0, 0, 1.0])
        limit = np.array([ROOM_HALF - 0.3, ROOM_HALF - 0.3, 2.7])
        self.position = np.clip(self.position + MOVE_SPEED * dt * move, [*-limit[:2], 0.3], limit)
        self.yaw = (self.yaw + TURN_SPEED * dt * action[3] + math.pi) % (2 * math.pi) - math.pi
        self.pitch = float(
            np.clip(self.pitch + TURN_SPEED * dt * action[4], -PITCH_LIMIT, PITCH_LIMIT)
        )
        self._pose_rig(physics)

    def substep(self, physics: Physics, fraction: float) -> None:
        self._pose_movers(physics, physics.data.time)

    def after_step(self, physics: Physics) -> None:
        self._pose_movers(physics, physics.data.time)

    def _pose_rig(self, physics: Physics) -> None:
        rig = physics.model.body("camera_rig").mocapid[0]
        physics.data.mocap_pos[rig] = self.position
        physics.data.mocap_quat[rig] = rig_quaternion(self.yaw, self.pitch)

    def _pose_movers(self, physics: Physics, t: float) -> None:
        model, data = physics.model, physics.data
        door = model.body("door").mocapid[0]
        angle = door_angle(t)
        data.mocap_quat[door] = [math.cos(angle / 2), 0, 0, math.sin(angle / 2)]
        data.mocap_pos[model.body("ball").mocapid[0]] = ball_position(t)

    def hold_action(self, physics: Physics) -> np.ndarray:
        """The camera stays still."""
        return np.zeros(5, np.float32)

    def observation(self, physics: Physics) -> np.ndarray:
        return np.array(
            [*self.position, self.yaw, self.pitch, physics.data.time, door_angle(physics.data.time)]
        )
