"""Checkpoint files: safetensors for tensors, JSON for everything else. Never pickle.

Every checkpoint kind of the project (policies, the world generator) is a directory:

    DIR/config.json          what the kind needs to rebuild the model, plus "weights_sha256"
    DIR/model.safetensors    the weights inference uses
    DIR/train.safetensors    optional: raw weights and optimiser moments, to resume

The kinds describe their own JSON; this module writes and verifies the files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupted, from another version or of other shapes."""


def weights_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def write(
    directory: Path,
    model_state: dict[str, torch.Tensor],
    meta: dict[str, Any],
    train_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """model.safetensors, train.safetensors (optional), then config.json = meta + hash.

    Tensors are written first and the JSON last, through a rename: a reader never sees
    a config without its weights.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
    save_file(state, str(directory / "model.safetensors"))
    if train_state is not None:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in train_state.items()},
            str(directory / "train.safetensors"),
        )
    meta = {**meta, "weights_sha256": weights_hash(state)}
    tmp = directory / "config.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.replace(directory / "config.json")


def check_version(path: Path, meta: dict[str, Any], version: int) -> None:
    if meta.get("schema_version") != version:
        raise CheckpointError(
            f"{path}: schema_version {meta.get('schema_version')!r}; this warmloop reads "
            f"version {version} (a newer warmloop wrote it?)"
        )


def read_weights(directory: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """model.safetensors, checked against the hash that config.json records."""
    weights = Path(directory) / "model.safetensors"
    try:
        state = load_file(str(weights))
    except FileNotFoundError:
        raise CheckpointError(f"{weights}: missing") from None
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: unreadable ({exc})") from None
    if weights_hash(state) != meta.get("weights_sha256"):
        raise CheckpointError(f"{weights}: weights do not match the hash in config.json")
    return state


def load_train_state(directory: Path) -> dict[str, torch.Tensor] | None:
    path = Path(directory) / "train.safetensors"
    if not path.exists():
        return None
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """load_state_dict with an error that names the file and the first bad tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: tensors missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{source}: {name} has shape {tuple(tensor.shape)}, the "
                f"network expects {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state)
