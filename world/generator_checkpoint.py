"""World-generator checkpoints: safetensors weights and a JSON description. Never pickle.

DIR/config.json          schema, kind, role (teacher or student), GeneratorConfig,
                         sampling steps, training step, weight hash, free-form extra
DIR/model.safetensors    the weights inference uses (EMA for a teacher)
DIR/train.safetensors    raw weights and optimiser moments, to resume training
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from policies.diffusion.checkpoint import CheckpointError, load_into, weights_hash
from world.generator import GeneratorConfig, WorldGenerator

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
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in checkpoint.model_state.items()}
    save_file(state, str(directory / "model.safetensors"))  # tensors first, JSON last
    if train_state is not None:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in train_state.items()},
            str(directory / "train.safetensors"),
        )
    meta = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "role": checkpoint.role,
        "sampling_steps": checkpoint.sampling_steps,
        "step": checkpoint.step,
        "config": checkpoint.config.to_dict(),
        "weights_sha256": weights_hash(state),
        "extra": checkpoint.extra,
    }
    tmp = directory / "config.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.replace(directory / "config.json")


def load(directory: Path) -> GeneratorCheckpoint:
    """Read and verify a checkpoint; CheckpointError names the file and what is wrong."""
    directory = Path(directory)
    path = directory / "config.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (is {directory} a world checkpoint?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise CheckpointError(f"{path}: not a world-generator checkpoint")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(
            f"{path}: schema_version {meta.get('schema_version')!r}; this warmloop reads "
            f"version {SCHEMA_VERSION}"
        )
    weights = directory / "model.safetensors"
    try:
        state = load_file(str(weights))
    except FileNotFoundError:
        raise CheckpointError(f"{weights}: missing") from None
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: unreadable ({exc})") from None
    if weights_hash(state) != meta.get("weights_sha256"):
        raise CheckpointError(f"{weights}: weights do not match the hash in config.json")
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


def load_train_state(directory: Path) -> dict[str, torch.Tensor] | None:
    path = Path(directory) / "train.safetensors"
    if not path.exists():
        return None
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None
