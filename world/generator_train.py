"""Training the multi-step teacher: x0-prediction denoising on Explore frames.

The same data-parallel path as policy training: under `torchrun` each rank draws its
own batches, DistributedDataParallel averages the gradients, rank 0 writes the
checkpoint. Resumes from DIR/train.safetensors when it exists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from policies.diffusion.checkpoint import load_train_state
from policies.diffusion.training import (
    adam_state,
    check_replicas_agree,
    load_adam_state,
    loss_summary,
    rank_and_world,
    update_ema,
    warmup_cosine,
)
from world import generator_checkpoint as ckpt
from world.generator import GeneratorConfig, WorldGenerator, add_noise
from world.generator_data import ExampleSampler, ExploreFrames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherTraining:
    steps: int = 6000
    batch_size: int = 16
    lr: float = 3e-4
    warmup: int = 200
    ema_decay: float = 0.999
    sampling_steps: int = 16  # the teacher's default DDIM steps
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.sampling_steps < 1:
            raise ValueError("steps, batch_size and sampling_steps must be at least 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def clipped_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, model: nn.Module) -> None:
    """Backward, clip the gradient norm to 1, step: every world-model update does this."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def denoising_loss(
    model: nn.Module, x0: torch.Tensor, cond, generator: torch.Generator
) -> torch.Tensor:
    """MSE of the x0 prediction at a uniformly drawn noise level."""
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    t = torch.rand(len(x0), generator=generator).to(x0.device)
    return nn.functional.mse_loss(model(add_noise(x0, noise, t), t, cond), x0)


def train_teacher(
    data: ExploreFrames,
    out: Path,
    config: GeneratorConfig,
    training: TeacherTraining = TeacherTraining(),
    *,
    resume: bool = True,
    progress: bool = True,
    device: str = "cpu",
) -> dict[str, float]:
    rank, world = rank_and_world()
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    model, ema = WorldGenerator(config).to(device), WorldGenerator(config).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=1e-4)
    start = _resume(out, model, ema, optimizer) if resume else 0
    trained = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    sampler = ExampleSampler(data, seed=training.seed * 1000 + rank + start)
    generator = torch.Generator().manual_seed(training.seed * 7919 + rank + start)
    losses: list[float] = []
    bar = tqdm(
        range(start, training.steps),
        initial=start,
        total=training.steps,
        desc="train world teacher",
        disable=not progress or rank != 0,
    )
    for step in bar:
        x0, cond = sampler.batch(training.batch_size)
        cond.images, cond.motion = cond.images.to(device), cond.motion.to(device)
        loss = denoising_loss(trained, x0.to(device), cond, generator)
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(
                step, training.steps, training.lr, training.warmup, floor=0.1
            )
        clipped_step(optimizer, loss, model)
        update_ema(ema, model, min(training.ema_decay, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if step % 25 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-100:]):.4f}")
        done = step + 1
        if rank == 0 and (done % training.checkpoint_every == 0 or done == training.steps):
            _save(out, config, training, model, ema, optimizer, done)
    bar.close()
    result = loss_summary(losses, training.steps - start)
    if world > 1:
        result["replica_hash"] = check_replicas_agree(model)
    return result


def _save(out, config, training, model, ema, optimizer, step: int) -> None:
    train_state = {f"model/{k}": v for k, v in model.state_dict().items()}
    train_state.update(adam_state(optimizer))
    ckpt.save(
        out,
        ckpt.GeneratorCheckpoint(
            config,
            "teacher",
            training.sampling_steps,
            ema.state_dict(),
            step,
            {"batch_size": training.batch_size, "lr": training.lr, "steps": training.steps},
        ),
        train_state,
    )


def _resume(out: Path, model: nn.Module, ema: nn.Module, optimizer) -> int:
    if not (Path(out) / "config.json").exists():
        return 0
    saved = ckpt.load(out)
    train_state = load_train_state(out)
    if train_state is None or saved.role != "teacher":
        return 0
    ema.load_state_dict(saved.model_state)
    model.load_state_dict({k[6:]: v for k, v in train_state.items() if k.startswith("model/")})
    load_adam_state(optimizer, train_state)
    log.info("resumed %s at step %d", out, saved.step)
    return saved.step
