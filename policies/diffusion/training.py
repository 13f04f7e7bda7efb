"""Training a diffusion policy: epsilon prediction, AdamW, cosine warm-up, EMA, resume.

The loop, the schedules, EMA and data parallelism are training.loop's; this module
says what one step of a policy is. Under `torchrun` each rank draws its own batches,
DistributedDataParallel averages the gradients, rank 0 writes checkpoints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from policies.diffusion import checkpoint as ckpt
from policies.diffusion.configuration import DiffusionConfig
from policies.diffusion.data import Normalizer, window_indices, windows
from policies.diffusion.network import ConditionalUnet1D
from policies.diffusion.scheduler import NoiseSchedule
from policies.diffusion.vision import ObservationEncoder, VisuomotorNetwork
from training import loop
from training.checkpoint import load_into

log = logging.getLogger(__name__)


def build_network(config: DiffusionConfig) -> ConditionalUnet1D | VisuomotorNetwork:
    """The noise network; with cameras, wrapped together with its observation encoder."""
    unet = ConditionalUnet1D(
        action_dim=config.action_dim,
        global_cond_dim=config.cond_dim,
        down_dims=config.down_dims,
        step_embed_dim=config.step_embed_dim,
        kernel_size=config.kernel_size,
    )
    if not config.uses_images:
        return unet
    encoder = ObservationEncoder(
        config.cameras, config.backbone, config.crop_size, config.image_features
    )
    return VisuomotorNetwork(unet, encoder, aux_outputs=len(config.aux_state_dims))


def learning_rate(step: int, config: DiffusionConfig) -> float:
    """Linear warm-up, then cosine decay to zero at num_steps."""
    return loop.warmup_cosine(step, config.num_steps, config.lr, config.warmup_steps)


def ema_decay(step: int, config: DiffusionConfig) -> float:
    """Diffusion Policy's EMA warm-up: 1 − (1 + step)^−power, capped."""
    return float(min(config.ema_max_decay, max(0.0, 1 - (1 + step) ** -config.ema_power)))


@dataclass
class TrainData:
    obs: torch.Tensor  # (N, To·D) normalised, flattened windows; (N, To, P) with images
    actions: torch.Tensor  # (N, Tp, A) normalised action windows
    obs_normalizer: Normalizer
    action_normalizer: Normalizer
    # Image policies: every frame once, uint8 (M, H, W, 3) per camera, decoded up front so
    # that training spends its time in the network; windows gather them by row (N, To).
    frames: dict[str, torch.Tensor] | None = None
    frame_index: torch.Tensor | None = None
    # With config.aux_state_dims: those observation entries, normalised, (N, To, aux);
    # training's targets for the state head, never saved with the policy.
    aux_targets: torch.Tensor | None = None


def prepare(
    config: DiffusionConfig,
    observations: Sequence[np.ndarray],
    actions: Sequence[np.ndarray],
    frames: dict[str, Sequence[np.ndarray]] | None = None,
) -> TrainData:
    """Normalise and window episodes; `frames` {camera: per-episode (T, H, W, 3) uint8}
    for an image policy, whose state is the observations' `config.state_dims`."""
    aux_targets = _aux_targets(config, observations, actions)
    if config.uses_images:
        observations = [np.asarray(o)[:, list(config.state_dims)] for o in observations]
        frames = _check_frames(config, frames, [len(a) for a in actions])
    obs_norm = Normalizer.fit(np.concatenate(observations))
    act_norm = Normalizer.fit(np.concatenate(actions), config.discrete_dims, config.discrete_factor)
    obs_windows, act_windows = windows(
        observations, actions, config.obs_horizon, config.pred_horizon
    )
    obs = obs_norm.normalize(obs_windows)
    data = TrainData(
        torch.from_numpy(obs if config.uses_images else obs.reshape(len(obs), -1)),
        torch.from_numpy(act_norm.normalize(act_windows)),
        obs_norm,
        act_norm,
        aux_targets=aux_targets,
    )
    if config.uses_images:
        lengths = [len(a) for a in actions]
        frame_index, _ = window_indices(lengths, config.obs_horizon, config.pred_horizon)
        data.frame_index = torch.from_numpy(frame_index)
        data.frames = {
            camera: torch.from_numpy(np.concatenate(per_episode))
            for camera, per_episode in frames.items()
        }
    return data


