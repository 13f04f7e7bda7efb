"""The sim node: steps a scene at its control rate and talks over ZeroMQ.

Publishes (binds --publish):
  observation  Observation   every step (state, step, episode); with --obs image the
                             state is the task's proprioception and `images` holds an
                             RGB frame of each --obs-cameras camera (an image policy's input)
  truth        Observation   every step with --obs image: the simulator's whole state
                             vector (the cube, the targets), for recordings and checks
  frame        Frame         every step with --images (RGB-D, intrinsics, pose)
  episode      EpisodeResult at the end of each episode
  heartbeat    Heartbeat     once a second: steps, held, chunks, late_actions, jitter
Consumes (connects to the policy's publisher at --actions):
  action       ActionChunk   actions[i] is due at t_first + i*dt

Each tick executes the action due now, merged from the fresh chunks by --merge
(runtime/chunks.py); chunks of another episode are counted (foreign_chunks) and
ignored. With --wait-for-policy S each episode starts once its first chunk arrived (or
S seconds passed). When no chunk is fresh (none received within --staleness seconds,
or its actions all lie in the past) the node holds the task's safe action: the arm
still, the gripper unchanged. That is the watchdog.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.chunks import STRATEGIES, ChunkExecutor
from runtime.node import Node, NodeType, node_main, require
from runtime.rate import OVERRUNS, SPIN_WINDOW, Rate
from sim.envs import SCENES, make_env
from streams import (
    ActionChunk,
    EpisodeResult,
    Frame,
    Observation,
    Publisher,
    Subscriber,
    parse_endpoint,
    parse_qos,
)

log = logging.getLogger(__name__)


@dataclass
class SimNodeConfig:
    task: str = "pickplace"
    publish: str = "tcp://127.0.0.1:5560"  # bound: observations, frames, episodes
    actions: str = "tcp://127.0.0.1:5561"  # the policy's publisher, connected to
    action_qos: str = "queue(8)"  # every chunk is offered to the merger
    merge: str = "latest"
    episodes: int = 10
    seed: int = 0
    staleness: float = 0.5  # seconds without a fresh chunk before holding
    clock_offset: float = 0.0  # chunk clock minus ours, for chunks not stamped by us
    images: bool = False
    image_size: int = 96  # of the frames, and of an image policy's observation images
    obs: str = "state"  # "image": proprioception + camera frames in every Observation
    obs_cameras: str = ""  # comma-separated; default: the task's default camera
    rate_scale: float = 1.0  # 2.0 runs twice as fast as real time
    overrun: str = "skip"  # what a late tick does: "skip" or "catch_up"
    spin: float = SPIN_WINDOW  # seconds before each deadline spent spinning (0: sleep only)
    wait_for_policy: float = 0.0  # seconds each episode waits for its first chunk (0: none)
    script: str = ""  # explore only: drive the camera along a sim.trajectories path, no policy
    video: str = ""  # the first episode as an MP4, written when it ends
    results: str = ""  # append a JSON line per episode here, as each one ends
    queue_mb: float = 64.0  # what a subscriber that stops reading may hold queued here
    summary: str = ""  # write a JSON summary here at the end

    def __post_init__(self) -> None:
        require(
            [
                (self.task in SCENES, f"task must be one of {sorted(SCENES)}, got {self.task!r}"),
                (self.episodes >= 1, f"episodes must be >= 1, got {self.episodes}"),
                (self.staleness > 0, f"staleness must be positive, got {self.staleness}"),
                (self.rate_scale > 0, f"rate_scale must be positive, got {self.rate_scale}"),
                (
                    self.wait_for_policy >= 0,
                    f"wait_for_policy must be >= 0, got {self.wait_for_policy}",
                ),
                (
                    self.merge in STRATEGIES,
                    f"merge must be one of {STRATEGIES}, got {self.merge!r}",
                ),
                (
                    self.overrun in OVERRUNS,
                    f"overrun must be one of {OVERRUNS}, got {self.overrun!r}",
                ),
                (0 <= self.spin < 0.05, f"spin must be in [0, 0.05) s, got {self.spin}"),
                (self.queue_mb > 0, f"queue_mb must be positive, got {self.queue_mb}"),
                (self.obs in ("state", "image"), f"obs must be state or image, got {self.obs!r}"),
                (
                    8 <= self.image_size <= 1024,
                    f"image_size must be in 8..1024, got {self.image_size}",
                ),
                (
                    not self.video or self.video.lower().endswith(".mp4"),
                    f"video is an .mp4 path or empty, got {self.video!r}",
                ),
                (
                    not self.script or self.task == "explore",
                    f"script drives the explore camera; task {self.task!r} needs a policy",
                ),
            ]
        )
        parse_qos(self.action_qos)


@dataclass
class Played:
    """One episode as the sim played it; `interrupted` when it was stopped before its end."""

    episode: int
    seed: int
    success: bool
    score: float
    length: int
    interrupted: bool = False

    def record(self) -> dict:
        return {
            "episode": self.episode,
            "seed": self.seed,
            "success": self.success,
            "score": self.score,
            "length": self.length,
            "interrupted": self.interrupted,
        }

    def message(self, task: str) -> EpisodeResult:
        return EpisodeResult(
            episode=self.episode,
            seed=self.seed,
            success=self.success,
            score=self.score,
            length=self.length,
            task=task,
        )


class SimNode(Node):
    name = "sim"

    def __init__(self, config: SimNodeConfig):
        super().__init__()
        self.config = config
        self.results: list[Played] = []
        self.filmed: list[np.ndarray] = []  # the first episode's states, for its MP4
        self.episode = 0
        self.script: np.ndarray | None = None
        self.handlers = {ActionChunk: self._on_chunk}

    def configure(self) -> None:
        config = self.config
        self.env = make_env(config.task)
        self.scene = self.env.unwrapped
        self.executor = ChunkExecutor(
            config.merge,
            config.staleness,
            config.clock_offset,
            self.scene.task.discrete_action_dims,
        )
        self.obs_cameras = self._observation_cameras()
        hz = self.scene.metadata["render_fps"] * config.rate_scale
        self.rate = Rate(hz, config.overrun, spin=config.spin)
        self.publisher = Publisher(
            parse_endpoint(config.publish, bind=True),
            source="sim",
            queue_bytes=int(config.queue_mb * 1e6),
            message_bytes=self._largest_message_bytes(),
        )
        self.actions = Subscriber(
            parse_endpoint(config.actions, bind=False), {"action": parse_qos(config.action_qos)}
        )

    def _observation_cameras(self) -> tuple[str, ...]:
        if self.config.obs != "image":
            return ()
        task = self.scene.task
        names = [c for c in self.config.obs_cameras.split(",") if c] or [task.default_camera]
        unknown = [c for c in names if c not in task.cameras]
        if unknown:
            raise ValueError(f"obs_cameras {unknown}: task {self.config.task} has {task.cameras}")
        return tuple(dict.fromkeys(names))

    def _largest_message_bytes(self) -> int:
        """A Frame when images are on (RGB uint8 + depth float32), an Observation with its
        camera frames, or a plain Observation."""
        header, pixels = 4096, self.config.image_size**2
        largest = header + len(self.obs_cameras) * pixels * 3
        if self.config.images:
            largest = max(largest, header + pixels * (3 + 4))
        return largest

    def shutdown(self) -> None:
        self._write_video()  # the first episode, if it was interrupted before its end
        self.close("actions", "publisher", "env")
        finished = [r for r in self.results if not r.interrupted]
        interrupted = len(self.results) - len(finished)
        scene = getattr(self, "scene", None)
        if scene is None or not scene.task.scored:
            log.info("%d episodes of %s (no success to reach)", len(finished), self.config.task)
        elif finished:
            rate = np.mean([r.success for r in finished])
            log.info("%d episodes, success rate %.2f", len(finished), rate)
        if interrupted:
            log.info("1 episode interrupted before its end (not counted)")

    def loop(self) -> None:
        for episode in range(self.config.episodes):
            if self.stopping:
                break
            result = self._run_episode(episode)
            self.results.append(result)
            if episode == 0:
                self._write_video()  # final before the episode's line says it ended
            self._append_result(result)

    def _append_result(self, result: Played) -> None:
        """One JSON line per episode, flushed to disk as it ends: what a demo reports
        from, whatever happens to this process or the recorder later."""
        if not self.config.results:
            return
        path = Path(self.config.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as lines:
            lines.write(json.dumps(result.record()) + "\n")
            lines.flush()
            os.fsync(lines.fileno())

    def _write_video(self) -> None:
        if not (self.config.video and self.filmed):
            return
        import imageio.v2 as imageio

        camera = self.scene.task.video_camera  # None: the task's default camera
        frames = self.scene.render_states(self.filmed, camera, 240, 240)
        Path(self.config.video).parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(self.config.video, frames, fps=self.scene.metadata["render_fps"])
        self.filmed = []  # written once: the file is final

    def status(self, window: int = 5000) -> dict[str, float]:
        """Counters of the chunk merger, and jitter: tick start minus its deadline (ms)."""
        if not hasattr(self, "rate"):
            return {}
        stats: dict[str, float] = {f"executor_{k}": v for k, v in self.executor.counters.items()}
        rate = self.rate.stats
        lateness = np.asarray(rate.lateness[-window:]) * 1e3
        woke = np.asarray(rate.wake_lateness[-window:]) * 1e3
        if lateness.size:
            stats.update(
                jitter_p50_ms=float(np.percentile(lateness, 50)),
                jitter_p99_ms=float(np.percentile(lateness, 99)),
                jitter_max_ms=float(lateness.max()),
                wake_p50_ms=float(np.percentile(woke, 50)),
                wake_p99_ms=float(np.percentile(woke, 99)),
                spin_cpu_share=rate.spin_share,
                late_ticks=rate.late,
                missed_deadlines=rate.missed,
                misses_per_10k=rate.misses_per_10k(),
                ticks=rate.ticks,
                control_hz=1.0 / self.rate.period,
            )
        return stats

    def summary(self) -> dict:
        finished = [r for r in self.results if not r.interrupted]
        scored = getattr(self, "scene", None) is not None and self.scene.task.scored
        return {
            **super().summary(),
            **self.status(window=len(self.rate.stats.lateness) if hasattr(self, "rate") else 1),
            "episodes": [r.record() for r in self.results],
            "success_rate": (
                float(np.mean([r.success for r in finished])) if finished and scored else None
            ),
            "jitter_histogram": self.rate.stats.histogram() if hasattr(self, "rate") else {},
        }

    # ---- one episode ---------------------------------------------------------------
    def _run_episode(self, episode: int) -> Played:
        seed = self.config.seed + episode
        observation, info = self.env.reset(seed=seed)
        self.executor.clear()  # a new episode never executes the last one's plan
        self.episode = episode
        self.script = self._make_script(seed)
        if self.config.wait_for_policy > 0:
            self._await_first_chunk(observation, episode)
        score, success, length, done = 0.0, False, 0, False
        if self.config.video and episode == 0:
            self._record_frame()
        self.rate.reset()
        while not done and not self.stopping:
            self._publish_state(observation, episode, length)
            self.rate.sleep()
            action = self._choose_action(length)
            observation, reward, terminated, truncated, info = self.env.step(action)
            score = max(score, float(info.get("score", reward)))
            success = success or info["success"]
            length, done = length + 1, terminated or truncated
            self.counters["steps"] += 1
            if self.config.video and episode == 0:
                self._record_frame()
        result = Played(episode, seed, bool(success), score, length, interrupted=not done)
        if result.interrupted:
            log.info("episode %d: interrupted after %d steps (not counted)", episode, length)
            return result
        self.publisher.publish("episode", result.message(self.config.task))
        if self.scene.task.scored:
            log.info("episode %d: success=%s score=%.2f length=%d", episode, success, score, length)
        else:
            log.info("episode %d: %d steps", episode, length)
        return result

    def _record_frame(self) -> None:
        # The state, not the picture: rendering the Panda's 240 x 240 view in software
        # took ~44 ms of the 100 ms tick on a 2-core CPU, beside the policy's cameras
        # (~46 ms), and the first episode's ticks missed their deadlines. The frames are
        # rendered from these states when the episode has ended, off the clock.
        self.filmed.append(self.scene.physics_state())

    def _await_first_chunk(self, observation: np.ndarray, episode: int) -> None:
        """Publish the first observation each period until a chunk for it arrives.

        A policy's first prediction of an episode denoises fully (hundreds of ms on a
        CPU), and a policy process may still be starting: the robot waits at rest.
        """
        deadline = time.monotonic() + self.config.wait_for_policy
        while time.monotonic() < deadline and not self.stopping:
            self._publish_state(observation, episode, 0)
            if self.dispatch(self.actions.recv("action", timeout=self.rate.period)) and (
                self.executor.chunks
            ):
                return
        log.warning(
            "episode %d: no chunk in %.1f s; starting", episode, self.config.wait_for_policy
        )

    def _on_chunk(self, chunk: ActionChunk) -> None:
        if chunk.episode != self.episode:
            self.counters["foreign_chunks"] += 1
            return
        if chunk.actions.shape[1:] != self.env.action_space.shape:
            self.counters["malformed_chunks"] += 1
            return
        self.executor.offer(chunk, time.monotonic())
        self.counters["chunks"] += 1

    def _make_script(self, seed: int) -> np.ndarray | None:
        if not self.config.script:
            return None
        from sim.trajectories import make

        steps = self.env.spec.max_episode_steps or 200
        return make(self.config.script, np.random.default_rng(seed), steps)

    def _choose_action(self, step: int) -> np.ndarray:
        while self.dispatch(self.actions.recv("action", timeout=0)):
            pass
        if self.script is not None:
            return self.script[min(step, len(self.script) - 1)]
        action = self.executor.due_action(time.monotonic())
        if action is None:
            self.counters["held"] += 1
            return self.scene.task.hold_action(self.scene.physics)
        return action

    def _publish_state(self, observation: np.ndarray, episode: int, step: int) -> None:
        now = time.monotonic()
        images = {}
        if self.obs_cameras:  # what a robot has: its own joints and its cameras
            # The simulator's whole state goes out beside it, for recordings and checks
            # (a policy subscribes to "observation" only and never sees it).
            truth = Observation(state=observation.astype(np.float32), step=step, episode=episode)
            self.publisher.publish("truth", truth)
            observation = observation[list(self.scene.task.proprio_dims)]
            size = self.config.image_size
            images = {
                c: self.scene.render_camera(c, size, size, depth=False).rgb
                for c in self.obs_cameras
            }
        state = Observation(
            state=observation.astype(np.float32),
            images=images,
            step=step,
            episode=episode,
            t_capture=now,
        )
        self.publisher.publish("observation", state)
        if self.config.images:
            size = self.config.image_size
            image = self.scene.render_camera(width=size, height=size)
            frame = Frame(
                rgb=image.rgb,
                depth=image.depth,
                intrinsics=image.intrinsics,
                pose=image.pose,
                scene_time=self.scene.time,
                camera=self.scene.task.default_camera,
                t_capture=now,
            )
            self.publisher.publish("frame", frame)
        self.counters["decode_errors"] = self.actions.stats.decode_errors
        self.heartbeat()


NODE_TYPES = {
    "sim": NodeType(
        SimNodeConfig,
        binds=frozenset({"publish"}),
        connects=frozenset({"actions"}),
        qos={"action_qos": "action"},
    )
}


def main(argv: list[str] | None = None) -> int:
    return node_main(argv, "python -m sim.node", __doc__, NODE_TYPES["sim"], SimNode)


if __name__ == "__main__":
    raise SystemExit(main())
