"""The manifest of an exported policy: what a robot computer needs besides the graphs.

DIR/manifest.json     this file's contents (schema below)
DIR/network.onnx      the noise network eps(sample, step, cond), dynamic batch
DIR/rti_update.onnx   one whole RTI update: its denoising steps from K' unrolled

It imports numpy only. Every field is checked on load, and each error names the file
and the field, so a robot never runs a policy half-understood.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from policies.diffusion.configuration import rti_denoising_problem
from training.json_file import read_json

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
NETWORK_GRAPH = "network.onnx"
RTI_GRAPH = "rti_update.onnx"
OPSET = 17


class ExportError(ValueError):
    """An exported policy directory that is missing, corrupted or inconsistent."""


@dataclass(frozen=True)
class GraphEntry:
    file: str
    sha256: str  # of the whole .onnx file, weights included
    inputs: dict[str, list[int | str]]  # name -> shape; strings are dynamic axes
    outputs: dict[str, list[int | str]]


@dataclass(frozen=True)
class Manifest:
    task: str  # the sim task it was trained on, for evaluation
    obs_dim: int
    action_dim: int
    obs_horizon: int
    pred_horizon: int
    action_horizon: int
    obs_normalizer: dict[str, Any]
    action_normalizer: dict[str, Any]
    train_steps: int  # K, of the squared-cosine schedule
    clip_sample: float
    k_prime: int
    rti_mode: str  # "state" or "renoise"
    noise_draws: int  # standard normal draws one RTI update consumes, in order
    discrete_dims: tuple[int, ...]
    discrete_factor: float
    rti_clip: bool
    checkpoint_weights_sha256: str
    graphs: dict[str, GraphEntry] = field(default_factory=dict)
    # Added within schema 1: an export that lacks them denoises as the paper does.
    rti_sampler: str = "ddpm"  # or "ddim", deterministic
    rti_steps: int = 0  # DDIM steps from K' to 0; 0 = all K'+1
    schema_version: int = MANIFEST_SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rti_noise_draws(k_prime: int, mode: str, sampler: str = "ddpm") -> int:
    """One draw per DDPM reverse step with t > 0 (DDIM: none), one to re-noise the guess."""
    return (k_prime if sampler == "ddpm" else 0) + (1 if mode == "renoise" else 0)


def read_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST_FILE
    data = read_json(path, "an exported policy", ExportError)
    version = data.get("schema_version")
    if version != MANIFEST_SCHEMA_VERSION:
        raise ExportError(
            f"{path}: schema_version {version!r}; this warmloop reads version "
            f"{MANIFEST_SCHEMA_VERSION} (export again with this warmloop)"
        )
    try:
        graphs = {name: GraphEntry(**entry) for name, entry in data.pop("graphs").items()}
        manifest = Manifest(**{**data, "graphs": graphs})
    except (KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"{path}: malformed ({exc})") from None
    _check_fields(manifest, path)
    return manifest


def _check_fields(m: Manifest, path: Path) -> None:
    checks = [
        (m.obs_dim >= 1, "obs_dim", "must be >= 1"),
        (m.action_dim >= 1, "action_dim", "must be >= 1"),
        (1 <= m.obs_horizon <= m.pred_horizon, "obs_horizon", "must be in 1..pred_horizon"),
        (0 <= m.k_prime < m.train_steps, "k_prime", "must be in 0..train_steps-1"),
        (m.rti_mode in ("state", "renoise"), "rti_mode", "must be 'state' or 'renoise'"),
        (
            m.noise_draws == rti_noise_draws(m.k_prime, m.rti_mode, m.rti_sampler),
            "noise_draws",
            "disagrees with k_prime, rti_mode and rti_sampler",
        ),
        (
            all(0 <= d < m.action_dim for d in m.discrete_dims),
            "discrete_dims",
            "must be action dimensions",
        ),
        (NETWORK_GRAPH in {g.file for g in m.graphs.values()}, "graphs", "lack the network"),
    ]
    denoising = rti_denoising_problem(m.k_prime, m.rti_sampler, m.rti_steps)
    if denoising:
        checks.insert(0, (False, *denoising))
    for ok, name, message in checks:
        if not ok:
            raise ExportError(f"{path}: field {name} {message}")


def verify_graph_file(directory: Path, entry: GraphEntry) -> Path:
    """The graph's path, after checking it exists and its hash matches the manifest."""
    path = Path(directory) / entry.file
    if not path.is_file():
        raise ExportError(f"{path}: missing (the manifest lists it)")
    if file_sha256(path) != entry.sha256:
        raise ExportError(
            f"{path}: weight hash does not match manifest.json (file changed or corrupted)"
        )
    return path
