"""The optimiser-step loop and what every model trained here shares.

Policies (`policies/diffusion/training.py`) and the world generator
(`world/generation/training.py`) each write a `step_fn(step) -> loss` and hand it to
`run_steps`, which runs the steps with a progress bar, saves every `checkpoint_every`
steps on rank 0 and returns a loss summary.

Under `torchrun` (WORLD_SIZE > 1) training is data-parallel: `run_training` joins the
process group (gloo on CPU, nccl on GPU), each rank draws its own batches, the model is
wrapped in DistributedDataParallel by the caller, and at the end the replicas' weights
are hashed and compared.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from training.checkpoint import CheckpointError, load_train_state, weights_hash

log = logging.getLogger(__name__)
LOSS_WINDOW = 100  # steps averaged for the first and the final loss
POSTFIX_EVERY = 50  # steps between progress-bar loss updates


def warmup_cosine(step: int, total: int, peak: float, warmup: int, floor: float = 0.0) -> float:
    """Linear warm-up to `peak`, then cosine decay to `floor`·peak at `total` steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def model_and_ema(
    build: Callable[[], nn.Module], seed: int, device: str
) -> tuple[nn.Module, nn.Module]:
    """The network to train and its EMA copy (frozen), from the same seed on every rank."""
    torch.manual_seed(seed)  # identical initial weights on every rank
    model = build().to(device)
    ema = build().to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    return model, ema


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.mul_(decay).add_(param.detach(), alpha=1 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)


def clipped_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, model: nn.Module) -> None:
    """Backward, clip the gradient norm to 1, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


# ---- resumable training state ---------------------------------------------------------
def train_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The raw weights and AdamW's moments and step counts as named tensors."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            tensors[f"adam/{index}/{key}"] = state[key]
        tensors[f"adam/{index}/step"] = torch.as_tensor(state["step"], dtype=torch.float64)
    return tensors


def restore_train_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]
) -> None:
    """The inverse of `train_state`."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    state = optimizer.state_dict()
    for index in state["param_groups"][0]["params"]:
        if f"adam/{index}/exp_avg" in tensors:
            state["state"][index] = {
                "exp_avg": tensors[f"adam/{index}/exp_avg"],
                "exp_avg_sq": tensors[f"adam/{index}/exp_avg_sq"],
                "step": tensors[f"adam/{index}/step"].float(),
            }
    optimizer.load_state_dict(state)


def resume(
    out: Path,
    load: Callable[[Path], Any],
    load_ema: Callable[[Any], None],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
) -> int:
    """The step to go on from: OUT's checkpoint (`load`; None to start afresh) gives the
    EMA weights, its train.safetensors the raw weights and optimiser; 0 without them."""
    if not (Path(out) / "config.json").exists():
        return 0
    saved = load(out)
    tensors = load_train_state(out)
    if saved is None or tensors is None:
        return 0
    load_ema(saved)
    restore_train_state(model, optimizer, tensors)
    log.info("resumed %s at step %d", out, saved.step)
    return saved.step


# ---- the loop -------------------------------------------------------------------------
def run_steps(
    step_fn: Callable[[int], float],
    *,
    model: nn.Module,
    start: int,
    total: int,
    checkpoint_every: int,
    save: Callable[[int], None],
    desc: str,
    progress: bool = True,
) -> dict[str, float | str]:
    """Run steps start..total−1; save on rank 0 every `checkpoint_every` and at the end.

    Returns the mean loss of the first and the last LOSS_WINDOW steps, the steps run and,
    when data-parallel, the hash the replicas agree on.
    """
    rank, world = rank_and_world()
    losses: list[float] = []
    bar = tqdm(
        range(start, total),
        initial=start,
        total=total,
        desc=desc,
        disable=not progress or rank != 0,
    )
    for step in bar:
        losses.append(step_fn(step))
        if step % POSTFIX_EVERY == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-POSTFIX_EVERY:]):.4f}")
        done = step + 1
        if rank == 0 and (done % checkpoint_every == 0 or done == total):
            save(done)
    bar.close()
    result: dict[str, float | str] = loss_summary(losses, total - start)
    if world > 1:
        result["replica_hash"] = check_replicas_agree(model)
    return result


def loss_summary(losses: list[float], steps: int) -> dict[str, float]:
    """Mean loss over the first and the last window of steps, and the steps taken.

    The window is LOSS_WINDOW steps, or a quarter of a shorter run, so the two never
    overlap: a short run's summary compares its start with its end, not with itself.
    """
    nan = float("nan")
    window = max(1, min(LOSS_WINDOW, len(losses) // 4))
    return {
        "first_loss": float(np.mean(losses[:window])) if losses else nan,
        "final_loss": float(np.mean(losses[-window:])) if losses else nan,
        "loss_window": window,
        "steps": steps,
    }


# ---- devices and data parallelism -----------------------------------------------------
def resolve_device(name: str) -> str:
    """ "auto" is CUDA when there is a GPU, else the CPU; anything else as given."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> bool:
    """Join the torchrun process group (gloo on CPU, nccl on GPU); False when alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def check_replicas_agree(model: nn.Module) -> str:
    """Data parallelism must leave identical weights on every rank: compare hashes."""
    digest = weights_hash(model.state_dict())
    hashes: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(hashes, digest)  # small strings, between our own ranks
    if len(set(hashes)) != 1:
        raise RuntimeError(f"data-parallel replicas diverged: {hashes}")
    return digest


def run_training(out: Path, train_on: Callable[[str], dict], device: str = "auto") -> int:
    """Join torchrun's group when under it, train on this rank's device, report on rank 0.

    The exit code of `warmloop train` (and `train explore`): 2 when a checkpoint to
    resume from is unreadable.
    """
    device = resolve_device(device)
    distributed = init_distributed()
    if distributed and device == "cuda":
        device = f"cuda:{dist.get_rank() % torch.cuda.device_count()}"
    try:
        result = train_on(device)
    except CheckpointError as exc:
        sys.stderr.write(f"warmloop train: cannot resume: {exc}\n")
        return 2
    if not distributed or dist.get_rank() == 0:
        agree = result.get("replica_hash")
        sys.stdout.write(
            f"{out}: {result['steps']} steps, loss {result['first_loss']:.4f} (mean of the "
            f"first {result['loss_window']}) -> {result['final_loss']:.4f} (of the last "
            f"{result['loss_window']})"
            + (f", replicas agree ({agree[:12]})" if agree else "")
            + "\n"
        )
    if distributed:
        dist.destroy_process_group()
    return 0
