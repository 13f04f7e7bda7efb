"""The policy node: observations in, timestamped action chunks out, over ZeroMQ.

Consumes (connects to the sim's publisher at --observations):
  observation  Observation, queued: every one enters the history
Publishes (binds --publish):
  action       ActionChunk
  heartbeat    Heartbeat, once a second: predictions, latency, actions per prediction

Each prediction answers the newest observation, step s, with the To observations up to
it. The chunk sent starts at the action for step s, due at t_capture(s) in the clock of
the observation, and action i is due i·dt later, so an answer that arrives late has its
past actions skipped by the sim (latency compensation).

RTI mode: when inference is faster than a control period, every observation gets a
prediction and the sim executes one action of each. When it is slower, observations
pile up between predictions; the sim has executed (s − s_previous) actions of the last
chunk, RTI shifts its warm-start guess by as many, and the node reports the mean as
`actions_per_prediction`: the graceful fall-back to executing several per prediction.

--chunking says how consecutive chunks relate (docs/realtime.md has the measured choice):
  rti          warm-start each prediction from the previous chunk (the default sampler
               is rti);
  rtc-replace  freeze the rows the sim executes while the prediction runs to the
               previous chunk's plan (prefix replacement; DDIM by default, or RTI with
               --sampler rti): the history rows plus the delay in ticks, measured as the
               node's newest latency over --dt, rounded up;
  naive        independent chunks (DDIM by default); the sim switches on arrival
               (its --merge latest);
  ensemble     independent chunks, blended by the sim (it must run --merge ensemble).

A bad observation (NaN, wrong length) is logged, counted and skipped; the node goes on.
The node itself never imports torch: `--backend onnx` runs on numpy and onnxruntime.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from policies.images import check_frame
from runtime.node import Node, NodeType, node_main, run_from_args
from streams import ActionChunk, Observation, Publisher, Subscriber, parse_endpoint, parse_qos

log = logging.getLogger(__name__)
BACKENDS = ("onnx", "torch")
SAMPLERS = ("rti", "ddpm", "ddim")
# How consecutive chunks relate, and each one's sampler unless --sampler says otherwise.
CHUNKINGS = {"rti": "rti", "rtc-replace": "ddim", "naive": "ddim", "ensemble": "ddim"}


@dataclass
class PolicyNodeConfig:
    policy: Path = field(
        default=Path("checkpoints/pickplace"),
        metadata={"help": "a checkpoint (torch backend) or a `warmloop export` directory (onnx)"},
    )
    backend: str = "onnx"
    observations: str = "tcp://127.0.0.1:5560"  # the sim's publisher, connected to
    publish: str = "tcp://127.0.0.1:5561"  # bound: chunks and heartbeats
    observation_qos: str = "queue(256)"
    dt: float = 0.1  # the sim's control period (scaled, when the sim runs faster)
    chunking: str = field(default="rti", metadata={"help": f"one of {tuple(CHUNKINGS)}"})
    sampler: str = field(
        default="", metadata={"help": f"one of {SAMPLERS}; default: the chunking's"}
    )
    seed: int = 0
    threads: int = 1  # the network's CPU threads (torch or onnxruntime): one per process
    providers: str = field(
        default="",
        metadata={
            "help": "onnxruntime execution providers in order, e.g. `cuda,cpu` or "
            "`tensorrt,cuda,cpu` (default: every one usable here, GPU first)"
        },
    )
    summary: str = ""  # write a JSON summary here at the end

    def __post_init__(self) -> None:
        self.policy = Path(self.policy)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.dt <= 0:
            raise ValueError(f"dt must be positive, got {self.dt}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.chunking not in CHUNKINGS:
            raise ValueError(f"chunking must be one of {tuple(CHUNKINGS)}, got {self.chunking!r}")
        self.sampler = self.sampler or CHUNKINGS[self.chunking]
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.chunking == "rtc-replace" and self.sampler == "ddpm":
            raise ValueError("chunking rtc-replace needs sampler ddim or rti, got ddpm")
        parse_qos(self.observation_qos)
        if self.providers and self.backend != "onnx":
            raise ValueError("providers are onnxruntime's: give them with backend onnx only")
        self._check_policy_exists()

    def _check_policy_exists(self) -> None:
        marker = "manifest.json" if self.backend == "onnx" else "config.json"
        if (self.policy / marker).is_file():
            return
        if self.backend == "onnx":
            raise ValueError(
                f"policy {self.policy}: no export there; make one with `warmloop export "
                f"checkpoints/pickplace --out {self.policy}` (`warmloop demo manipulation` "
                "does it for runs/manipulation/exported)"
            )
        raise ValueError(f"policy {self.policy}: no checkpoint there (no config.json)")


def load_policy(config: PolicyNodeConfig):
    inpaint = "replace" if config.chunking == "rtc-replace" else "none"
    if config.backend == "onnx":
        from policies.deploy.runtime import OnnxPolicy, parse_providers

        return OnnxPolicy(
            config.policy,
            config.sampler,
            seed=config.seed,
            threads=config.threads,
            providers=parse_providers(config.providers),
            inpaint=inpaint,
        )
    from policies.diffusion.policy import DiffusionPolicy
    from training.threads import INFERENCE, set_threads

    set_threads(config.threads, INFERENCE)
    return DiffusionPolicy(config.policy, config.sampler, seed=config.seed, inpaint=inpaint)


def _description(policy, config: PolicyNodeConfig) -> str:
    chunking = f"; chunking {config.chunking}" + (
        " (the sim must run --merge ensemble)" if config.chunking == "ensemble" else ""
    )
    if config.backend == "onnx" and hasattr(policy, "manifest"):
        from policies.deploy.runtime import describe

        return describe(policy) + chunking
    return f"{config.backend} backend, {config.threads} thread(s){chunking}"


def latency_figures(latencies_ms) -> dict[str, float]:
    """p50 and p99 of the warm predictions' latencies (ms), as heartbeats report them."""
    latencies = np.asarray(latencies_ms)
    return {
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p99_ms": float(np.percentile(latencies, 99)),
    }


