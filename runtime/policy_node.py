"""The policy node: observations in, timestamped action chunks out, over ZeroMQ.

Consumes (connects to the sim's --publish):   observation  Observation, queued
Publishes (connects to the sim's --actions):  action       ActionChunk
                                              heartbeat    Heartbeat, once a second

Each prediction answers the newest observation, step s, with the To observations up to
it. The chunk sent starts at the action for step s, due at t_capture(s) in the clock of
the observation, and action i is due i·dt later, so an answer that arrives late has its
past actions skipped by the sim (latency compensation). Between two predictions the
sim has executed (s − s_previous) actions; RTI shifts its warm-start guess by as many,
which is how a slow policy falls back to executing several actions per prediction.

A bad observation (NaN, wrong length) is logged, counted and skipped; the node goes on.
The node itself never imports torch: `--backend onnx` runs on numpy and onnxruntime.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streams import ActionChunk, Endpoint, Heartbeat, Observation, Publisher, Queue, Subscriber

log = logging.getLogger(__name__)
BACKENDS = ("onnx", "torch")


@dataclass
class PolicyNodeConfig:
    policy: Path = Path("checkpoints/pickplace")  # a checkpoint (torch) or an export (onnx)
    backend: str = "onnx"
    observations: str = "tcp://127.0.0.1:5560"  # the sim's publish endpoint
    actions: str = "tcp://127.0.0.1:5561"  # the sim's action endpoint
    dt: float = 0.1  # the sim's control period
    sampler: str = "rti"
    seed: int = 0

    def __post_init__(self) -> None:
        self.policy = Path(self.policy)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.dt <= 0:
            raise ValueError(f"dt must be positive, got {self.dt}")


def load_policy(config: PolicyNodeConfig):
    if config.backend == "onnx":
        from policies.deploy.runtime import OnnxPolicy

        return OnnxPolicy(config.policy, config.sampler, seed=config.seed)
    from policies.diffusion.policy import DiffusionPolicy

    return DiffusionPolicy(config.policy, config.sampler, seed=config.seed)


@dataclass
class EpisodeHistory:
    """The last To observations of the current episode, oldest first."""

    horizon: int
    episode: int = -1
    last_step: int = -1
    states: deque = field(default_factory=deque)

    def add(self, observation: Observation) -> bool:
        """Take an observation in; True when it starts a new episode."""
        new = observation.episode != self.episode or observation.step < self.last_step
        if new:
            self.states = deque([observation.state] * self.horizon, maxlen=self.horizon)
            self.episode = observation.episode
        else:
            self.states.append(observation.state)
        self.last_step = observation.step
        return new


class PolicyNode:
    def __init__(self, config: PolicyNodeConfig, policy=None):
        self.config = config
        self.policy = policy if policy is not None else load_policy(config)
        self.subscriber = Subscriber(
            Endpoint(config.observations, bind=False), {"observation": Queue(256)}
        )
        self.publisher = Publisher(Endpoint(config.actions, bind=False), source="policy")
        self.history = EpisodeHistory(self.policy.obs_horizon)
        self.counters = {"predictions": 0, "bad_observations": 0, "cold_starts": 0}
        self.latencies_ms: deque[float] = deque(maxlen=1000)
        self._predicted_step = -1
        self._stop = False
        self._last_heartbeat = 0.0

    def stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        try:
            while not self._stop:
                newest = self._take_observations()
                if newest is not None:
                    self._predict(newest)
                self._heartbeat()
        finally:
            self.subscriber.close()
            self.publisher.close()

    def _take_observations(self) -> Observation | None:
        """Every queued observation into the history; the newest, or None after 0.1 s."""
        newest = None
        received = self.subscriber.recv("observation", timeout=0.1)
        while received is not None:
            if isinstance(received.message, Observation):
                newest = received.message
                if self.history.add(newest):
                    self.policy.reset()
                    self._predicted_step = -1
            received = self.subscriber.recv("observation", timeout=0)
        return newest

    def _predict(self, observation: Observation) -> None:
        shift = observation.step - self._predicted_step
        if self._predicted_step < 0 or shift > self.policy.pred_horizon:
            self.policy.reset()  # nothing to warm-start from
            self.counters["cold_starts"] += 1
        elif hasattr(self.policy, "executed"):
            self.policy.executed = max(1, shift)
        began = time.perf_counter()
        try:
            actions = self.policy.infer(np.stack(self.history.states))
        except ValueError as exc:
            self.counters["bad_observations"] += 1
            log.warning("observation %d skipped: %s", observation.step, exc)
            return
        self.latencies_ms.append((time.perf_counter() - began) * 1e3)
        # Actions before To−1 belong to steps already executed: they are not sent.
        self.publisher.publish(
            "action",
            ActionChunk(
                actions=actions[self.policy.obs_horizon - 1 :],
                t_first=observation.t_capture,
                dt=self.config.dt,
                first_index=observation.step,
                episode=observation.episode,
            ),
        )
        self._predicted_step = observation.step
        self.counters["predictions"] += 1

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat < 1.0:
            return
        self._last_heartbeat = now
        latency = np.percentile(self.latencies_ms, 50) if self.latencies_ms else float("nan")
        counters = {
            **self.counters,
            "latency_p50_ms": float(latency),
            "decode_errors": self.subscriber.stats.decode_errors,
        }
        self.publisher.publish("heartbeat", Heartbeat(node="policy", counters=counters))


def add_arguments(parser: argparse.ArgumentParser, backend: bool = True) -> None:
    """The node's flags; `warmloop deploy` leaves out --backend (always onnx)."""
    defaults = PolicyNodeConfig()
    if backend:
        parser.add_argument("policy", type=Path, help="checkpoint (torch) or export (onnx)")
        parser.add_argument("--backend", choices=BACKENDS, default=defaults.backend)
    else:
        parser.add_argument("policy", type=Path, help="directory written by `warmloop export`")
    parser.add_argument("--observations", default=defaults.observations)
    parser.add_argument("--actions", default=defaults.actions)
    parser.add_argument("--dt", type=float, default=defaults.dt)
    parser.add_argument("--sampler", choices=["rti", "ddpm", "ddim"], default=defaults.sampler)
    parser.add_argument("--seed", type=int, default=defaults.seed)


def main_from_args(args: argparse.Namespace) -> int:
    fields = PolicyNodeConfig.__dataclass_fields__
    try:
        node = PolicyNode(PolicyNodeConfig(**{k: v for k, v in vars(args).items() if k in fields}))
    except ValueError as exc:  # ExportError and CheckpointError are ValueErrors
        log.error("%s", exc)
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: node.stop())
    describe = getattr(node.policy, "providers", None)
    log.info("policy node up (%s backend, providers %s)", node.config.backend, describe)
    node.run()
    log.info("policy node stopped: %s", node.counters)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.policy_node", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return main_from_args(args)


if __name__ == "__main__":
    raise SystemExit(main())
