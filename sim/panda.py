"""A Franka Panda arm for warmloop scenes: its model and end-effector control by IK.

The model comes from the installed `gymnasium-robotics` wheel (Vikash Kumar's Franka
model, Apache-2.0, visual and collision meshes), read from the package at run time:
no mesh is copied into this repository and nothing is downloaded. It is composed into a
scene's XML with the arm's bodies under gravity compensation, as the real arm's own
controller provides.

Control is differential inverse kinematics with `mink` (MuJoCo-native, a QP per step):
an end-effector position task with the gripper pointing down, a nominal posture in the
nullspace (elbow up, clear of the table), joint limits and joint velocity limits (the
Panda's datasheet values). The commanded configuration is integrated at the IK rate and
fed to the arm's position servos, so the servos follow a feasible trajectory.

    action (task frame)  ->  IK target  ->  mink QP at IK_HZ  ->  joint targets  ->  servos

A task that must stop the hand to the millimetre (PushT's fine pushes) asks for `Tracking`
(see there): the target through a critically damped filter, and the arm's inertia fed
forward. PickPlace keeps the plain servo, on which its shipped checkpoint was trained.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import mujoco
import numpy as np

ARM_JOINTS = tuple(f"robot:panda0_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("robot:panda0_finger_joint1", "robot:panda0_finger_joint2")
END_EFFECTOR = "end_effector"  # a site between the fingertips
# Elbow up, wrist turned so the fingers close along y, hand pointing down.
NOMINAL_POSTURE = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785])
# Joint velocity limits (rad/s), Franka's datasheet.
VELOCITY_LIMITS = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)
FINGER_OPEN = 0.04  # metres per finger
IK_HZ = 100  # IK solves per simulated second; the physics runs at 500 Hz
ARM_DAMPING = 10  # N m s/rad on joints 1-4 (the kitchen model's 100 saturates the servos)
SERVO_KV = 40  # N m s/rad of the arm's position servos, compensated by feed-forward
GRIPPER_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


class PandaAssetsMissing(RuntimeError):
    """The gymnasium-robotics wheel that carries the Panda's meshes is not installed."""


@cache
def assets_dir() -> Path:
    """The Franka assets inside the installed gymnasium-robotics package (not imported:
    its import registers hundreds of environments and prints a warning)."""
    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or spec.origin is None:
        raise PandaAssetsMissing(
            "the Panda scenes need gymnasium-robotics (pip install 'warmloop[sim]')"
        )
    directory = Path(spec.origin).parent / "envs" / "assets" / "kitchen_franka" / "franka_assets"
    if not (directory / "chain.xml").is_file():
        raise PandaAssetsMissing(f"{directory}: no Franka model in this gymnasium-robotics")
    return directory


def _include(name: str) -> str:
    """The body of one of the model's <mujocoinclude> files, comments dropped."""
    text = re.sub(r"<!--.*?-->", "", (assets_dir() / name).read_text(encoding="utf-8"), flags=re.S)
    return text.split("<mujocoinclude>", 1)[1].rsplit("</mujocoinclude>", 1)[0]


def panda_xml(
    worldbody: str, base: tuple[float, float, float], extra: str = "", hand: str = ""
) -> str:
    """A whole scene: `worldbody` (table, objects, cameras) with the arm at `base`;
    `extra` at the top level (assets), `hand` inside the last link (a wrist camera)."""
    assets = _include("assets.xml")
    for tag in ("compiler", "option", "size"):  # the scene sets its own
        assets = re.sub(rf"<{tag}[^>]*/>", "", assets)
    # The kitchen model damps the four large joints at 100 N m s/rad: moving one at
    # 1 rad/s takes 100 N m, past the 87 N m its servo may give, so the hand trailed
    # its target by 6 cm (16 cm at most) and sagged 7 cm at 0.4 m/s. With ARM_DAMPING,
    # servo damping SERVO_KV and PandaIK's velocity feed-forward it trails by 3 mm
    # (1 cm at most) and stays within 4 mm of its height.
    assets = re.sub(
        r'(<default class="panda_arm">\s*<joint damping=")100(")',
        rf"\g<1>{ARM_DAMPING}\g<2>",
        assets,
    )
    servo = r'(<position name="panda0_joint[1-4]"[^>]*?)\s*/>'
    actuators = re.sub(servo, rf'\1 kv="{SERVO_KV}"/>', _include("actuator.xml"))
    chain = re.sub(
        r'<body name="(panda0_\w+)"', r'<body name="\1" gravcomp="1"', _include("chain.xml")
    )
    chain = re.sub(r"(<site name='end_effector'[^>]*/>)", lambda m: m.group(1) + hand, chain)
    x, y, z = base
    return f"""<mujoco model="panda">
  <compiler angle="radian" meshdir="{assets_dir() / "meshes"}"/>
  <option timestep="0.002" integrator="implicitfast"/>
  <visual><global offwidth="640" offheight="480"/><map zfar="20"/></visual>
  {assets}
  {extra}
  <worldbody>
    {worldbody}
    <body name="panda_base" pos="{x} {y} {z}">{chain}</body>
  </worldbody>
  {actuators}
</mujoco>"""