def observation_problem(policy, observation: Observation) -> str | None:
    """Why `observation` must not enter the policy's history, or None when it may.

    Checked before the history takes it in: a bad state kept there would spoil the next
    To predictions. A finite state can still normalise to infinity (3.4e38)."""
    state = observation.state
    if state.shape != (policy.obs_dim,):
        return f"state has shape {state.shape}, the policy takes ({policy.obs_dim},)"
    if observation.step < 0 or observation.episode < 0:
        return f"step and episode must be >= 0, got {observation.step}, {observation.episode}"
    if not np.isfinite(state).all():
        return "state holds NaN or infinity"
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(policy.obs_normalizer.normalize(state)).all():
            return "state normalises to infinity: far outside the trained range"
    for camera in getattr(policy, "cameras", ()):
        if camera not in observation.images:
            return f"no image of camera {camera!r} (the policy sees {list(policy.cameras)})"
        problem = check_frame(observation.images[camera], camera, policy.image_size)
        if problem:
            return problem
    return None


@dataclass
class EpisodeHistory:
    """The last To observations of the current episode, oldest first (and the frames of
    `cameras`, for an image policy)."""

    horizon: int
    cameras: tuple[str, ...] = ()
    episode: int = -1
    last_step: int = -1
    states: deque = field(default_factory=deque)
    frames: deque = field(default_factory=deque)  # {camera: (H, W, 3) uint8} per step

    def add(self, observation: Observation) -> bool:
        """Take an observation in; True when it starts a new episode."""
        new = observation.episode != self.episode or observation.step < self.last_step
        frames = {c: observation.images[c] for c in self.cameras}
        if new:
            self.states = deque([observation.state] * self.horizon, maxlen=self.horizon)
            self.frames = deque([frames] * self.horizon, maxlen=self.horizon)
            self.episode = observation.episode
        else:
            self.states.append(observation.state)
            self.frames.append(frames)
        self.last_step = observation.step
        return new

    def window(self) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
        """(To, D) states and {camera: (To, H, W, 3)} frames: `Policy.infer`'s arguments."""
        states = np.stack(self.states)
        if not self.cameras:
            return states, None
        return states, {c: np.stack([f[c] for f in self.frames]) for c in self.cameras}


