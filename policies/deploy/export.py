"""`warmloop export`: a checkpoint becomes ONNX graphs and a manifest (see manifest.py).

The RTI graph unrolls the reverse steps of one update (K'+1 for DDPM) with the schedule's
constants folded in, so a warm tick is one onnxruntime call. Shifting the previous
chunk and snapping its discrete dimensions stay outside, in numpy: they are index
work, and keeping them out lets the graph take exactly "the shifted guess".
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from policies.deploy.manifest import (
    CAMERA_FORMAT,
    ENCODER_GRAPH,
    MANIFEST_FILE,
    NETWORK_GRAPH,
    OPSET,
    RTI_GRAPH,
    GraphEntry,
    Manifest,
    file_sha256,
    rti_noise_draws,
)
from policies.diffusion import checkpoint as ckpt
from policies.diffusion.configuration import DiffusionConfig, rti_steps_within
from policies.diffusion.sampler import rti_timesteps, warm_start
from policies.diffusion.scheduler import NoiseSchedule
from policies.diffusion.training import build_network
from training.checkpoint import load_into, weights_hash

log = logging.getLogger(__name__)


class Conv1dAsConv2d(nn.Module):
    """A Conv1d computed as a Conv2d over a height of 1, for the exported graphs.

    Why: onnxruntime's CPU kernels for 2-D convolutions are faster than its 1-D path. On
    the shipped PickPlace network one call of network.onnx went from 1.96 to 1.48 ms
    (AMD EPYC, one thread; `warmloop bench onnx` times both graphs side by side). The
    same weights and sums: outputs agree with the Conv1d's to ~2e-6.
    """

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        self.stride, self.padding = (1, conv.stride[0]), (0, conv.padding[0])
        self.weight = nn.Parameter(conv.weight.detach().unsqueeze(2), requires_grad=False)
        self.bias = conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lifted = nn.functional.conv2d(
            x.unsqueeze(2), self.weight, self.bias, self.stride, self.padding
        )
        return lifted.squeeze(2)


def lift_convolutions(module: nn.Module) -> nn.Module:
    """A copy of `module` whose plain Conv1d layers run as Conv2d (Conv1dAsConv2d)."""
    lifted = copy.deepcopy(module)
    for parent in list(lifted.modules()):
        for name, child in list(parent.named_children()):
            plain = isinstance(child, nn.Conv1d) and child.groups == 1
            if plain and child.dilation == (1,) and child.padding_mode == "zeros":
                setattr(parent, name, Conv1dAsConv2d(child))
    return lifted


class UnrolledRTI(nn.Module):
    """(shifted guess, cond, noise draws) -> the denoised chunk, one call per step."""

    def __init__(
        self,
        network: nn.Module,
        schedule: NoiseSchedule,
        k_prime: int,
        mode: str,
        sampler: str = "ddpm",
        steps: int = 0,
    ):
        super().__init__()
        self.network, self.schedule = network, schedule
        self.k_prime, self.mode, self.sampler = k_prime, mode, sampler
        self.timesteps = rti_timesteps(k_prime, steps)

    def forward(
        self, shifted: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        count = 0 if noise is None else int(noise.shape[0])  # fixed when exported
        draws = iter(range(count))

        def draw() -> torch.Tensor:
            return noise[next(draws)]

        x = warm_start(self.schedule, shifted, self.k_prime, self.mode, draw)
        batch_ones = torch.ones_like(cond[:, 0], dtype=torch.long)  # keeps batch dynamic
        for t, t_prev in zip(self.timesteps, [*self.timesteps[1:], -1], strict=True):
            eps = self.network(x, batch_ones * t, cond)
            if self.sampler == "ddim":
                x = self.schedule.ddim_step(x, eps, t, t_prev)
            else:
                x = self.schedule.ddpm_step(x, eps, t, draw() if t > 0 else None)
        return x


class EncoderGraph(nn.Module):
    """(normalised state, raw frames per camera) -> the condition: an image policy's
    encoder with the centre crop inside, so a robot hands over frames as taken."""

    def __init__(self, network: nn.Module, cameras: tuple[str, ...], cond_dim: int):
        super().__init__()
        self.network, self.cameras, self.cond_dim = network, cameras, cond_dim

    def forward(self, state: torch.Tensor, *frames: torch.Tensor) -> torch.Tensor:
        cond = self.network.encode(state, dict(zip(self.cameras, frames, strict=True)))
        return cond.reshape(-1, self.cond_dim)  # a fixed width in the graph's signature


def _export_encoder(network: nn.Module, config, out: Path) -> GraphEntry:
    steps, size = config.obs_horizon, config.image_size
    inputs: dict[str, list[int | str]] = {"state": ["batch", steps, config.obs_dim]}
    args = [torch.zeros(1, steps, config.obs_dim)]
    for camera in config.cameras:
        inputs[f"image_{camera}"] = ["batch", steps, size, size, 3]
        args.append(torch.zeros(1, steps, size, size, 3, dtype=torch.uint8))
    return _export_graph(
        EncoderGraph(network, config.cameras, config.cond_dim).eval(),
        tuple(args),
        out / ENCODER_GRAPH,
        inputs=inputs,
        outputs={"cond": ["batch", config.cond_dim]},
    )


def _camera_entries(config) -> list[dict]:
    return [
        {
            "name": camera,
            "height": config.image_size,
            "width": config.image_size,
            "crop": config.crop_size,
            **CAMERA_FORMAT,
        }
        for camera in config.cameras
    ]


def export(
    checkpoint_dir: Path, out: Path, k_prime: int | None = None, lift: bool = True
) -> Manifest:
    """Write the graphs and the manifest; `lift=False` keeps the Conv1d layers as they
    are (the benchmark's "before" graph)."""
    checkpoint = ckpt.load(Path(checkpoint_dir))
    config = checkpoint.config
    k_prime = config.rti_k_prime if k_prime is None else k_prime
    if not 0 <= k_prime < config.train_steps:
        raise ValueError(f"k_prime must be in 0..{config.train_steps - 1}, got {k_prime}")
    network = build_network(config).eval()
    load_into(network, checkpoint.model_state, Path(checkpoint_dir) / "model.safetensors")
    if lift:
        network = lift_convolutions(network)
    schedule = NoiseSchedule(config.train_steps)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # a half-written export never looks whole
    rti_steps = rti_steps_within(k_prime, config.rti_steps)  # an overriding K' may hold fewer
    draws = rti_noise_draws(k_prime, config.rti_mode, config.rti_sampler)
    graphs = _export_graphs(network, config, schedule, k_prime, rti_steps, draws, out)
    manifest = Manifest(
        task=config.task,
        obs_dim=config.obs_dim,
        action_dim=config.action_dim,
        obs_horizon=config.obs_horizon,
        pred_horizon=config.pred_horizon,
        action_horizon=config.action_horizon,
        obs_normalizer=checkpoint.obs_normalizer.to_dict(),
        action_normalizer=checkpoint.action_normalizer.to_dict(),
        train_steps=config.train_steps,
        clip_sample=schedule.clip_sample,
        k_prime=k_prime,
        rti_mode=config.rti_mode,
        noise_draws=draws,
        discrete_dims=tuple(config.discrete_dims),
        discrete_factor=config.discrete_factor,
        rti_clip=config.rti_clip,
        rti_sampler=config.rti_sampler,
        rti_steps=rti_steps,
        checkpoint_weights_sha256=weights_hash(checkpoint.model_state),
        graphs=graphs,
        betas=tuple(float(b) for b in schedule.betas),
        alphas_cumprod=tuple(float(a) for a in schedule.alphas_cumprod),
        first_timesteps=tuple(range(config.train_steps - 1, -1, -1)),
        rti_timesteps=tuple(rti_timesteps(k_prime, rti_steps)),
        cameras=_camera_entries(config),
        state_dims=tuple(config.state_dims),
        image_features=config.image_features if config.uses_images else 0,
        rti_anchor_every=config.rti_anchor_every,
        rti_anchor_steps=config.rti_anchor_steps,
    )
    (out / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def _export_graphs(
    network: nn.Module,
    config: DiffusionConfig,
    schedule: NoiseSchedule,
    k_prime: int,
    rti_steps: int,
    draws: int,
    out: Path,
) -> dict[str, GraphEntry]:
    """Write network.onnx (any batch), rti_update.onnx (batch 1) and, for an image
    policy, encoder.onnx into `out`: the manifest's `graphs` entry."""
    horizon, action_dim, cond_dim = config.pred_horizon, config.action_dim, config.cond_dim
    sample = torch.zeros(1, horizon, action_dim)
    cond = torch.zeros(1, cond_dim)
    chunk_shape: list[int | str] = ["batch", horizon, action_dim]
    graphs = {
        "network": _export_graph(
            network,
            (sample, torch.zeros(1, dtype=torch.long), cond),
            out / NETWORK_GRAPH,
            inputs={"sample": chunk_shape, "step": ["batch"], "cond": ["batch", cond_dim]},
            outputs={"eps": chunk_shape},
        )
    }
    # The RTI graph is exported for batch 1, the control loop's case: with static shapes
    # onnxruntime folds every shape computation, and the unrolled update ran ~10% faster
    # than with a dynamic batch (which was slower than the per-step loop). Batched
    # sampling uses network.onnx, whose batch is dynamic.
    single: list[int | str] = [1, horizon, action_dim]
    rti_inputs = {"shifted": single, "cond": [1, cond_dim]}
    rti_args: tuple[torch.Tensor, ...] = (sample, cond)
    if draws:
        rti_inputs["noise"] = [draws, 1, horizon, action_dim]
        rti_args = (sample, cond, torch.zeros(draws, 1, horizon, action_dim))
    graphs["rti_update"] = _export_graph(
        UnrolledRTI(
            network, schedule, k_prime, config.rti_mode, config.rti_sampler, rti_steps
        ).eval(),
        rti_args,
        out / RTI_GRAPH,
        inputs=rti_inputs,
        outputs={"chunk": single},
    )
    if config.uses_images:
        graphs["encoder"] = _export_encoder(network, config, out)
    return graphs


def _export_graph(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    inputs: dict[str, list[int | str]],
    outputs: dict[str, list[int | str]],
) -> GraphEntry:
    dynamic = {
        name: {axis: size for axis, size in enumerate(shape) if isinstance(size, str)}
        for name, shape in {**inputs, **outputs}.items()
    }
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter: deterministic, and needs no onnxscript. The graphs are
        # plain convolutions and arithmetic, well inside what it covers.
        warnings.simplefilter("ignore", DeprecationWarning)
        # Tracing freezes Python-side checks (GroupNorm's size check, the number of noise
        # draws); every one of them is fixed for an exported graph by design.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=dynamic,
            opset_version=OPSET,
        )
    onnx.checker.check_model(str(path), full_check=True)
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return GraphEntry(path.name, file_sha256(path), inputs, outputs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a checkpoint directory (warmloop train)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the graphs")
    parser.add_argument("--k-prime", type=int, default=None, help="default: the checkpoint's")


def main_from_args(args: argparse.Namespace) -> int:
    try:
        manifest = export(args.checkpoint, args.out, args.k_prime)
    except ValueError as exc:  # CheckpointError is one
        sys.stderr.write(f"warmloop export: {exc}\n")
        return 2
    print(
        f"exported {args.checkpoint} to {args.out}: {', '.join(manifest.graphs)} "
        f"(K'={manifest.k_prime}, opset {OPSET}, all graphs pass onnx.checker)"
    )
    return 0