def _aux_targets(
    config: DiffusionConfig, observations: Sequence[np.ndarray], actions: Sequence[np.ndarray]
) -> torch.Tensor | None:
    if not config.aux_state_dims:
        return None
    width = min(np.shape(o)[-1] for o in observations)
    if max(config.aux_state_dims) >= width:
        raise ValueError(
            f"aux_state_dims {config.aux_state_dims}: the observations have {width} entries"
        )
    chosen = [np.asarray(o)[:, list(config.aux_state_dims)] for o in observations]
    normalizer = Normalizer.fit(np.concatenate(chosen))
    targets, _ = windows(chosen, actions, config.obs_horizon, config.pred_horizon)
    return torch.from_numpy(normalizer.normalize(targets))


def _check_frames(
    config: DiffusionConfig, frames: dict[str, Sequence[np.ndarray]] | None, lengths: list[int]
) -> dict[str, Sequence[np.ndarray]]:
    missing = [camera for camera in config.cameras if camera not in (frames or {})]
    if missing:
        raise ValueError(f"no frames for cameras {missing} (collect with --images)")
    size = (config.image_size, config.image_size, 3)
    for camera in config.cameras:
        for length, episode in zip(lengths, frames[camera], strict=True):
            if episode.shape != (length, *size) or episode.dtype != np.uint8:
                raise ValueError(
                    f"camera {camera!r}: frames of {episode.shape} {episode.dtype}, "
                    f"expected ({length}, {size[0]}, {size[1]}, 3) uint8"
                )
    return {camera: frames[camera] for camera in config.cameras}


class ImageNoisePrediction(nn.Module):
    """One forward of an image policy in training: encode, then predict the noise.

    One module, so that DistributedDataParallel sees the encoder and the U-Net in the same
    forward and averages both their gradients.
    """

    def __init__(self, network: VisuomotorNetwork):
        super().__init__()
        self.network = network

    def forward(self, x_t, t, state, images, generator=None):
        """The predicted noise; with a state head, (noise, predicted state entries)."""
        cond = self.network.encode(state, images, generator)
        noise = self.network(x_t, t, cond)
        if self.network.state_head is None:
            return noise
        return noise, self.network.predict_state(cond, state.shape[-1])


SNAPSHOTS = "snapshots"


def snapshot_minutes(snapshot: Path) -> float | None:
    """The training minutes a snapshot (`train(..., snapshots=True)`) recorded; None for
    a checkpoint that records none."""
    minutes = ckpt.read_meta(snapshot).get("extra", {}).get("train_minutes")
    return None if minutes is None else float(minutes)


def _minutes_before(out: Path, start: int) -> float:
    """Training minutes already spent when a run resumes at `start`: the newest
    snapshot's, so that a resumed run's snapshots count from the run's beginning."""
    saved = sorted((out / SNAPSHOTS).glob("step-*/config.json"))
    if start == 0 or not saved:
        return 0.0
    return snapshot_minutes(saved[-1].parent) or 0.0