@dataclass(frozen=True)
class Tracking:
    """How closely the hand follows a target that starts and stops abruptly.

    The position servos are soft (SERVO_KV) and the velocity feed-forward covers damping
    only, so at the end of an 8 cm move at 0.4 m/s the hand overshoots by 8-22 mm
    (median 11 mm over 6 starts) before it settles. Feeding the inertia forward
    (M(q) qdd / kp, qdd from successive IK velocities) cuts that to 3-7 mm; the rest is
    the target's own step in velocity, which no 87 N m servo follows. A critically damped
    filter on the target (natural frequency `filter_omega`, rad/s) removes the step: with
    both, the overshoot is under 0.1 mm (median), at the price of a lag of 2 / omega
    seconds behind a moving target (27 mm at 0.4 m/s for omega = 30).
    """

    filter_omega: float = 0.0  # rad/s; 0: the target is used as given
    inertia_feedforward: bool = False


class ReferenceFilter:
    """A critically damped second-order filter of a target, advanced one period at a
    time, solved exactly for a target held over the period: with e = position - target,
    e(t) = (e0 + (v0 + w e0) t) exp(-w t). It never overshoots a target that stops."""

    def __init__(self, omega: float, dt: float, position: np.ndarray):
        self.omega, self.dt = omega, dt
        self.position = np.array(position, float)
        self.velocity = np.zeros_like(self.position)

    def advance(self, target: np.ndarray) -> np.ndarray:
        error = self.position - target
        slope = self.velocity + self.omega * error
        decay = np.exp(-self.omega * self.dt)
        self.position = target + (error + slope * self.dt) * decay
        self.velocity = (self.velocity - self.omega * slope * self.dt) * decay
        return self.position


