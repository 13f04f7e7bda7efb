"""DDPM and DDIM noise schedules, written once for numpy and torch alike.

The constants are numpy float64 arrays; the update rules use only arithmetic, scalar
coefficients and `.clip`, which numpy arrays and torch tensors share, so torch training,
torch inference and the torch-free ONNX runtime run the very same code.

Notation (Ho et al. 2020): ᾱ_t = Π_{s≤t} α_s, α_t = 1 − β_t; t runs 0 … K−1, and
"t = −1" means the clean sample (ᾱ_{−1} = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Array = Any  # a numpy array or a torch tensor


def squared_cosine_betas(steps: int, max_beta: float = 0.999) -> np.ndarray:
    """The "squaredcos_cap_v2" schedule: ᾱ(s) = cos²((s + 0.008) / 1.008 · π/2)."""

    def alpha_bar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array(
        [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)]
    )


@dataclass(frozen=True)
class NoiseSchedule:
    """Training and sampling constants for K = `train_steps` diffusion steps."""

    train_steps: int = 100
    clip_sample: float = 1.0  # predicted clean samples are clipped to ±this
    betas: np.ndarray = field(init=False, repr=False)
    alphas_cumprod: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.train_steps < 2:
            raise ValueError(f"train_steps must be at least 2, got {self.train_steps}")
        betas = squared_cosine_betas(self.train_steps)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas_cumprod", np.cumprod(1.0 - betas))

    def alpha_bar(self, t: int) -> float:
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    # ---- forward process ---------------------------------------------------------
    def add_noise(self, x0: Array, noise: Array, t: int) -> Array:
        """Sample q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) with the given noise."""
        ab = self.alpha_bar(t)
        return math.sqrt(ab) * x0 + math.sqrt(1.0 - ab) * noise

    def predict_x0(self, x_t: Array, eps: Array, t: int) -> Array:
        """The clean sample implied by an epsilon prediction, clipped."""
        ab = self.alpha_bar(t)
        x0 = (x_t - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)
        return x0.clip(-self.clip_sample, self.clip_sample) if self.clip_sample else x0

    # ---- DDPM ----------------------------------------------------------------------
    def posterior(self, t: int) -> tuple[float, float, float]:
        """q(x_{t−1} | x_t, x_0): coefficients of x_0 and x_t in the mean, and variance.

        The variance is "fixed_small", β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t).
        """
        ab_t, ab_prev = self.alpha_bar(t), self.alpha_bar(t - 1)
        beta = float(self.betas[t])
        coef_x0 = beta * math.sqrt(ab_prev) / (1.0 - ab_t)
        coef_xt = (1.0 - ab_prev) * math.sqrt(1.0 - beta) / (1.0 - ab_t)
        variance = beta * (1.0 - ab_prev) / (1.0 - ab_t)
        return coef_x0, coef_xt, variance

    def ddpm_step(self, x_t: Array, eps: Array, t: int, noise: Array) -> Array:
        """One stochastic reverse step x_t → x_{t−1}. `noise` ~ N(0, I), unused at t = 0."""
        coef_x0, coef_xt, variance = self.posterior(t)
        mean = coef_x0 * self.predict_x0(x_t, eps, t) + coef_xt * x_t
        return mean + math.sqrt(variance) * noise if t > 0 else mean

    # ---- DDIM ----------------------------------------------------------------------
    def ddim_timesteps(self, steps: int) -> list[int]:
        """`steps` evenly spaced training steps, from high noise down to 0."""
        if not 1 <= steps <= self.train_steps:
            raise ValueError(f"DDIM steps must be in 1..{self.train_steps}, got {steps}")
        stride = self.train_steps // steps
        return [t * stride for t in range(steps)][::-1]

    def ddim_step(
        self,
        x_t: Array,
        eps: Array,
        t: int,
        t_prev: int,
        eta: float = 0.0,
        noise: Array | None = None,
    ) -> Array:
        """x_t → x_{t_prev} (t_prev < t; −1 for the clean sample), Song et al. 2021, eq. 12.

        The epsilon is re-derived from the clipped x_0 so that clipping stays consistent.
        """
        ab_t, ab_prev = self.alpha_bar(t), self.alpha_bar(t_prev)
        x0 = self.predict_x0(x_t, eps, t)
        eps = (x_t - math.sqrt(ab_t) * x0) / math.sqrt(1.0 - ab_t)
        sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab_t)) * math.sqrt(1 - ab_t / ab_prev)
        direction = math.sqrt(max(1.0 - ab_prev - sigma**2, 0.0)) * eps
        x_prev = math.sqrt(ab_prev) * x0 + direction
        if sigma > 0:
            if noise is None:
                raise ValueError("DDIM with eta > 0 needs noise")
            x_prev = x_prev + sigma * noise
        return x_prev