class PolicyNode(Node):
    name = "policy"

    def __init__(self, config: PolicyNodeConfig, policy=None):
        super().__init__()
        self.config = config
        self.policy = policy
        self.latencies_ms: deque[float] = deque(maxlen=10_000)  # warm predictions only
        self.shifts: deque[int] = deque(maxlen=10_000)
        self._newest: Observation | None = None
        self._predicted_step = -1
        self._last_latency_s = 0.0  # of the newest prediction: rtc-replace's delay
        self.handlers = {Observation: self._on_observation}

    def configure(self) -> None:
        if self.policy is None:
            self.policy = load_policy(self.config)
        self.history = EpisodeHistory(
            self.policy.obs_horizon, tuple(getattr(self.policy, "cameras", ()))
        )
        self.subscriber = Subscriber(
            parse_endpoint(self.config.observations, bind=False),
            {"observation": parse_qos(self.config.observation_qos)},
        )
        self.publisher = Publisher(parse_endpoint(self.config.publish, bind=True), source="policy")
        log.info("policy: %s", _description(self.policy, self.config))

    def shutdown(self) -> None:
        self.close("subscriber", "publisher")
        figures = self.status()
        latency = (
            f"warm latency p50 {figures['latency_p50_ms']:.2f} ms, "
            f"p99 {figures['latency_p99_ms']:.2f} ms"
            if figures
            else "no warm prediction"
        )
        log.info(
            "policy: %d predictions (%d cold starts), %s; %d bad observations",
            self.counters["predictions"],
            self.counters["cold_starts"],
            latency,
            self.counters["bad_observations"],
        )

    def loop(self) -> None:
        while not self.stopping:
            self._newest = None
            # Every queued observation enters the history; the newest gets a prediction.
            received = self.subscriber.recv("observation", timeout=0.1)
            while self.dispatch(received):
                received = self.subscriber.recv("observation", timeout=0)
            if self._newest is not None:
                self._predict(self._newest)
            self.counters["decode_errors"] = self.subscriber.stats.decode_errors
            self.heartbeat()

    def status(self) -> dict[str, float]:
        if not self.latencies_ms:
            return {}
        return {
            **latency_figures(self.latencies_ms),
            "actions_per_prediction": float(np.mean(self.shifts)),
        }

    def _on_observation(self, observation: Observation) -> None:
        problem = observation_problem(self.policy, observation)
        if problem is not None:
            # Kept out of the history, where it would spoil the next To predictions.
            self.counters["bad_observations"] += 1
            self.warnings.warning(
                "bad observations", "observation %d skipped: %s", observation.step, problem
            )
            return
        self._newest = observation
        if self.history.add(observation):
            self.policy.reset()
            self._predicted_step = -1

    def _predict(self, observation: Observation) -> None:
        shift = observation.step - self._predicted_step
        cold = self._predicted_step < 0 or shift > self.policy.pred_horizon
        if cold:
            self.policy.reset()  # nothing to warm-start from
            self.counters["cold_starts"] += 1
        elif hasattr(self.policy, "executed"):
            self.policy.executed = max(1, shift)
        if self.config.chunking == "rtc-replace":
            self.policy.frozen = self._frozen_rows()
        began = time.perf_counter()
        try:
            actions = self.policy.infer(*self.history.window())
        except ValueError as exc:
            self.counters["bad_observations"] += 1
            self.warnings.warning(
                "bad observations", "observation %d skipped: %s", observation.step, exc
            )
            return
        self._last_latency_s = time.perf_counter() - began
        if not cold:
            self.latencies_ms.append(self._last_latency_s * 1e3)
            self.shifts.append(max(1, shift))
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

    def _frozen_rows(self) -> int:
        """Rows of the next chunk the sim will have executed by the time it arrives: the
        history's To − 1, plus the delay in ticks (the newest latency over dt, rounded
        up), within what the horizon less the executed actions allows."""
        delay = math.ceil(self._last_latency_s / self.config.dt - 1e-9)
        most = self.policy.pred_horizon - self.policy.executed
        return min(most, self.policy.obs_horizon - 1 + delay)


POLICY_NODE = NodeType(
    PolicyNodeConfig,
    binds=frozenset({"publish"}),
    connects=frozenset({"observations"}),
    qos={"observation_qos": "observation"},
    positional="policy",
)
NODE_TYPES = {
    "policy_onnx": replace(POLICY_NODE, fixed={"backend": "onnx"}),
    "policy_torch": replace(POLICY_NODE, fixed={"backend": "torch"}),
}


def add_deploy_arguments(parser: argparse.ArgumentParser) -> None:
    """`warmloop deploy`: the node's flags but --backend, which is always onnx."""
    NODE_TYPES["policy_onnx"].add_arguments(parser, with_fixed=False)


def deploy_main(args: argparse.Namespace) -> int:
    args.backend = "onnx"
    return run_from_args("deploy", PolicyNodeConfig, PolicyNode, args)


def main(argv: list[str] | None = None) -> int:
    return node_main(argv, "python -m policies.node", __doc__, POLICY_NODE, PolicyNode)


if __name__ == "__main__":
    raise SystemExit(main())
