"""Sampling loops: full DDPM, DDIM, and the Real-Time Iteration (RTI) warm start.

They take the noise network as a plain function `eps_fn(x, t) -> eps` and arrays that
are numpy arrays or torch tensors alike, so the torch policy and the torch-free ONNX
runtime share them. Every random draw is passed in (`noise(shape)`), so a run can be
reproduced bit for bit.

RTI (Real-Time Iteration Scheme for Diffusion Policy, IROS 2025), one control tick:

    previous chunk   a0 a1 a2 ... a15          (predicted last tick)
    shift by n = 1      a1 a2 ... a15 a15      (drop the executed, repeat the last)
    warm start          x_{K'} := shifted      ("state", as in the paper)
                    or  x_{K'} := √ᾱ_{K'}·shifted + √(1−ᾱ_{K'})·z   ("renoise", Diffuser)
    denoise             K', K'−1, ..., 0       K'+1 network calls instead of K

The paper denoises with stochastic DDPM steps. With DDIM the chain from K' may also be
strided: n deterministic steps spaced evenly from K' to 0 (`rti_timesteps`), n calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from policies.diffusion.configuration import rti_denoising_problem
from policies.diffusion.inpainting import Inpainting
from policies.diffusion.scheduler import NoiseSchedule

Array = Any
EpsFn = Callable[[Array, int], Array]
NoiseFn = Callable[[], Array]  # returns standard normal noise shaped like the sample


def sample_ddpm(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    x: Array,
    noise: NoiseFn,
    start: int | None = None,
    inpainting: Inpainting | None = None,
) -> Array:
    """Stochastic reverse chain from step `start` (default K−1) down to 0; with
    `inpainting`, towards a frozen prefix (policies/diffusion/inpainting.py)."""
    start = schedule.train_steps - 1 if start is None else start
    if inpainting is not None:
        eps_fn = inpainting.eps_fn(eps_fn, schedule)
    for t in range(start, -1, -1):
        x = schedule.ddpm_step(x, eps_fn(x, t), t, noise() if t > 0 else None)
        if inpainting is not None:
            x = inpainting.replace(schedule, x, t - 1, noise)
    return x


def sample_ddim(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    x: Array,
    timesteps: Sequence[int],
    eta: float = 0.0,
    noise: NoiseFn | None = None,
    inpainting: Inpainting | None = None,
) -> Array:
    """DDIM over the given descending timesteps, ending at the clean sample; with
    `inpainting` (which then needs `noise` to replace), towards a frozen prefix."""
    if inpainting is not None:
        eps_fn = inpainting.eps_fn(eps_fn, schedule)
    for t, t_prev in zip(timesteps, [*timesteps[1:], -1], strict=True):
        step_noise = noise() if eta > 0 and noise is not None else None
        x = schedule.ddim_step(x, eps_fn(x, t), t, t_prev, eta, step_noise)
        if inpainting is not None:
            x = inpainting.replace(schedule, x, t_prev, noise)
    return x


def shift_chunk(chunk: Array, executed: int) -> Array:
    """Drop the first `executed` actions along axis 1 and repeat the last to refill."""
    horizon = chunk.shape[1]
    if not 0 <= executed <= horizon:
        raise ValueError(f"executed must be in 0..{horizon}, got {executed}")
    index = np.minimum(np.arange(horizon) + executed, horizon - 1)
    return chunk[:, index]


def clip_discrete(chunk: Array, dims: Sequence[int], factor: float) -> Array:
    """RTI's "clip" method: snap discrete dims of the stored guess to ±1/factor."""
    if not dims:
        return chunk
    out = chunk.copy() if isinstance(chunk, np.ndarray) else chunk.clone()
    level = 1.0 / factor
    for d in dims:
        out[..., d] = (out[..., d] > 0) * (2 * level) - level
    return out


def warm_start(
    schedule: NoiseSchedule, guess: Array, k_prime: int, mode: str, noise: NoiseFn
) -> Array:
    """The state of the reverse chain at step K' built from the shifted guess."""
    if mode == "state":
        return guess
    if mode == "renoise":
        return schedule.add_noise(guess, noise(), k_prime)
    raise ValueError(f"warm-start mode must be 'state' or 'renoise', got {mode!r}")


def rti_timesteps(k_prime: int, steps: int = 0) -> list[int]:
    """`steps` training steps spaced evenly from K' down to 0; 0 means every one (K'+1)."""
    if k_prime < 0:
        raise ValueError(f"k_prime must be at least 0, got {k_prime}")
    if not 0 <= steps <= k_prime + 1:
        raise ValueError(f"RTI steps must be in 0..K'+1 = {k_prime + 1}, got {steps}")
    count = steps or k_prime + 1
    if count == 1:
        return [k_prime]
    # Spacing is at least 1 when count <= K'+1, so the rounded steps stay distinct.
    # Plain Python: the policy calls this on every warm update.
    return [round(k_prime * (count - 1 - i) / (count - 1)) for i in range(count)]


def rti_network_calls(k_prime: int, sampler: str = "ddpm", steps: int = 0) -> int:
    """Network calls of one warm update: K'+1 for DDPM, the DDIM step count else."""
    return len(rti_timesteps(k_prime, steps if sampler == "ddim" else 0))


def rti_update(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    previous: Array,
    executed: int,
    k_prime: int,
    noise: NoiseFn,
    mode: str = "state",
    sampler: str = "ddpm",
    steps: int = 0,
    inpainting: Inpainting | None = None,
) -> Array:
    """One RTI prediction: shift the previous chunk, warm-start at K', denoise to 0.

    sampler "ddpm" runs every step K'..0 (`steps` must be 0); "ddim" runs `steps`
    deterministic steps from K' (0: all K'+1). `inpainting` freezes the prefix that
    inference delay has already committed (its `known` is the shifted chunk).
    """
    if not 0 <= k_prime < schedule.train_steps:
        raise ValueError(f"k_prime must be in 0..{schedule.train_steps - 1}, got {k_prime}")
    problem = rti_denoising_problem(k_prime, sampler, steps)
    if problem:
        raise ValueError(f"RTI {problem[0]} ({sampler!r}, {steps} steps): {problem[1]}")
    x = warm_start(schedule, shift_chunk(previous, executed), k_prime, mode, noise)
    if sampler == "ddpm":
        return sample_ddpm(eps_fn, schedule, x, noise, start=k_prime, inpainting=inpainting)
    timesteps = rti_timesteps(k_prime, steps)
    return sample_ddim(eps_fn, schedule, x, timesteps, noise=noise, inpainting=inpainting)


class RTIState:
    """The warm-start guess across ticks of one episode. `reset()` at episode start.

    The first prediction of an episode, and the first after a reset, denoises fully;
    the reference implementation never cleared its guess between episodes.
    """

    def __init__(self, discrete_dims: Sequence[int] = (), clip_factor: float | None = None):
        self.discrete_dims = tuple(discrete_dims)
        self.clip_factor = clip_factor
        self.guess: Array | None = None
        self.predictions = 0  # stored since the episode began

    def reset(self) -> None:
        self.guess = None
        self.predictions = 0

    @property
    def warm(self) -> bool:
        return self.guess is not None

    def anchor_due(self, every: int) -> bool:
        """Whether this prediction re-anchors: every `every`th one after the first (0:
        never), a cold prediction in place of the warm update."""
        return self.warm and every > 0 and self.predictions % every == 0

    def store(self, chunk: Array) -> None:
        self.predictions += 1
        self.guess = (
            clip_discrete(chunk, self.discrete_dims, self.clip_factor)
            if self.clip_factor
            else chunk
        )
