"""Tiny stand-ins for the shipped checkpoints, for `warmloop bench NAME --smoke`.

Each keeps the shipped checkpoint's configuration (dimensions, normalisers, the
calibrated RTI settings, the world's image size and sampling steps) and shrinks the
network, with random weights, and a policy's noise schedule (20 steps), so a smoke run
walks every line of the benchmark in seconds. Its figures say nothing about the shipped models.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

POLICY_DIMS = (16, 32)
# A shorter noise schedule for the stand-in policies: "DDPM-100" runs 20 calls, so a
# 300-tick PushT smoke episode takes seconds. Every calibrated K' stays below it.
POLICY_TRAIN_STEPS = 20
WORLD_WIDTHS = (8, 16, 32)
# Every episode of a smoke run ends after this many ticks (PickPlace runs 100, PushT 300):
# enough for warm RTI updates and a few chunks, none of it scored.
SMOKE_EPISODE_STEPS = 24


def tiny_checkpoints(shipped: Path, out: Path, names: tuple[str, ...]) -> Path:
    """Write a tiny version of each named checkpoint of `shipped` into out/NAME; `out`."""
    for name in names:
        meta = json.loads((shipped / name / "config.json").read_text(encoding="utf-8"))
        if meta.get("kind") == "warmloop.world-generator":
            _tiny_generator(meta, out / name)
        else:
            _tiny_policy(shipped / name, out / name)
    return out


def _tiny_policy(source: Path, directory: Path) -> None:
    from dataclasses import replace

    from policies.diffusion import checkpoint as ckpt
    from policies.diffusion.training import build_network

    shipped = ckpt.load(source)
    config = replace(
        shipped.config,
        down_dims=POLICY_DIMS,
        step_embed_dim=16,
        train_steps=min(POLICY_TRAIN_STEPS, shipped.config.train_steps),
    )
    torch.manual_seed(0)
    network = build_network(config)
    ckpt.save(directory, replace(shipped, config=config, model_state=network.state_dict()))


def _tiny_generator(meta: dict, directory: Path) -> None:
    from world.generation import checkpoint as generator_checkpoint
    from world.generation.generator import GeneratorConfig, WorldGenerator

    shipped = GeneratorConfig.from_dict(meta["config"])
    config = GeneratorConfig(
        image_size=shipped.image_size,
        widths=WORLD_WIDTHS,
        blocks=1,
        embed_dim=16,
        geometry=shipped.geometry,
    )
    torch.manual_seed(0)
    model = WorldGenerator(config)
    generator_checkpoint.save(
        directory,
        generator_checkpoint.GeneratorCheckpoint(
            config, meta["role"], int(meta["sampling_steps"]), model.state_dict()
        ),
    )
