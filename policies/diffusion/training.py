"""Training a diffusion policy: epsilon prediction, AdamW, cosine warm-up, EMA, resume.

The loop, the schedules, EMA and data parallelism are training.loop's; this module
says what one step of a policy is. Under `torchrun` each rank draws its own batches,
DistributedDataParallel averages the gradients, rank 0 writes checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from policies.diffusion import checkpoint as ckpt
from policies.diffusion.configuration import DiffusionConfig
from policies.diffusion.data import Normalizer, windows
from policies.diffusion.network import ConditionalUnet1D
from policies.diffusion.scheduler import NoiseSchedule
from training import loop
from training.checkpoint import load_into

log = logging.getLogger(__name__)


def build_network(config: DiffusionConfig) -> ConditionalUnet1D:
    return ConditionalUnet1D(
        action_dim=config.action_dim,
        global_cond_dim=config.obs_horizon * config.obs_dim,
        down_dims=config.down_dims,
        step_embed_dim=config.step_embed_dim,
        kernel_size=config.kernel_size,
    )


def learning_rate(step: int, config: DiffusionConfig) -> float:
    """Linear warm-up, then cosine decay to zero at num_steps."""
    return loop.warmup_cosine(step, config.num_steps, config.lr, config.warmup_steps)


def ema_decay(step: int, config: DiffusionConfig) -> float:
    """Diffusion Policy's EMA warm-up: 1 − (1 + step)^−power, capped."""
    return float(min(config.ema_max_decay, max(0.0, 1 - (1 + step) ** -config.ema_power)))


@dataclass
class TrainData:
    obs: torch.Tensor  # (N, To·D) normalised, flattened observation windows
    actions: torch.Tensor  # (N, Tp, A) normalised action windows
    obs_normalizer: Normalizer
    action_normalizer: Normalizer


def prepare(
    config: DiffusionConfig, observations: Sequence[np.ndarray], actions: Sequence[np.ndarray]
) -> TrainData:
    obs_norm = Normalizer.fit(np.concatenate(observations))
    act_norm = Normalizer.fit(np.concatenate(actions), config.discrete_dims, config.discrete_factor)
    obs_windows, act_windows = windows(
        observations, actions, config.obs_horizon, config.pred_horizon
    )
    obs_flat = obs_norm.normalize(obs_windows).reshape(len(obs_windows), -1)
    return TrainData(
        torch.from_numpy(obs_flat),
        torch.from_numpy(act_norm.normalize(act_windows)),
        obs_norm,
        act_norm,
    )


def train(
    config: DiffusionConfig,
    data: TrainData,
    out: Path,
    *,
    resume: bool = True,
    progress: bool = True,
    device: str = "cpu",
) -> dict[str, float]:
    """Train for config.num_steps optimiser steps; return the loss summary."""
    rank, world = loop.rank_and_world()
    model, ema = loop.model_and_ema(lambda: build_network(config), config.seed, device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay
    )
    checkpoint_file = Path(out) / "model.safetensors"

    def load_ema(saved: ckpt.Checkpoint) -> None:
        load_into(ema, saved.model_state, checkpoint_file)

    start = loop.resume(out, ckpt.load, load_ema, model, optimizer) if resume else 0
    trained = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    schedule = NoiseSchedule(config.train_steps)
    sqrt_ab = torch.tensor(np.sqrt(schedule.alphas_cumprod), dtype=torch.float32, device=device)
    sqrt_one_minus = torch.tensor(
        np.sqrt(1 - schedule.alphas_cumprod), dtype=torch.float32, device=device
    )
    generator = torch.Generator().manual_seed(config.seed * 1000 + rank + start)
    obs, actions = data.obs.to(device), data.actions.to(device)

    def step_fn(step: int) -> float:
        index = torch.randint(0, len(obs), (config.batch_size,), generator=generator)
        x0, cond = actions[index], obs[index]
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(0, config.train_steps, (config.batch_size,), generator=generator)
        t = t.to(device)
        x_t = sqrt_ab[t, None, None] * x0 + sqrt_one_minus[t, None, None] * noise
        loss = nn.functional.mse_loss(trained(x_t, t, cond), noise)
        loop.set_learning_rate(optimizer, learning_rate(step, config))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loop.update_ema(ema, model, ema_decay(step, config))
        return loss.item()

    def save(step: int) -> None:
        checkpoint = ckpt.Checkpoint(
            config, data.obs_normalizer, data.action_normalizer, ema.state_dict(), step
        )
        ckpt.save(out, checkpoint, loop.train_state(model, optimizer))

    return loop.run_steps(
        step_fn,
        model=model,
        start=start,
        total=config.num_steps,
        checkpoint_every=config.checkpoint_every,
        save=save,
        desc=f"train {config.task or 'policy'}",
        progress=progress,
    )