def train(
    config: DiffusionConfig,
    data: TrainData,
    out: Path,
    *,
    resume: bool = True,
    progress: bool = True,
    device: str = "cpu",
    snapshots: bool = False,
) -> dict[str, float]:
    """Train for config.num_steps optimiser steps; return the loss summary. With
    `snapshots`, every save also leaves out/snapshots/step-NNNNNN: the weights of that
    step and its training time, for a success-against-training-time curve
    (`python -m benchmarks.training_curve`)."""
    rank, world = loop.rank_and_world()
    model, ema = loop.model_and_ema(lambda: build_network(config), config.seed, device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay
    )
    checkpoint_file = Path(out) / "model.safetensors"

    def load_ema(saved: ckpt.Checkpoint) -> None:
        load_into(ema, saved.model_state, checkpoint_file)

    start = loop.resume(out, ckpt.load, load_ema, model, optimizer) if resume else 0
    trained = ImageNoisePrediction(model) if config.uses_images else model
    trained = nn.parallel.DistributedDataParallel(trained) if world > 1 else trained
    generator = torch.Generator().manual_seed(config.seed * 1000 + rank + start)
    aux_losses: list[float] = []  # the state head's, since the last save
    batch_loss = _batch_loss(config, data, trained, generator, device, aux_losses)

    def step_fn(step: int) -> float:
        loss, denoising = batch_loss()
        loop.set_learning_rate(optimizer, learning_rate(step, config))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loop.update_ema(ema, model, ema_decay(step, config))
        return denoising.item()  # the figure every recipe reports, with or without aux

    began = time.monotonic() - _minutes_before(Path(out), start) * 60

    def save(step: int) -> None:
        _log_aux(step, aux_losses)
        checkpoint = ckpt.Checkpoint(
            config, data.obs_normalizer, data.action_normalizer, ema.state_dict(), step
        )
        ckpt.save(out, checkpoint, loop.train_state(model, optimizer))
        if snapshots:
            minutes = (time.monotonic() - began) / 60
            snapshot = replace(checkpoint, extra={"train_minutes": round(minutes, 2)})
            ckpt.save(Path(out) / SNAPSHOTS / f"step-{step:06d}", snapshot)

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


def _batch_loss(
    config: DiffusionConfig,
    data: TrainData,
    trained: nn.Module,
    generator: torch.Generator,
    device: str,
    aux_losses: list[float],
) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """A function drawing one batch and returning (loss, its denoising part): epsilon
    prediction's MSE, plus the state head's MSE (appended to `aux_losses`) if any."""
    schedule = NoiseSchedule(config.train_steps)
    sqrt_ab = torch.tensor(np.sqrt(schedule.alphas_cumprod), dtype=torch.float32, device=device)
    sqrt_one_minus = torch.tensor(
        np.sqrt(1 - schedule.alphas_cumprod), dtype=torch.float32, device=device
    )
    obs, actions = data.obs.to(device), data.actions.to(device)
    frames = {c: f.to(device) for c, f in (data.frames or {}).items()}
    aux_targets = None if data.aux_targets is None else data.aux_targets.to(device)

    def predict(x_t: torch.Tensor, t: torch.Tensor, index: torch.Tensor):
        """The predicted noise; (noise, state entries) for a policy with a state head."""
        if not frames:
            return trained(x_t, t, obs[index])
        rows = data.frame_index[index]  # (B, To)
        images = {camera: f[rows.to(device)] for camera, f in frames.items()}
        return trained(x_t, t, obs[index], images, generator)  # random crops: own draws

    def batch_loss() -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(0, len(obs), (config.batch_size,), generator=generator)
        x0 = actions[index]
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(0, config.train_steps, (config.batch_size,), generator=generator)
        t = t.to(device)
        x_t = sqrt_ab[t, None, None] * x0 + sqrt_one_minus[t, None, None] * noise
        predicted = predict(x_t, t, index)
        if aux_targets is None:
            denoising = nn.functional.mse_loss(predicted, noise)
            return denoising, denoising
        denoising = nn.functional.mse_loss(predicted[0], noise)
        aux = nn.functional.mse_loss(predicted[1], aux_targets[index])
        aux_losses.append(aux.item())
        return denoising + config.aux_state_weight * aux, denoising

    return batch_loss


def _log_aux(step: int, aux_losses: list[float]) -> None:
    """Log the state head's mean loss since the last save, and start counting afresh."""
    if aux_losses:
        log.info(
            "step %d: state-head loss %.4f (mean since the last save)", step, np.mean(aux_losses)
        )
        aux_losses.clear()
