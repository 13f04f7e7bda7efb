"""Executing timestamped action chunks: which action is due now, from overlapping chunks.

A chunk's action i is due during [t_first + i·dt, t_first + (i+1)·dt) in the clock of
the chunk's timestamps; `clock_offset` (that clock minus ours, from
streams.Client.estimate_clock) maps it to ours. Chunks from warmloop's policy node are
stamped with the capture time of the observation they answer, so for them the offset
is 0 whichever machine the policy runs on.

Several recent chunks may cover the current tick. Merge strategies:
  latest    the newest chunk's action (Diffusion Policy's receding horizon)
  average   a recency-weighted mean: weight 2^-k for the k-th newest chunk
  ensemble  ACT's temporal ensembling: weight exp(−m·k) for the k-th *oldest* chunk,
            so earlier predictions weigh more and the motion stays smooth
Discrete dimensions (a gripper command) are never averaged: they come from the newest
chunk. An action that is already past when its chunk arrives is never executed.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streams import ActionChunk

STRATEGIES = ("latest", "average", "ensemble")


@dataclass
class _Held:
    chunk: ActionChunk
    received_at: float


class ChunkExecutor:
    def __init__(
        self,
        strategy: str = "latest",
        staleness: float = 0.5,
        clock_offset: float = 0.0,
        discrete_dims: Sequence[int] = (),
        ensemble_decay: float = 0.01,
        keep: int = 8,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"merge strategy must be one of {STRATEGIES}, got {strategy!r}")
        if staleness <= 0:
            raise ValueError(f"staleness must be positive, got {staleness}")
        self.strategy, self.staleness, self.clock_offset = strategy, staleness, clock_offset
        self.discrete_dims = list(discrete_dims)
        self.ensemble_decay = ensemble_decay
        self.chunks: deque[_Held] = deque(maxlen=keep)
        self.counters: Counter[str] = Counter()

    def clear(self) -> None:
        """Forget every chunk (a new episode never executes the last one's plan)."""
        self.chunks.clear()

    def _index(self, chunk: ActionChunk, now: float) -> int:
        """The row due now: below 0 is not yet due, past the last is over. Clamped first,
        since a valid chunk (t_first −1e300, dt 1e-9) divides to infinity."""
        position = (now + self.clock_offset - chunk.t_first) / chunk.dt
        return int(np.floor(np.clip(position, -1, len(chunk.actions))))

    def offer(self, chunk: ActionChunk, now: float) -> None:
        self.counters["chunks"] += 1
        late = self._index(chunk, now)
        if late >= len(chunk.actions):
            self.counters["late_chunks"] += 1  # every action already past: dropped whole
            return
        self.counters["late_actions"] += max(late, 0)
        self.chunks.append(_Held(chunk, now))

    @property
    def newest_received_at(self) -> float:
        return self.chunks[-1].received_at if self.chunks else -np.inf

    def due_action(self, now: float) -> np.ndarray | None:
        """The merged action for now, or None when nothing fresh covers it (hold)."""
        if now - self.newest_received_at > self.staleness:
            return None
        candidates = []  # oldest chunk first
        for held in self.chunks:
            index = self._index(held.chunk, now)
            if 0 <= index < len(held.chunk.actions):
                candidates.append(np.asarray(held.chunk.actions[index], np.float64))
        if not candidates:
            self.counters["stale_chunks"] += 1
            return None
        return self._merge(np.stack(candidates)).astype(np.float32)

    def _merge(self, actions: np.ndarray) -> np.ndarray:
        newest = actions[-1]
        if self.strategy == "latest" or len(actions) == 1:
            return newest
        k = np.arange(len(actions))
        if self.strategy == "average":
            weights = 0.5 ** (len(actions) - 1 - k)  # newest weighs 1, the one before 1/2
        else:
            weights = np.exp(-self.ensemble_decay * k)  # oldest weighs most
        merged = (weights[:, None] * actions).sum(0) / weights.sum()
        merged[self.discrete_dims] = newest[self.discrete_dims]
        return merged
