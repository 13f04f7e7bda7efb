"""The torch diffusion policy: full DDPM, DDIM, or RTI warm-started sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from policies.diffusion import checkpoint as ckpt
from policies.diffusion.configuration import SAMPLERS
from policies.diffusion.sampler import RTIState, rti_update, sample_ddim, sample_ddpm
from policies.diffusion.scheduler import NoiseSchedule
from policies.diffusion.training import build_network


class DiffusionPolicy:
    """Implements policies.interface.Policy with a checkpoint's EMA network.

    sampler: "ddpm" (all K steps), "ddim" (`ddim_steps`), or "rti": the first call of an
    episode denoises fully with DDPM, later calls warm-start from the previous chunk
    shifted by `executed` actions and denoise K'+1 steps.
    """

    def __init__(
        self,
        checkpoint: ckpt.Checkpoint | Path | str,
        sampler: str = "rti",
        ddim_steps: int = 10,
        k_prime: int | None = None,
        executed: int = 1,
        seed: int = 0,
        device: str = "cpu",
    ):
        if not isinstance(checkpoint, ckpt.Checkpoint):
            checkpoint = ckpt.load(Path(checkpoint))
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        config = checkpoint.config
        self.config, self.sampler, self.ddim_steps = config, sampler, ddim_steps
        self.k_prime = config.rti_k_prime if k_prime is None else k_prime
        if not 0 <= self.k_prime < config.train_steps:
            raise ValueError(f"k_prime must be in 0..{config.train_steps - 1}, got {k_prime}")
        if not 1 <= executed <= config.pred_horizon:
            raise ValueError(f"executed must be in 1..{config.pred_horizon}, got {executed}")
        self.executed = executed
        self.obs_horizon, self.pred_horizon = config.obs_horizon, config.pred_horizon
        self.obs_dim = config.obs_dim
        self.obs_normalizer = checkpoint.obs_normalizer
        self.action_normalizer = checkpoint.action_normalizer
        self.network = build_network(config).to(device).eval()
        ckpt.load_into(self.network, checkpoint.model_state, Path("model.safetensors"))
        self.schedule = NoiseSchedule(config.train_steps)
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.rti = RTIState(
            config.discrete_dims, config.discrete_factor if config.rti_clip else None
        )
        self.network_calls = 0

    def reset(self) -> None:
        self.rti.reset()

    def infer(self, observations: np.ndarray) -> np.ndarray:
        chunk = self.predict_normalized(observations)
        actions = self.action_normalizer.unnormalize(chunk[0].cpu().numpy())
        for d in self.config.discrete_dims:
            actions[:, d] = np.where(actions[:, d] > 0, 1.0, -1.0)
        return actions

    @torch.no_grad()
    def predict_normalized(self, observations: np.ndarray) -> torch.Tensor:
        """(To, D) observations -> (1, Tp, A) chunk in the network's normalised units."""
        expected = (self.obs_horizon, self.config.obs_dim)
        observations = np.asarray(observations, np.float32)
        if observations.shape != expected:
            raise ValueError(f"observations must have shape {expected}, got {observations.shape}")
        if not np.isfinite(observations).all():
            raise ValueError("observations contain NaN or infinity")
        cond = torch.from_numpy(self.obs_normalizer.normalize(observations).reshape(1, -1))
        cond = cond.to(self.device)

        def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
            self.network_calls += 1
            return self.network(x, torch.full((x.shape[0],), t, device=self.device), cond)

        shape = (1, self.pred_horizon, self.config.action_dim)

        def noise() -> torch.Tensor:
            return torch.randn(shape, generator=self.generator, device=self.device)

        if self.sampler == "ddim":
            chunk = sample_ddim(
                eps_fn, self.schedule, noise(), self.schedule.ddim_timesteps(self.ddim_steps)
            )
        elif self.sampler == "rti" and self.rti.warm:
            chunk = rti_update(
                eps_fn,
                self.schedule,
                self.rti.guess,
                self.executed,
                self.k_prime,
                noise,
                self.config.rti_mode,
            )
        else:
            chunk = sample_ddpm(eps_fn, self.schedule, noise(), noise)
        if self.sampler == "rti":
            self.rti.store(chunk)
        return chunk
