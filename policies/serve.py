"""`warmloop serve`: an exported policy served to robots, observation in, action chunk out.

Request/reply (streams.Service on a REP socket), not the policy node's pub/sub: a robot
asks when it needs a chunk and gets the answer to its own observation; the REP socket
routes each reply to the robot that asked, so one server serves several robots with no
topic per robot; and the client's Lazy Pirate retries (streams.Client) carry it over a
server restart. Inside a launch graph the policy node's pub/sub stays the way.

Sessions: each client names itself (the `source` of its messages; policies.client does
it). A session holds its own RTI warm-start guess, observation history and noise
generator, seeded from --seed and the client's name, so two robots never warm-start
from each other's chunks and a session's answers do not depend on other sessions. A new
episode number, or a step that goes backwards, starts the session over; a session
silent for --session-timeout seconds is dropped.

A request that is not a valid observation for this policy (wrong length, NaN, a state
that normalises to infinity, a negative step) gets a `warmloop.Error` reply with code
`bad_observation`; the server logs it, counts it and goes on.
"""

from __future__ import annotations

import argparse
import logging
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from policies.node import EpisodeHistory, latency_figures, observation_problem
from runtime.node import Node, add_config_arguments, require, run_from_args
from streams import ActionChunk, Error, Observation, Service, parse_endpoint

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    policy: Path = field(
        default=Path("exported/pickplace"), metadata={"help": "a `warmloop export` directory"}
    )
    bind: str = field(
        default="tcp://127.0.0.1:5570",
        metadata={
            "help": "where robots connect; beyond loopback with CURVE keys: "
            "tcp://0.0.0.0:5570?secret=server.key_secret&clients=keys/ (docs/deployment.md)"
        },
    )
    dt: float = 0.1  # the robot's control period: the chunk's action spacing
    session_timeout: float = 10.0  # seconds without a request before a session is dropped
    seed: int = 0
    threads: int = 1  # onnxruntime intra-op threads
    providers: str = field(
        default="", metadata={"help": "execution providers in order, e.g. `cuda,cpu`"}
    )
    summary: str = ""  # write a JSON summary here at the end

    def __post_init__(self) -> None:
        self.policy = Path(self.policy)
        require(
            [
                (self.dt > 0, f"dt must be positive, got {self.dt}"),
                (self.session_timeout > 0, f"session_timeout must be positive, got "
                 f"{self.session_timeout}"),
                (self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
                ((self.policy / "manifest.json").is_file(),
                 f"policy {self.policy}: no export there (make one with `warmloop export`)"),
            ]
        )  # fmt: skip
        parse_endpoint(self.bind, bind=True)


@dataclass
class Session:
    """One robot's state on the server."""

    history: EpisodeHistory
    rti: object  # policies.diffusion.sampler.RTIState
    rng: np.random.Generator
    predicted_step: int = -1
    last_reply: ActionChunk | None = None  # for a request sent again after a lost reply
    last_seen: float = field(default_factory=time.monotonic)


class PolicyServer(Node):
    name = "serve"

    def __init__(self, config: ServeConfig):
        super().__init__()
        self.config = config
        self.sessions: dict[str, Session] = {}
        self.latencies_ms: deque[float] = deque(maxlen=10_000)  # a server runs for days

    def configure(self) -> None:
        from policies.deploy.runtime import OnnxPolicy, describe, parse_providers

        self.policy = OnnxPolicy(
            self.config.policy,
            threads=self.config.threads,
            providers=parse_providers(self.config.providers),
        )
        self.service = Service(
            parse_endpoint(self.config.bind, bind=True),
            {Observation: self._answer},
            source="serve",
        )
        log.info("serve: %s; listening on %s", describe(self.policy), self.service.address)

    def loop(self) -> None:
        while not self.stopping:
            self.service.serve_once(0.1)
            self._drop_silent_sessions()

    def shutdown(self) -> None:
        self.close("service")
        figures = self.status()
        log.info(
            "serve: %d requests from %d session(s), %d bad; warm latency p50 %.2f ms, p99 %.2f ms",
            self.counters["requests"],
            self.counters["sessions"],
            self.counters["bad_observations"],
            figures.get("latency_p50_ms", float("nan")),
            figures.get("latency_p99_ms", float("nan")),
        )

    def status(self) -> dict[str, float]:
        return latency_figures(self.latencies_ms) if self.latencies_ms else {}

    def _answer(self, observation: Observation) -> ActionChunk | Error:
        self.counters["requests"] += 1
        client = observation.stamp.source if observation.stamp else ""
        try:
            session = self._session(client, observation)
            again = session.last_reply
            if again is not None and (again.episode, again.first_index) == (
                observation.episode,
                observation.step,
            ):  # the client's retry of a request whose reply was lost: the same answer
                self.counters["repeated_requests"] += 1
                return again
            session.last_reply = self._predict(session, observation)
            return session.last_reply
        except ValueError as exc:
            self.counters["bad_observations"] += 1
            self.warnings.warning(
                "bad observations", "bad observation from %r (step %d): %s",
                client, observation.step, exc,
            )  # fmt: skip
            return Error(code="bad_observation", message=str(exc))

    def _session(self, client: str, observation: Observation) -> Session:
        problem = observation_problem(self.policy, observation)
        if problem is not None:
            raise ValueError(problem)
        session = self.sessions.get(client)
        if session is None:
            from policies.diffusion.sampler import RTIState

            m = self.policy.manifest
            seed = [self.config.seed, zlib.crc32(client.encode())]
            session = Session(
                EpisodeHistory(self.policy.obs_horizon, tuple(getattr(self.policy, "cameras", ()))),
                RTIState(m.discrete_dims, m.discrete_factor if m.rti_clip else None),
                np.random.default_rng(seed),
            )
            self.sessions[client] = session
            self.counters["sessions"] += 1
        session.last_seen = time.monotonic()
        return session

    def _predict(self, session: Session, observation: Observation) -> ActionChunk:
        # One policy (its onnxruntime sessions), many robots: lend it this robot's state.
        policy = self.policy
        policy.rti, policy.rng = session.rti, session.rng
        if session.history.add(observation):
            session.rti.reset()
            session.predicted_step = -1
        shift = observation.step - session.predicted_step
        cold = session.predicted_step < 0 or shift <= 0 or shift > policy.pred_horizon
        if cold:
            session.rti.reset()
            self.counters["cold_starts"] += 1
        policy.executed = max(1, shift)
        began = time.perf_counter()
        actions = policy.infer(*session.history.window())
        if not cold:
            self.latencies_ms.append((time.perf_counter() - began) * 1e3)
        session.predicted_step = observation.step
        return ActionChunk(
            actions=actions[policy.obs_horizon - 1 :],
            t_first=observation.t_capture,
            dt=self.config.dt,
            first_index=observation.step,
            episode=observation.episode,
        )

    def _drop_silent_sessions(self) -> None:
        now = time.monotonic()
        for client in [c for c, s in self.sessions.items()
                       if now - s.last_seen > self.config.session_timeout]:  # fmt: skip
            del self.sessions[client]
            self.counters["sessions_timed_out"] += 1
            log.info("serve: session %r dropped after %.0f s of silence", client,
                     self.config.session_timeout)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, ServeConfig, positional="policy")


def main_from_args(args: argparse.Namespace) -> int:
    return run_from_args("serve", ServeConfig, PolicyServer, args)
