"""World-generator checkpoints: safetensors weights and a JSON description. Never pickle.

DIR/config.json          schema, kind, role (teacher or student), GeneratorConfig,
                         sampling steps, training step, weight hash, free-form extra
DIR/model.safetensors    the weights inference uses (EMA for a teacher)
DIR/train.safetensors    raw weights and optimiser moments, to resume training
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import CheckpointError, check_version, load_into, read_weights, write
from training.json_file import read_json
from world.generation.generator import GeneratorConfig, WorldGenerator

SCHEMA_VERSION = 1
KIND = "warmloop.world-generator"


@dataclass
class GeneratorCheckpoint:
    config: GeneratorConfig
    role: str  # "teacher" (multi-step) or "student" (DMD few-step)
    sampling_steps: int
    model_state: dict[str, torch.Tensor]
    step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def build(self, device: str = "cpu") -> WorldGenerator:
        model = WorldGenerator(self.config)
        load_into(model, self.model_state, Path("model.safetensors"))
        return model.to(device).eval().requires_grad_(False)


def save(
    directory: Path,
    checkpoint: GeneratorCheckpoint,
    train_state: dict[str, torch.Tensor] | None = None,
) -> None:
    meta = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "role": checkpoint.role,
        "sampling_steps": checkpoint.sampling_steps,
        "step": checkpoint.step,
        "config": checkpoint.config.to_dict(),
        "extra": checkpoint.extra,
    }
    write(directory, checkpoint.model_state, meta, train_state)


def load(directory: Path) -> GeneratorCheckpoint:
    """Read and verify a checkpoint; CheckpointError names the file and what is wrong."""
    directory = Path(directory)
    path = directory / "config.json"
    meta = read_json(path, "a world checkpoint", CheckpointError)
    if meta.get("kind") != KIND:
        raise CheckpointError(f"{path}: not a world-generator checkpoint")
    check_version(path, meta, SCHEMA_VERSION)
    state = read_weights(directory, meta)
    try:
        return GeneratorCheckpoint(
            config=GeneratorConfig.from_dict(meta["config"]),
            role=str(meta["role"]),
            sampling_steps=int(meta["sampling_steps"]),
            model_state=state,
            step=int(meta["step"]),
            extra=dict(meta.get("extra") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
