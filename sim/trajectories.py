"""Camera trajectories for the Explore scene, as action sequences.

- `random_walk`: smooth random controls (an Ornstein-Uhlenbeck process);
- `orbit`: circle while turning, so the camera keeps looking inwards;
- `loop`: go out and come back, returning exactly to the start pose, the case where a
  world model without memory drifts.
"""

from __future__ import annotations

import numpy as np

ACTION_DIM = 5


def random_walk(rng: np.random.Generator, steps: int, smoothness: float = 0.85) -> np.ndarray:
    actions = np.zeros((steps, ACTION_DIM), np.float32)
    current = np.zeros(ACTION_DIM)
    for t in range(steps):
        current = smoothness * current + (1 - smoothness) * rng.normal(0, 1.2, ACTION_DIM)
        current[2] *= 0.3  # little vertical motion
        actions[t] = np.clip(current, -1, 1)
    return actions


def orbit(steps: int, speed: float = 0.6, turn: float = 0.6) -> np.ndarray:
    """Move right while turning left: a circle of radius speed/turn (in metres)."""
    actions = np.zeros((steps, ACTION_DIM), np.float32)
    actions[:, 1] = speed
    actions[:, 3] = turn
    return actions


def loop(rng: np.random.Generator, steps: int) -> np.ndarray:
    """Random controls for the first half, then exactly their reverse, in reverse order.

    Moves are in the camera frame, so reversing needs the turns undone in the right
    order: replaying (-a_t) from the last step back to the first returns to the start.
    The walk keeps yaw and translation in separate steps so that each step inverts.
    """
    half = steps // 2
    out = np.zeros((half, ACTION_DIM), np.float32)
    walk = random_walk(rng, half)
    for t in range(half):  # alternate: translate on even steps, turn on odd ones
        if t % 2 == 0:
            out[t, :3] = walk[t, :3]
        else:
            out[t, 3:] = walk[t, 3:] * 0.5
    back = -out[::-1]
    actions = np.concatenate([out, back])
    if len(actions) < steps:
        actions = np.concatenate([actions, np.zeros((1, ACTION_DIM), np.float32)])
    return actions


TRAJECTORIES = ("random_walk", "orbit", "loop")


def make(kind: str, rng: np.random.Generator, steps: int) -> np.ndarray:
    if kind == "random_walk":
        return random_walk(rng, steps)
    if kind == "orbit":
        return orbit(steps, speed=rng.uniform(0.4, 0.8), turn=rng.choice([-1, 1]) * 0.6)
    if kind == "loop":
        return loop(rng, steps)
    raise ValueError(f"unknown trajectory {kind!r}; choose from {TRAJECTORIES}")
