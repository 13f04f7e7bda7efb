"""A scripted PushT expert that plans each push by trying it in a copy of the physics.

Each decision: for candidate contact points on the block's edges, push directions and
push lengths, roll the push out in a scratch MjData and keep the one that leaves the
block closest to the target pose (position + a lever arm times the yaw error). Then
execute it for real: travel to the stand-off point along the shortest path that keeps
clear of the block (via points on a circle around it), and push. Ties between pushes
are broken at random, so demonstrations of one start differ.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from sim.scene import MujocoScene, Physics, control_step
from sim.tasks.pusht import (
    BAR_HALF,
    PUSHER_RADIUS,
    PUSHER_SPEED,
    STEM_HALF,
    STEM_Y,
    TARGET_POSE,
    PushTTask,
    _to_local,
    block_pose,
    coverage,
)

# Contact points (block frame) with their outward normals.
_CONTACTS = np.array(
    [
        # x, y, nx, ny
        [-0.045, BAR_HALF[1], 0, 1],
        [0.0, BAR_HALF[1], 0, 1],
        [0.045, BAR_HALF[1], 0, 1],
        [-0.045, -BAR_HALF[1], 0, -1],
        [0.045, -BAR_HALF[1], 0, -1],
        [-BAR_HALF[0], 0, -1, 0],
        [BAR_HALF[0], 0, 1, 0],
        [-STEM_HALF[0], STEM_Y + 0.015, -1, 0],
        [STEM_HALF[0], STEM_Y + 0.015, 1, 0],
        [-STEM_HALF[0], STEM_Y - 0.025, -1, 0],
        [STEM_HALF[0], STEM_Y - 0.025, 1, 0],
        [0.0, STEM_Y - STEM_HALF[1], 0, -1],
    ]
)
_ANGLES = (-0.5, 0.0, 0.5)  # push direction relative to the inward normal, rad
_LENGTHS = (0.006, 0.015, 0.035, 0.07, 0.12)
# Success needs the block within about 2 mm and 2 degrees: close to the target, pushes
# of a few millimetres at more angles finish the job that coarse pushes overshoot.
_FINE_FROM = 0.8  # coverage from which the fine pushes are tried
_FINE_ANGLES = (-0.7, -0.35, 0.0, 0.35, 0.7)
_FINE_LENGTHS = (0.001, 0.002, 0.0035, 0.006, 0.01)
_LEVER = 0.06  # metres of position error worth one radian of yaw error
_COVERAGE_WEIGHT = 0.05  # metres of pose error worth the whole target area
SAFE_RADIUS = 0.135  # travel around the block this far from its centre
STANDOFF = PUSHER_RADIUS + 0.014
_VERIFIED_PLANS = 6  # reachable plans simulated whole before one is chosen


def pose_error(pose: np.ndarray, target: np.ndarray = TARGET_POSE) -> float:
    """Distance to the target pose; near it, the uncovered area takes over.

    Far away coverage is flat (zero) and cannot guide; close by, the pose error says
    little about which small push finishes the job, and coverage says exactly that.
    """
    yaw = (pose[2] - target[2] + math.pi) % (2 * math.pi) - math.pi
    distance = float(np.linalg.norm(pose[:2] - target[:2]) + _LEVER * abs(yaw))
    return distance + _COVERAGE_WEIGHT * (1.0 - coverage(pose, target))


class PushTExpert:
    name = "pusht-rollout-planner-v2"
    reached = 0.001  # metres from a waypoint at which the pusher moves on to the next
    clearance = PUSHER_RADIUS + 0.006  # of travel paths from the block, centre to edge
    # Plans simulated whole while none of them ends better than now: where rollouts
    # predict the real pushes exactly (here), the first _VERIFIED_PLANS are enough.
    most_verified_plans = _VERIFIED_PLANS
    # How far the pusher's front leads its centre, taken off every push length so that a
    # length is how far the front passes the block's edge. PushT's planner has always
    # measured to the round pusher's centre (its front goes 12 mm further; its datasets
    # and checkpoints come from that), so it keeps 0. A wider pusher must set it: with
    # the Panda's 16.5 mm footprint, the "1 mm" fine push moved the block 13 mm and
    # turned it 13 degrees, and no fine push could finish a nearly placed block.
    pusher_lead = 0.0

    def __init__(self, env: MujocoScene, rng: np.random.Generator):
        self.env = env
        self.rng = rng
        # A private task and data for rollouts, so that planning never touches the env.
        self._task = PushTTask()
        self._scratch = Physics(env.physics.model, mujoco.MjData(env.physics.model))
        self.reset()

    def reset(self) -> None:
        self.waypoints: list[np.ndarray] = []
        self._last_direction: np.ndarray | None = None
        self._pending_direction = np.zeros(2)
        self._steps_on_waypoint = 0
        self.orbit_sense = self.rng.choice([-1.0, 1.0])

    def act(self, observation: np.ndarray) -> np.ndarray:
        pusher = observation[:2]
        self._steps_on_waypoint += 1
        while self.waypoints and (
            np.linalg.norm(self.waypoints[0] - pusher) < self.reached
            or self._steps_on_waypoint > 12
        ):
            self.waypoints.pop(0)
            self._steps_on_waypoint = 0
        if not self.waypoints:
            self.waypoints = self._plan(pusher)
        return self.waypoints[0].astype(np.float32)

    def _plan(self, pusher: np.ndarray) -> list[np.ndarray]:
        physics = self.env.physics
        pose = block_pose(physics)
        if coverage(pose) >= 0.97:
            return [pusher.copy()]  # done: stay clear and still
        fine = coverage(pose) >= _FINE_FROM
        angles, lengths = (_FINE_ANGLES, _FINE_LENGTHS) if fine else (_ANGLES, _LENGTHS)
        scored = sorted(
            (
                (self._rollout(*c) + self.rng.uniform(0, 1e-4), i, c)
                for i, c in enumerate(self._candidates(pose, angles, lengths))
            ),
            key=lambda t: t[:2],
        )
        improving = [c for cost, _, c in scored if cost < pose_error(pose)]
        # The best push the pusher can reach. When none improves: far from the target a
        # random reachable one shakes the block loose; close to it, the least harmful
        # fine push, since a random one undoes what the fine pushes achieved.
        if improving:
            order = improving
        elif fine:
            order = [c for _, _, c in scored]
        else:
            order = [scored[i][2] for i in self.rng.permutation(len(scored))]
        # Verify the few best reachable plans whole, travel included, in simulation: a
        # path that brushes the block spoils a push that looked good on its own.
        plans = []
        for start, direction, length in order[:30]:
            self._pending_direction = direction
            path = self._travel(pusher, start, pose[:2])
            if path is not None:
                plan = [*path, start + direction * length]
                plans.append((self._simulate(plan), len(plans), plan, direction))
                if len(plans) >= _VERIFIED_PLANS and (
                    len(plans) >= self.most_verified_plans
                    or min(p[0] for p in plans) < pose_error(pose)
                ):
                    break
        if plans:
            _, _, plan, direction = min(plans, key=lambda p: p[:2])
            self._last_direction = direction
            return plan
        # Boxed in (for example against the workspace edge): back off and try again.
        self._last_direction = None
        return [np.clip(pusher + self.rng.normal(0, 0.03, 2), -0.24, 0.24)]

    def _candidates(self, pose: np.ndarray, angles: tuple, lengths: tuple):
        c, s = math.cos(pose[2]), math.sin(pose[2])
        rotation = np.array([[c, -s], [s, c]])
        for x, y, nx, ny in _CONTACTS:
            point = rotation @ np.array([x, y]) + pose[:2]
            normal = rotation @ np.array([nx, ny])
            for angle in angles:
                ca, sa = math.cos(angle), math.sin(angle)
                direction = -np.array(
                    [ca * normal[0] - sa * normal[1], sa * normal[0] + ca * normal[1]]
                )
                start = point - direction * STANDOFF
                if np.abs(start).max() > 0.24:
                    continue  # the pusher cannot get there
                for length in lengths:
                    yield start, direction, length + STANDOFF - self.pusher_lead

    def _rollout(self, start: np.ndarray, direction: np.ndarray, length: float) -> float:
        """Cost after pushing from `start` along `direction`, in a scratch copy.

        The copy is stepped exactly as the environment steps (same task hooks, same
        control period), so the prediction matches what the real push will do.
        """
        scratch = self._scratch
        self._load_scratch()
        scratch.data.mocap_pos[0, :2] = start
        end = (start + direction * length).astype(np.float32)
        steps_to_end = math.ceil(length / (PUSHER_SPEED * self._task.control_dt) + 1e-9)
        for _ in range(steps_to_end + 2):  # the push, then 0.2 s to come to rest
            self._step_scratch(end)
        return pose_error(block_pose(scratch))

    def _simulate(self, waypoints: list[np.ndarray]) -> float:
        """Cost after following `waypoints` exactly as the env and `act` would: a
        waypoint is left once the pusher is within `reached` of it, or after 12 steps."""
        physics = self._start_playback()
        for waypoint in waypoints:
            target = waypoint.astype(np.float32)
            for _ in range(13):  # act() gives up on a waypoint after 12 steps
                pusher = self._playback_step(target)
                if np.linalg.norm(pusher - target) < self.reached:
                    break
        for _ in range(2):  # come to rest
            self._playback_step(waypoints[-1].astype(np.float32))
        return pose_error(block_pose(physics))

    def _start_playback(self) -> Physics:
        """The physics a whole plan is played in, at the env's state (here the scratch:
        PushT's rollouts are its own physics)."""
        self._load_scratch()
        return self._scratch

    def _playback_step(self, target: np.ndarray) -> np.ndarray:
        """One control step of the played plan; the pusher's position after it."""
        self._step_scratch(target)
        return self._scratch.data.mocap_pos[0, :2]

    def _load_scratch(self) -> None:
        """The scratch physics at the environment's state, to try a push in."""
        mujoco.mj_copyData(self._scratch.data, self._scratch.model, self.env.physics.data)

    def _step_scratch(self, target: np.ndarray) -> None:
        control_step(self._task, self._scratch, target, self.env.n_substeps)

    def _travel(
        self, pusher: np.ndarray, goal: np.ndarray, centre: np.ndarray
    ) -> list[np.ndarray] | None:
        """Shortest clear path from the pusher to `goal` via points around the block.

        After a push the pusher touches the block, so it first backs off along the
        last push direction.
        """
        prefix = []
        if self._last_direction is not None:
            pusher = np.clip(self._away_from_block(pusher, 0.03), -0.25, 0.25)
            prefix = [pusher]
        angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
        # Backing out of the goal along the push line leaves pockets such as the corner
        # between bar and stem, where a line from the circle would cut through the block.
        approach = np.clip(goal - self._pending_direction * 0.05, -0.25, 0.25)
        nodes = [
            pusher,
            *(
                np.clip(centre + SAFE_RADIUS * np.array([math.cos(a), math.sin(a)]), -0.25, 0.25)
                for a in angles
            ),
            approach,
            goal,
        ]
        # Without a back-off point the pusher may start next to the block: leaving it
        # is allowed.
        leaving = not prefix
        path = _shortest_path(
            nodes, lambda i, j: self._clear(nodes[i], nodes[j], leaving=leaving and i == 0)
        )
        return None if path is None else prefix + [nodes[i] for i in path[1:]]

    def _away_from_block(self, pusher: np.ndarray, distance: float) -> np.ndarray:
        """`pusher` moved `distance` further along the normal of the nearest block edge."""
        pose = block_pose(self.env.physics)
        local = _to_local(pusher[None], pose)[0]
        nearest = [
            np.clip(local, [-BAR_HALF[0], -BAR_HALF[1]], BAR_HALF),
            np.clip(
                local, [-STEM_HALF[0], STEM_Y - STEM_HALF[1]], [STEM_HALF[0], STEM_Y + STEM_HALF[1]]
            ),
        ]
        closest = min(nearest, key=lambda p: float(np.linalg.norm(local - p)))
        normal = local - closest
        if np.linalg.norm(normal) < 1e-9:  # inside the block: leave the way it came
            return (
                pusher
                - (self._last_direction if self._last_direction is not None else np.zeros(2))
                * distance
            )
        c, s = math.cos(pose[2]), math.sin(pose[2])
        world = np.array([[c, -s], [s, c]]) @ (normal / np.linalg.norm(normal))
        return pusher + world * distance

    def _clear(self, a: np.ndarray, b: np.ndarray, leaving: bool = False) -> bool:
        """True if the pusher can go straight from a to b without touching the block.

        With `leaving`, the first 1.5 cm are not checked: the pusher starts in contact.
        """
        pose = block_pose(self.env.physics)
        samples = max(2, int(np.linalg.norm(b - a) / 0.002) + 1)  # every 2 mm
        points = a + np.linspace(0, 1, samples)[:, None] * (b - a)
        if leaving:
            points = points[np.linalg.norm(points - a, axis=1) > 0.015]
        local = _to_local(points, pose)
        margin = self.clearance
        x, y = local[:, 0], local[:, 1]
        near_bar = (np.abs(x) <= BAR_HALF[0] + margin) & (np.abs(y) <= BAR_HALF[1] + margin)
        near_stem = (np.abs(x) <= STEM_HALF[0] + margin) & (
            np.abs(y - STEM_Y) <= STEM_HALF[1] + margin
        )
        return not (near_bar | near_stem).any()


def _shortest_path(nodes: list[np.ndarray], connected) -> list[int] | None:
    """Dijkstra from node 0 to the last node over edges where connected(i, j)."""
    n = len(nodes)
    distance = [math.inf] * n
    previous = [-1] * n
    distance[0] = 0.0
    unvisited = set(range(n))
    while unvisited:
        i = min(unvisited, key=distance.__getitem__)
        if distance[i] == math.inf or i == n - 1:
            break
        unvisited.remove(i)
        for j in unvisited:
            step = float(np.linalg.norm(nodes[i] - nodes[j]))
            if distance[i] + step < distance[j] and connected(i, j):
                distance[j], previous[j] = distance[i] + step, i
    if distance[-1] == math.inf:
        return None
    path = [n - 1]
    while path[-1] != 0:
        path.append(previous[path[-1]])
    return path[::-1]
