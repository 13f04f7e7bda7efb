"""Freezing the actions a late chunk cannot change: prefix replacement and RTC guidance.

Under inference delay d, a chunk predicted from the observation at tick t becomes
executable at t + d: the actions for t ... t + d − 1 are already committed from the
previous chunk. Both methods here make the new chunk agree with them. `known` is the
previous chunk shifted by the ticks between the two predictions (exactly RTI's guess),
so its row i is the action the previous chunk planned for the same tick as the new row i.

replace   at every denoising step, overwrite the first `frozen` rows of the sample with
          `known` brought to the step's noise level (RePaint-style); the final sample
          holds `known` exactly there. No gradient, so it runs with onnxruntime too.
guide     Real-Time Chunking (Black, Galliker, Levine 2025) for a DDPM/DDIM ε-network:
          ΠGDM guidance towards `known` with RTC's soft mask (`soft_mask`). With
          x̂0 = (x_t − √(1−ᾱ_t)·ε)/√ᾱ_t, r_t² = 1 − ᾱ_t and W the mask,
              ∇ log p(known | x_t) ≈ (∂x̂0/∂x_t)ᵀ W (known − x̂0) / r_t²
          and since ε = −√(1−ᾱ_t)·score, the guided noise prediction is
              ε' = ε − c_t · (∂x̂0/∂x_t)ᵀ W (known − x̂0),  c_t = min(β, 1/√(1−ᾱ_t))
          c_t is ΠGDM's weight 1 clipped at β, as RTC clips its guidance weight; β = 0 is
          plain sampling. The vector-Jacobian product needs autograd: torch only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

INPAINT_MODES = ("none", "replace", "guide")
DEFAULT_BETA = 5.0  # RTC's guidance weight clip

Array = Any


def soft_mask(horizon: int, frozen: int, overlap_end: int) -> np.ndarray:
    """RTC's weights over a chunk: 1 on the first `frozen` rows, then decaying
    exponentially to 0 at `overlap_end` (where the previous chunk's plan ends), 0 after.

    Row i in [frozen, overlap_end): c·(e^c − 1)/(e − 1) with c = (end − i)/(end − frozen + 1).
    """
    if not 0 <= frozen <= horizon or not 0 <= overlap_end <= horizon:
        raise ValueError(f"need 0 <= frozen, overlap_end <= {horizon}, got {frozen}, {overlap_end}")
    weights = np.zeros(horizon, np.float32)
    weights[:frozen] = 1.0
    for i in range(frozen, overlap_end):
        c = (overlap_end - i) / (overlap_end - frozen + 1)
        weights[i] = c * math.expm1(c) / math.expm1(1.0)
    return weights


@dataclass
class Inpainting:
    """What one batch of warm predictions must agree with, and how.

    known: (B, H, A) in the network's normalised units; frozen: rows held fixed;
    weights: (H,) RTC soft mask (guide); beta: guidance clip; noised: whether the
    chain's state carries noise at level t (False for RTI's "state" warm start, whose
    state is the clean guess itself, so replacement writes `known` unnoised).
    """

    known: Array
    frozen: int
    mode: str = "replace"
    weights: Array | None = None
    beta: float = DEFAULT_BETA
    noised: bool = True

    def __post_init__(self) -> None:
        if self.mode not in INPAINT_MODES[1:]:
            raise ValueError(
                f"inpainting mode must be one of {INPAINT_MODES[1:]}, got {self.mode!r}"
            )
        if self.mode == "guide" and self.weights is None:
            raise ValueError("guidance needs the soft-mask weights")
        if self.beta < 0:
            raise ValueError(f"beta must be at least 0, got {self.beta}")

    def replace(self, schedule, x: Array, t: int, noise) -> Array:
        """x with its frozen rows set to `known` at noise level t (t < 0: clean)."""
        if self.mode != "replace" or self.frozen == 0:
            return x
        out = x.copy() if isinstance(x, np.ndarray) else x.clone()
        prefix = self.known[:, : self.frozen]
        if self.noised and t >= 0:
            prefix = schedule.add_noise(prefix, noise()[:, : self.frozen], t)
        out[:, : self.frozen] = prefix
        return out

    def eps_fn(self, eps_fn, schedule):
        """The noise prediction to sample with: guided under "guide", else unchanged."""
        if self.mode != "guide":
            return eps_fn

        def guided(x: Array, t: int) -> Array:
            return guided_eps(eps_fn, schedule, x, t, self.known, self.weights, self.beta)

        return guided


def guided_eps(eps_fn, schedule, x, t: int, known, weights, beta: float):
    """ε' of the module doc: ΠGDM guidance towards `known` under the mask, clipped at β."""
    import torch

    alpha_bar = schedule.alpha_bar(t)
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        eps = eps_fn(x_in, t)
        x0 = (x_in - math.sqrt(1.0 - alpha_bar) * eps) / math.sqrt(alpha_bar)
        error = (known - x0) * torch.as_tensor(weights, dtype=x0.dtype)[None, :, None]
        (pull,) = torch.autograd.grad(x0, x_in, grad_outputs=error.detach())
    weight = min(beta, 1.0 / math.sqrt(max(1.0 - alpha_bar, 1e-12)))
    return eps.detach() - weight * pull
