"""A tiny world generator (16x16), a tiny Explore dataset and RGB-D frames of the
Explore room, shared by the world and node tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from streams import Frame
from world.generation import checkpoint as generator_checkpoint
from world.generation.generator import GeneratorConfig, WorldGenerator

# The conditioning before geometry (13 channels), which most world tests exercise;
# TINY_GEOMETRY adds the anchored warp (tests/world/generation/test_geometry.py).
TINY = GeneratorConfig(image_size=16, widths=(8, 16), blocks=1, embed_dim=16, geometry=False)
TINY_GEOMETRY = replace(TINY, geometry=True)


def tiny_model(seed: int = 0) -> WorldGenerator:
    torch.manual_seed(seed)
    return WorldGenerator(TINY).eval()


def save_tiny(directory: Path, role: str = "student", steps: int = 1) -> Path:
    model = tiny_model()
    generator_checkpoint.save(
        directory, generator_checkpoint.GeneratorCheckpoint(TINY, role, steps, model.state_dict())
    )
    return directory


def explore_frame(rng: np.random.Generator, index: int, size: int = 64) -> Frame:
    """A random-coloured RGB-D frame 2 m from the wall, stepping 1 cm a frame along y."""
    pose = np.eye(4)
    pose[:3, 3] = [0.0, -2.0 + 0.01 * (index % 100), 1.4]
    focal = 45.7 * size / 64
    return Frame(
        rgb=rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        depth=np.full((size, size), 2.0, np.float32),
        intrinsics=np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]]),
        pose=pose,
        scene_time=0.1 * index,
    )
