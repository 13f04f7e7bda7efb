"""How predicted chunks become executed actions in a lockstep evaluation, under delay.

A real robot keeps acting while the policy thinks. The model here is deterministic:

    tick        t          t+1  ...  t+d−1   t+d  ...  t+d+s−1
    executes    previous chunk's plan         the new chunk's rows start+d ...
    predicts    from observation t; the chunk becomes executable at t + d

One inference runs at a time, so a new one starts every s ≥ d ticks (s: actions
executed per prediction; `start` = obs_horizon − 1 is the chunk row for tick t). With
jitter j, each chunk arrives after d + U{0..j} ticks, and predictions start when d + j
planned actions remain, so the robot never runs dry. The first prediction of an
episode has no delay: the robot waits at rest for it, as a robot does at start-up.

Merges: "latest" (each chunk replaces the plan from its arrival: naive async, and
every inpainting method) or "ensemble" (ACT's temporal ensembling over every chunk that
covers the tick, weight exp(−m·k) for the k-th oldest; discrete dimensions from the
newest), as runtime/chunks.py's ChunkExecutor does in the real runtime.

Each plan also keeps what smoothness figures need: the executed actions and, at the
first tick a new chunk plays, the jump from the action before it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from policies.diffusion.inpainting import DEFAULT_BETA, INPAINT_MODES

MERGES = ("latest", "ensemble")
ENSEMBLE_DECAY = 0.01  # ACT's m


def check_timing(delay: int, jitter: int, executed: int, start: int, horizon: int) -> None:
    """Raise ValueError unless a chunk of `horizon` rows covers a delayed cadence."""
    if delay < 0 or jitter < 0:
        raise ValueError(f"delay and jitter must be at least 0, got {delay} and {jitter}")
    if executed < delay + jitter:
        raise ValueError(
            f"executing {executed} actions per prediction under a delay of up to "
            f"{delay + jitter} ticks would run two inferences at once: execute at least "
            f"{delay + jitter}"
        )
    if start + delay + jitter + executed > horizon:
        raise ValueError(
            f"a {horizon}-action chunk cannot cover delay {delay} + jitter {jitter} + "
            f"{executed} executed actions after its {start} history rows"
        )


@dataclass
class ChunkPlan:
    """The actions planned for the coming ticks of one episode, and how they played."""

    delay: int = 0
    jitter: int = 0
    executed: int = 1  # s: ticks between predictions
    merge: str = "latest"
    discrete_dims: Sequence[int] = ()
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    tick: int = 0
    next_prediction: int = 0
    planned: dict[int, list[np.ndarray]] = field(default_factory=dict)
    arrivals: set[int] = field(default_factory=set)  # ticks where a new chunk first plays
    played: list[np.ndarray] = field(default_factory=list)
    jumps: list[float] = field(default_factory=list)  # at arrivals, continuous dims

    def __post_init__(self) -> None:
        if self.merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {self.merge!r}")

    @property
    def lookahead(self) -> int:
        return self.delay + self.jitter

    def needs_prediction(self) -> bool:
        return self.tick >= self.next_prediction

    def receive(self, chunk: np.ndarray, start: int) -> None:
        """Plan a chunk predicted from this tick's observation (row `start` is now)."""
        first = not self.played and not self.planned
        arrival = 0 if first else self.delay + int(self.rng.integers(0, self.jitter + 1))
        for offset in range(arrival, len(chunk) - start):
            tick = self.tick + offset
            if self.merge == "latest":
                self.planned[tick] = [chunk[start + offset]]
            else:
                self.planned.setdefault(tick, []).append(chunk[start + offset])
        self.arrivals.add(self.tick + arrival)
        # The first chunk also covers the lookahead, so the cadence starts at once.
        self.next_prediction = self.tick + self.executed

    def next_action(self) -> np.ndarray:
        """The action for this tick; advances the tick."""
        candidates = np.stack(self.planned.pop(self.tick))
        action = candidates[-1].copy()
        if self.merge == "ensemble" and len(candidates) > 1:
            weights = np.exp(-ENSEMBLE_DECAY * np.arange(len(candidates)))
            action = (weights[:, None] * candidates).sum(0) / weights.sum()
            action[list(self.discrete_dims)] = candidates[-1][list(self.discrete_dims)]
        if self.tick in self.arrivals and self.played:
            step = action - self.played[-1]
            self.jumps.append(float(np.linalg.norm(self._continuous(step))))
        self.arrivals.discard(self.tick)
        self.played.append(action.astype(np.float32))
        self.tick += 1
        return self.played[-1]

    def _continuous(self, actions: np.ndarray) -> np.ndarray:
        return np.delete(actions, list(self.discrete_dims), axis=-1)

    def smoothness(self) -> dict[str, float]:
        """Mean chunk-boundary jump, mean step and mean jerk (‖Δ³a‖) of the episode."""
        played = self._continuous(np.asarray(self.played, np.float64))
        steps = np.linalg.norm(np.diff(played, axis=0), axis=-1)
        jerk = np.linalg.norm(np.diff(played, n=3, axis=0), axis=-1)
        return {
            "boundary_jump": float(np.mean(self.jumps)) if self.jumps else float("nan"),
            "mean_step": float(steps.mean()) if len(steps) else float("nan"),
            "jerk": float(jerk.mean()) if len(jerk) else float("nan"),
        }


def frozen_rows(obs_horizon: int, delay: int, jitter: int) -> int:
    """Chunk rows already committed when it arrives: the history rows and the delay."""
    return obs_horizon - 1 + delay + jitter


def add_delay_arguments(parser: argparse.ArgumentParser) -> None:
    """Inference delay and how late chunks are merged (docs/realtime.md)."""
    parser.add_argument(
        "--delay",
        type=int,
        default=0,
        help="control ticks between an observation and its chunk becoming executable; the "
        "actions meanwhile come from the previous chunk",
    )
    parser.add_argument("--jitter", type=int, default=0, help="extra delay, 0..J ticks at random")
    parser.add_argument(
        "--merge",
        choices=MERGES,
        default="latest",
        help="latest: each chunk replaces the plan when it arrives; ensemble: ACT's "
        "temporal ensembling over every chunk that covers a tick",
    )
    parser.add_argument(
        "--inpaint",
        choices=INPAINT_MODES,
        default="none",
        help="freeze the actions the delay has committed: replace (prefix replacement, "
        "onnx-capable) or guide (Real-Time Chunking's guidance, torch only)",
    )
    parser.add_argument(
        "--guidance-beta", type=float, default=DEFAULT_BETA, help="RTC's guidance weight clip"
    )
