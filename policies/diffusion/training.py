"""Training a diffusion policy: epsilon prediction, AdamW, cosine warm-up, EMA, resume.

Under `torchrun` (WORLD_SIZE > 1) it trains data-parallel with DistributedDataParallel:
each rank draws its own batches, gradients are averaged, rank 0 writes checkpoints.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from policies.diffusion import checkpoint as ckpt
from policies.diffusion.configuration import DiffusionConfig
from policies.diffusion.data import Normalizer, windows
from policies.diffusion.network import ConditionalUnet1D
from policies.diffusion.scheduler import NoiseSchedule

log = logging.getLogger(__name__)


def build_network(config: DiffusionConfig) -> ConditionalUnet1D:
    return ConditionalUnet1D(
        action_dim=config.action_dim,
        global_cond_dim=config.obs_horizon * config.obs_dim,
        down_dims=config.down_dims,
        step_embed_dim=config.step_embed_dim,
        kernel_size=config.kernel_size,
    )


def warmup_cosine(step: int, total: int, peak: float, warmup: int, floor: float = 0.0) -> float:
    """Linear warm-up to `peak`, then cosine decay to `floor`·peak at `total` steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def learning_rate(step: int, config: DiffusionConfig) -> float:
    """Linear warm-up, then cosine decay to zero at num_steps."""
    return warmup_cosine(step, config.num_steps, config.lr, config.warmup_steps)


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


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(
    config: DiffusionConfig,
    data: TrainData,
    out: Path,
    *,
    resume: bool = True,
    progress: bool = True,
    device: str = "cpu",
) -> dict[str, float]:
    """Train for config.num_steps optimiser steps; return the final losses."""
    rank, world = rank_and_world()
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    model = build_network(config).to(device)
    ema = build_network(config).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay
    )
    start = _resume(out, model, ema, optimizer) if resume else 0
    trained = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    schedule = NoiseSchedule(config.train_steps)
    sqrt_ab = torch.tensor(np.sqrt(schedule.alphas_cumprod), dtype=torch.float32, device=device)
    sqrt_one_minus = torch.tensor(
        np.sqrt(1 - schedule.alphas_cumprod), dtype=torch.float32, device=device
    )
    generator = torch.Generator().manual_seed(config.seed * 1000 + rank + start)
    obs, actions = data.obs.to(device), data.actions.to(device)
    losses: list[float] = []
    bar = tqdm(
        range(start, config.num_steps),
        initial=start,
        total=config.num_steps,
        desc=f"train {config.task or 'policy'}",
        disable=not progress or rank != 0,
    )
    for step in bar:
        index = torch.randint(0, len(obs), (config.batch_size,), generator=generator)
        x0, cond = actions[index], obs[index]
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(0, config.train_steps, (config.batch_size,), generator=generator)
        t = t.to(device)
        x_t = sqrt_ab[t, None, None] * x0 + sqrt_one_minus[t, None, None] * noise
        loss = nn.functional.mse_loss(trained(x_t, t, cond), noise)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        update_ema(ema, model, ema_decay(step, config))
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        done = step + 1
        if rank == 0 and (done % config.checkpoint_every == 0 or done == config.num_steps):
            _save(out, config, data, model, ema, optimizer, done)
    bar.close()
    result = loss_summary(losses, config.num_steps - start)
    if world > 1:
        result["replica_hash"] = check_replicas_agree(model)
    return result


def loss_summary(losses: list[float], steps: int) -> dict[str, float]:
    """Mean loss over the first and the last 100 steps, and the steps taken."""
    nan = float("nan")
    return {
        "first_loss": float(np.mean(losses[:100])) if losses else nan,
        "final_loss": float(np.mean(losses[-100:])) if losses else nan,
        "steps": steps,
    }


def check_replicas_agree(model: nn.Module) -> str:
    """Data parallelism must leave identical weights on every rank: compare hashes."""
    digest = ckpt.weights_hash(model.state_dict())
    hashes: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(hashes, digest)  # small strings, between our own ranks
    if len(set(hashes)) != 1:
        raise RuntimeError(f"data-parallel replicas diverged: {hashes}")
    return digest


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.mul_(decay).add_(param.detach(), alpha=1 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)


def _save(
    out: Path,
    config: DiffusionConfig,
    data: TrainData,
    model: nn.Module,
    ema: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
) -> None:
    train_state = {f"model/{k}": v for k, v in model.state_dict().items()}
    train_state.update(adam_state(optimizer))
    ckpt.save(
        out,
        ckpt.Checkpoint(
            config, data.obs_normalizer, data.action_normalizer, ema.state_dict(), step
        ),
        train_state,
    )


def _resume(out: Path, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    if not (Path(out) / "config.json").exists():
        return 0
    saved = ckpt.load(out)
    train_state = ckpt.load_train_state(out)
    if train_state is None:
        return 0
    ckpt.load_into(ema, saved.model_state, Path(out) / "model.safetensors")
    ckpt.load_into(
        model,
        {k[6:]: v for k, v in train_state.items() if k.startswith("model/")},
        Path(out) / "train.safetensors",
    )
    load_adam_state(optimizer, train_state)
    log.info("resumed %s at step %d", out, saved.step)
    return saved.step


def adam_state(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """AdamW's moments and step counts as named tensors, for a safetensors file."""
    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            tensors[f"adam/{index}/{key}"] = state[key]
        tensors[f"adam/{index}/step"] = torch.as_tensor(state["step"], dtype=torch.float64)
    return tensors


def load_adam_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state = optimizer.state_dict()
    for index in state["param_groups"][0]["params"]:
        if f"adam/{index}/exp_avg" in tensors:
            state["state"][index] = {
                "exp_avg": tensors[f"adam/{index}/exp_avg"],
                "exp_avg_sq": tensors[f"adam/{index}/exp_avg_sq"],
                "step": tensors[f"adam/{index}/step"].float(),
            }
    optimizer.load_state_dict(state)


def init_distributed() -> bool:
    """Join the torchrun process group (gloo on CPU, nccl on GPU); False when alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True
