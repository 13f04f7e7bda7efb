"""Training data for a diffusion policy: normalisation and observation/action windows.

Horizons (Diffusion Policy's alignment), with To = 2, Tp = 16, Ta = 8:

    step           i−1   i    i+1  ...  i+6  i+7  i+8  ...  i+14
    observations   o    [o]                                          To = 2, ending now
    predicted      a     a    a    ...  a    a    a    ...  a        Tp = 16, from i−To+1
    executed             a    a    ...  a    a                       Ta = 8: indices
                                                                     [To−1, To−1+Ta)

Windows that reach before the episode repeat its first step; windows that reach past
its end repeat its last, so every step of every episode is a training sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Normalizer:
    """Min/max scaling of each dimension to [−1, 1].

    Discrete dimensions are further divided by `discrete_factor` (RTI's "scale" method),
    so that a warm start from a stale gripper command barely biases the next prediction.
    """

    low: np.ndarray
    high: np.ndarray
    discrete_dims: tuple[int, ...] = ()
    discrete_factor: float = 1.0

    @classmethod
    def fit(
        cls, data: np.ndarray, discrete_dims: Sequence[int] = (), discrete_factor: float = 1.0
    ) -> Normalizer:
        flat = np.asarray(data, np.float64).reshape(-1, data.shape[-1])
        if not np.isfinite(flat).all():
            raise ValueError("cannot fit a normalizer to data with NaN or infinity")
        return cls(flat.min(0), flat.max(0), tuple(discrete_dims), float(discrete_factor))

    def _span(self) -> np.ndarray:
        span = self.high - self.low
        return np.where(span > 1e-8, span, 1.0)  # a constant dimension maps to −1

    def _gain(self) -> np.ndarray:
        gain = np.ones_like(self.low)
        gain[list(self.discrete_dims)] = 1.0 / self.discrete_factor
        return gain

    def normalize(self, x: np.ndarray) -> np.ndarray:
        unit = 2.0 * (x - self.low) / self._span() - 1.0
        return (unit * self._gain()).astype(np.float32)

    def unnormalize(self, y: np.ndarray) -> np.ndarray:
        unit = np.asarray(y, np.float64) / self._gain()
        return ((unit + 1.0) / 2.0 * self._span() + self.low).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "discrete_dims": list(self.discrete_dims),
            "discrete_factor": self.discrete_factor,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Normalizer:
        low, high = np.asarray(data["low"], np.float64), np.asarray(data["high"], np.float64)
        if low.shape != high.shape or low.ndim != 1:
            raise ValueError(f"normalizer low/high shapes disagree: {low.shape}, {high.shape}")
        return cls(low, high, tuple(data["discrete_dims"]), float(data["discrete_factor"]))


def windows(
    observations: Sequence[np.ndarray],
    actions: Sequence[np.ndarray],
    obs_horizon: int,
    pred_horizon: int,
) -> tuple[np.ndarray, np.ndarray]:
    """All (To observation, Tp action) windows of the episodes, padded at both ends.

    Returns obs (N, To, D) and actions (N, Tp, A) with N the total number of steps.
    """
    for obs, act in zip(observations, actions, strict=True):
        if len(act) == 0 or len(obs) != len(act):
            raise ValueError(f"episode has {len(obs)} observations and {len(act)} actions")
    obs_index, act_index = window_indices([len(a) for a in actions], obs_horizon, pred_horizon)
    return np.concatenate(observations)[obs_index], np.concatenate(actions)[act_index]


def window_indices(
    lengths: Sequence[int], obs_horizon: int, pred_horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers, into the episodes laid end to end, of every window: (N, To), (N, Tp).

    Image policies gather their frames by these rather than copying each frame To times.
    """
    if obs_horizon < 1 or pred_horizon < obs_horizon:
        raise ValueError(f"need 1 <= To <= Tp, got To={obs_horizon}, Tp={pred_horizon}")
    obs_out, act_out, first = [], [], 0
    for length in lengths:
        if length < 1:
            raise ValueError("an episode has no steps")
        steps = np.arange(length)[:, None]
        obs_index = np.clip(steps + np.arange(-obs_horizon + 1, 1), 0, length - 1)
        act_index = np.clip(
            steps + np.arange(-obs_horizon + 1, pred_horizon - obs_horizon + 1), 0, length - 1
        )
        obs_out.append(first + obs_index)
        act_out.append(first + act_index)
        first += length
    return np.concatenate(obs_out), np.concatenate(act_out)


def executed_slice(obs_horizon: int, action_horizon: int) -> slice:
    """The actions of a predicted chunk that are executed: [To−1, To−1+Ta)."""
    return slice(obs_horizon - 1, obs_horizon - 1 + action_horizon)
