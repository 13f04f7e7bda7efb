"""The diffusion-policy checkpoint, on training.checkpoint's files. Never pickle.

DIR/config.json          schema version, DiffusionConfig, normalisers, step, weight hash
DIR/model.safetensors    EMA weights of the noise network (what inference uses)
DIR/train.safetensors    raw weights and AdamW moments, to resume training
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from policies.diffusion.configuration import DiffusionConfig
from policies.diffusion.data import Normalizer
from training.checkpoint import CheckpointError, check_version, read_weights, write
from training.json_file import read_json

SCHEMA_VERSION = 1


@dataclass
class Checkpoint:
    config: DiffusionConfig
    obs_normalizer: Normalizer
    action_normalizer: Normalizer
    model_state: dict[str, torch.Tensor]
    step: int = 0
    extra: dict[str, Any] | None = None  # free-form JSON (for example calibration results)


def save(
    directory: Path, checkpoint: Checkpoint, train_state: dict[str, torch.Tensor] | None = None
) -> None:
    meta = {
        "schema_version": SCHEMA_VERSION,
        "step": checkpoint.step,
        "config": checkpoint.config.to_dict(),
        "obs_normalizer": checkpoint.obs_normalizer.to_dict(),
        "action_normalizer": checkpoint.action_normalizer.to_dict(),
        "extra": checkpoint.extra or {},
    }
    write(directory, checkpoint.model_state, meta, train_state)


def load(directory: Path) -> Checkpoint:
    directory = Path(directory)
    meta = read_meta(directory)
    state = read_weights(directory, meta)
    try:
        return Checkpoint(
            config=DiffusionConfig.from_dict(meta["config"]),
            obs_normalizer=Normalizer.from_dict(meta["obs_normalizer"]),
            action_normalizer=Normalizer.from_dict(meta["action_normalizer"]),
            model_state=state,
            step=int(meta["step"]),
            extra=meta.get("extra") or {},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{directory / 'config.json'}: {exc}") from None


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / "config.json"
    meta = read_json(path, "a checkpoint", CheckpointError)
    check_version(path, meta, SCHEMA_VERSION)
    return meta
