"""The sim node: steps a scene at its control rate and talks over ZeroMQ.

Publishes (bound at --publish):
  observation  Observation   every step (state, step, episode)
  frame        Frame         every step with --images (RGB-D, intrinsics, pose)
  episode      EpisodeResult at the end of each episode
  heartbeat    Heartbeat     once a second (counters: steps, held, stale_chunks, ...)
Consumes (bound at --actions, QoS latest):
  action       ActionChunk   actions[i] is due at t_first + i*dt (sender's clock)

Each tick executes the action of the newest chunk that is due now; chunks of another
episode are counted (foreign_chunks) and ignored. With --wait-for-policy S each episode
starts only once its first chunk arrived (or S seconds passed). When no chunk is fresh
(none received within --staleness seconds, or its actions all lie in the past) the node
holds the task's safe action: the arm still, the gripper unchanged.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from runtime.rate import Rate
from sim.envs import make_env
from streams import (
    ActionChunk,
    Endpoint,
    EpisodeResult,
    Frame,
    Heartbeat,
    Latest,
    Observation,
    Publisher,
    Subscriber,
)

log = logging.getLogger(__name__)


@dataclass
class SimNodeConfig:
    task: str = "pickplace"
    publish: str = "tcp://127.0.0.1:5560"
    actions: str = "tcp://127.0.0.1:5561"
    episodes: int = 10
    seed: int = 0
    staleness: float = 0.5  # seconds without a fresh chunk before holding
    clock_offset: float = 0.0  # policy clock minus ours (streams.Client.estimate_clock)
    images: bool = False
    image_size: int = 96
    rate_scale: float = 1.0  # 2.0 runs twice as fast as real time
    wait_for_policy: float = 0.0  # seconds each episode waits for its first chunk (0: none)

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.staleness <= 0:
            raise ValueError(f"staleness must be positive, got {self.staleness}")
        if self.rate_scale <= 0:
            raise ValueError(f"rate_scale must be positive, got {self.rate_scale}")
        if self.wait_for_policy < 0:
            raise ValueError(f"wait_for_policy must be >= 0, got {self.wait_for_policy}")


@dataclass
class ChunkTracker:
    """Chooses the due action from the newest chunk; counts why it could not."""

    staleness: float
    clock_offset: float = 0.0
    chunk: ActionChunk | None = None
    received_at: float = -np.inf
    counters: dict[str, int] = field(
        default_factory=lambda: {"chunks": 0, "held": 0, "stale_chunks": 0, "foreign_chunks": 0}
    )

    def offer(self, chunk: ActionChunk, now: float) -> None:
        self.chunk, self.received_at = chunk, now
        self.counters["chunks"] += 1

    def due_action(self, now: float) -> np.ndarray | None:
        chunk = self.chunk
        if chunk is None or now - self.received_at > self.staleness:
            return None
        index = int((now + self.clock_offset - chunk.t_first) // chunk.dt)
        if index >= len(chunk.actions):
            self.counters["stale_chunks"] += 1
            return None
        return np.asarray(chunk.actions[max(index, 0)])


class SimNode:
    def __init__(self, config: SimNodeConfig):
        self.config = config
        self.env = make_env(config.task)
        self.scene = self.env.unwrapped
        self.publisher = Publisher(Endpoint(config.publish, bind=True), source=f"sim/{config.task}")
        self.actions = Subscriber(Endpoint(config.actions, bind=True), {"action": Latest()})
        self.tracker = ChunkTracker(config.staleness, config.clock_offset)
        self.steps = 0
        self.episode = 0
        self._stop = False
        self._last_heartbeat = 0.0

    def stop(self) -> None:
        self._stop = True

    def run(self) -> list[EpisodeResult]:
        results = []
        rate = Rate(self.scene.metadata["render_fps"] * self.config.rate_scale)
        try:
            for episode in range(self.config.episodes):
                if self._stop:
                    break
                results.append(self._run_episode(episode, rate))
        finally:
            self.actions.close()
            self.publisher.close()
            self.env.close()
        return results

    def _run_episode(self, episode: int, rate: Rate) -> EpisodeResult:
        seed = self.config.seed + episode
        observation, info = self.env.reset(seed=seed)
        self.tracker.chunk = None  # a new episode never executes the last one's plan
        self.episode = episode
        if self.config.wait_for_policy > 0:
            self._await_first_chunk(observation, episode, rate.period)
        score, success, length, done = 0.0, False, 0, False
        rate.reset()
        while not done and not self._stop:
            self._publish_state(observation, episode, length)
            rate.sleep()
            action = self._choose_action()
            observation, reward, terminated, truncated, info = self.env.step(action)
            score = max(score, float(info.get("score", reward)))
            success = success or info["success"]
            length, done = length + 1, terminated or truncated
            self.steps += 1
        result = EpisodeResult(
            episode=episode,
            seed=seed,
            success=bool(success),
            score=score,
            length=length,
            task=self.config.task,
        )
        self.publisher.publish("episode", result)
        log.info("episode %d: success=%s score=%.2f length=%d", episode, success, score, length)
        return result

    def _await_first_chunk(self, observation: np.ndarray, episode: int, period: float) -> None:
        """Publish the first observation each period until a chunk for it arrives.

        A policy's first prediction of an episode denoises fully (hundreds of ms on a
        CPU), and a policy process may still be starting: the robot waits at rest.
        """
        deadline = time.monotonic() + self.config.wait_for_policy
        while time.monotonic() < deadline and not self._stop:
            self._publish_state(observation, episode, 0)
            received = self.actions.recv("action", timeout=period)
            if self._accept(received):
                return
        log.warning(
            "episode %d: no chunk within %.1f s; starting anyway",
            episode,
            self.config.wait_for_policy,
        )

    def _accept(self, received) -> bool:
        """Offer a received chunk of this episode to the tracker; count any other."""
        if received is None:
            return False
        chunk = received.message
        if not isinstance(chunk, ActionChunk) or chunk.episode != self.episode:
            self.tracker.counters["foreign_chunks"] += 1
            return False
        self.tracker.offer(chunk, time.monotonic())
        return True

    def _choose_action(self) -> np.ndarray:
        self._accept(self.actions.recv("action", timeout=0))
        now = time.monotonic()
        action = self.tracker.due_action(now)
        if action is None or action.shape != self.env.action_space.shape:
            self.tracker.counters["held"] += 1
            return self.scene.task.hold_action(self.scene.physics)
        return action

    def _publish_state(self, observation: np.ndarray, episode: int, step: int) -> None:
        now = time.monotonic()
        self.publisher.publish(
            "observation",
            Observation(
                state=observation.astype(np.float32), step=step, episode=episode, t_capture=now
            ),
        )
        if self.config.images:
            image = self.scene.render_camera(
                width=self.config.image_size, height=self.config.image_size
            )
            self.publisher.publish(
                "frame",
                Frame(
                    rgb=image.rgb,
                    depth=image.depth,
                    intrinsics=image.intrinsics,
                    pose=image.pose,
                    scene_time=self.scene.time,
                    camera=self.scene.task.default_camera,
                    t_capture=now,
                ),
            )
        if now - self._last_heartbeat >= 1.0:
            self._last_heartbeat = now
            counters = {
                **self.tracker.counters,
                "steps": self.steps,
                "decode_errors": self.actions.stats.decode_errors,
            }
            self.publisher.publish("heartbeat", Heartbeat(node="sim", counters=counters))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim.node",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = SimNodeConfig()
    for name, value in vars(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=type(value), default=value)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    node = SimNode(SimNodeConfig(**vars(args)))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: node.stop())
    results = node.run()
    log.info(
        "%d episodes, success rate %.2f",
        len(results),
        np.mean([r.success for r in results]) if results else float("nan"),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
