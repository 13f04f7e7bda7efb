"""A tiny world generator (16x16) and a tiny Explore dataset, shared by the world tests."""

from __future__ import annotations

from pathlib import Path

import torch

from world.generation import checkpoint as generator_checkpoint
from world.generation.generator import GeneratorConfig, WorldGenerator

TINY = GeneratorConfig(image_size=16, widths=(8, 16), blocks=1, embed_dim=16)


def tiny_model(seed: int = 0) -> WorldGenerator:
    torch.manual_seed(seed)
    return WorldGenerator(TINY).eval()


def save_tiny(directory: Path, role: str = "student", steps: int = 1) -> Path:
    model = tiny_model()
    generator_checkpoint.save(
        directory, generator_checkpoint.GeneratorCheckpoint(TINY, role, steps, model.state_dict())
    )
    return directory