class PandaIK:
    """End-effector position control of the arm in a MuJoCo model by mink.

    `reset(data)` starts the commanded configuration at the arm's state; `set_target`
    takes a world position for the end-effector site; `step(data)` runs one IK solve
    and writes the arm's joint targets into `data.ctrl`.
    """

    def __init__(
        self, model: mujoco.MjModel, posture_cost: float = 1e-2, tracking: Tracking = Tracking()
    ):
        import mink  # the [sim] extra

        self._mink = mink
        self.model = model
        self.configuration = mink.Configuration(model)
        self.hand = mink.FrameTask(
            END_EFFECTOR, "site", position_cost=1.0, orientation_cost=0.5, lm_damping=1e-3
        )
        self.posture = mink.PostureTask(model, cost=posture_cost)
        self.limits = [
            mink.ConfigurationLimit(model),
            mink.VelocityLimit(model, dict(zip(ARM_JOINTS, VELOCITY_LIMITS, strict=True))),
        ]
        self.arm_qpos = np.array([model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self.arm_ctrl = np.array([_actuator_of(model, j) for j in ARM_JOINTS])
        self.arm_dofs = np.array([model.joint(j).dofadr[0] for j in ARM_JOINTS])
        # Velocity feed-forward through the position servo: it pushes kp (target - q)
        # against the joint's damping d qdot, so a target led by (d / kp) qdot_ref
        # tracks a moving reference without the steady lag of d / kp seconds.
        damping = model.dof_damping[self.arm_dofs] - model.actuator_biasprm[self.arm_ctrl, 2]
        self.lead = damping / model.actuator_gainprm[self.arm_ctrl, 0]
        self.dt = 1.0 / IK_HZ
        self.solves = 0
        self.tracking = tracking
        self._mass = np.zeros((model.nv, model.nv))
        self._target: np.ndarray | None = None  # as set; the IK sees the filtered one
        self.reference: ReferenceFilter | None = None  # with Tracking.filter_omega
        self._arm_velocity = np.zeros(len(ARM_JOINTS))  # the last IK step's, for qdd

    def reset(self, data: mujoco.MjData) -> None:
        self.configuration.update(data.qpos)
        nominal = data.qpos.copy()
        nominal[self.arm_qpos] = NOMINAL_POSTURE
        self.posture.set_target(nominal)
        data.ctrl[self.arm_ctrl] = data.qpos[self.arm_qpos]
        self._target, self.reference = None, None
        self._arm_velocity[:] = 0.0

    def set_target(self, position: np.ndarray) -> None:
        position = np.asarray(position, float)
        if not self.tracking.filter_omega:
            self._aim(position)
        elif self.reference is None:  # the filter starts at rest on the first target
            self.reference = ReferenceFilter(self.tracking.filter_omega, self.dt, position)
        self._target = position

    def _aim(self, position: np.ndarray) -> None:
        rotation = self._mink.SO3.from_matrix(GRIPPER_DOWN)
        self.hand.set_target(self._mink.SE3.from_rotation_and_translation(rotation, position))

    def step(self, data: mujoco.MjData) -> None:
        if self.reference is not None and self._target is not None:
            self._aim(self.reference.advance(self._target))
        velocity = self._mink.solve_ik(
            self.configuration,
            [self.hand, self.posture],
            self.dt,
            "daqp",
            damping=1e-3,
            limits=self.limits,
        )
        self.configuration.integrate_inplace(velocity, self.dt)
        arm_velocity = velocity[self.arm_dofs]
        target = self.configuration.q[self.arm_qpos] + self.lead * arm_velocity
        if self.tracking.inertia_feedforward:
            target += self._inertia_lead(data, arm_velocity)
        self._arm_velocity = arm_velocity
        data.ctrl[self.arm_ctrl] = target
        self.solves += 1

    def _inertia_lead(self, data: mujoco.MjData, arm_velocity: np.ndarray) -> np.ndarray:
        """The servo offset whose kp (offset) is the torque M(q) qdd that the commanded
        acceleration takes (gravity is compensated, damping led by `lead`)."""
        mujoco.mj_fullM(self.model, data, self._mass)
        mass = self._mass[np.ix_(self.arm_dofs, self.arm_dofs)]
        acceleration = (arm_velocity - self._arm_velocity) / self.dt
        return mass @ acceleration / self.model.actuator_gainprm[self.arm_ctrl, 0]

    def settle(self, data: mujoco.MjData, target: np.ndarray, iterations: int = 400) -> None:
        """Put the arm, at rest, where IK reaches `target` (an episode's start pose)."""
        self._target, self.reference = None, None  # a filter starts at rest on the target
        self.set_target(target)
        for _ in range(iterations):
            self.step(data)
            if np.linalg.norm(self.commanded_position() - target) < 1e-4:
                break
        data.qpos[self.arm_qpos] = self.configuration.q[self.arm_qpos]
        data.qvel[:] = 0.0
        self._arm_velocity[:] = 0.0
        mujoco.mj_forward(self.model, data)

    def copy_state(self, other: PandaIK) -> None:
        """Take `other`'s commanded configuration, targets, filter and last velocity, so
        that this controller, on a copy of the same physics, steps exactly as it will."""
        self.configuration.update(other.configuration.q)
        self.posture.set_target(other.posture.target_q.copy())
        if other.hand.transform_target_to_world is not None:
            self.hand.set_target(other.hand.transform_target_to_world)
        self._target = None if other._target is None else other._target.copy()
        self.reference = None if other.reference is None else copy.deepcopy(other.reference)
        self._arm_velocity = other._arm_velocity.copy()

    def actuator(self, joint: str) -> int:
        return _actuator_of(self.model, joint)

    def commanded_position(self) -> np.ndarray:
        return self.configuration.get_transform_frame_to_world(END_EFFECTOR, "site").translation()


def _actuator_of(model: mujoco.MjModel, joint: str) -> int:
    joint_id = model.joint(joint).id
    for actuator in range(model.nu):
        if model.actuator_trnid[actuator, 0] == joint_id:
            return actuator
    raise ValueError(f"no actuator drives joint {joint}")


def set_arm(model: mujoco.MjModel, data: mujoco.MjData, posture: np.ndarray) -> None:
    """Place the arm at `posture` (7 joint angles), fingers open, servos holding it."""
    for joint, angle in zip(ARM_JOINTS, posture, strict=True):
        data.qpos[model.joint(joint).qposadr[0]] = angle
        data.ctrl[_actuator_of(model, joint)] = angle
    for joint in FINGER_JOINTS:
        data.qpos[model.joint(joint).qposadr[0]] = FINGER_OPEN
        data.ctrl[_actuator_of(model, joint)] = FINGER_OPEN
