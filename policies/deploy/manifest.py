"""The manifest of an exported policy: what a robot computer needs besides the graphs.

DIR/manifest.json     this file's contents (schema below)
DIR/network.onnx      the noise network eps(sample, step, cond), dynamic batch
DIR/rti_update.onnx   one whole RTI update: its denoising steps from K' unrolled
DIR/encoder.onnx      image policies: (normalised state, raw frames per camera) -> cond

It imports numpy only. Every field is checked on load, and each error names the file
and the field, so a robot never runs a policy half-understood.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from policies.diffusion.configuration import rti_anchor_problem, rti_denoising_problem
from policies.diffusion.sampler import rti_timesteps
from training.json_file import read_json

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
NETWORK_GRAPH = "network.onnx"
RTI_GRAPH = "rti_update.onnx"
ENCODER_GRAPH = "encoder.onnx"
CAMERA_FORMAT = {"dtype": "uint8", "layout": "HWC", "channels": "RGB"}  # as cameras give them
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
    # Added within schema 1, so that a runtime in another language needs no warmloop
    # code (docs/deployment.md#a-runtime-in-another-language); empty in older exports.
    betas: tuple[float, ...] = ()  # β_t, t = 0..K-1, of the squared-cosine schedule
    alphas_cumprod: tuple[float, ...] = ()  # ᾱ_t = Π_{s≤t} (1 − β_s)
    first_timesteps: tuple[int, ...] = ()  # the first prediction's DDPM chain, K-1..0
    rti_timesteps: tuple[int, ...] = ()  # what rti_update.onnx denoises, K'..0
    # Added within schema 1 for image policies; empty for a policy on the state alone.
    # Each camera: {"name", "height", "width", "crop", **CAMERA_FORMAT}; encoder.onnx
    # takes the frames uncropped and crops the centre itself.
    cameras: list[dict[str, Any]] = field(default_factory=list)
    state_dims: tuple[int, ...] = ()  # the scene observation's entries the state is
    image_features: int = 0  # per camera and step, in the condition
    # Added within schema 1, RTI re-anchoring: every rti_anchor_every-th prediction of an
    # episode after its first is a DDIM prediction from noise in rti_anchor_steps calls of
    # network.onnx instead of an RTI update; 0 (older exports) never re-anchors.
    rti_anchor_every: int = 0
    rti_anchor_steps: int = 10
    schema_version: int = MANIFEST_SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(camera["name"] for camera in self.cameras)

    @property
    def image_size(self) -> int:
        return int(self.cameras[0]["height"]) if self.cameras else 0

    @property
    def cond_dim(self) -> int:
        """The U-Net's condition: To steps of state and of features per camera."""
        return self.obs_horizon * (self.obs_dim + len(self.cameras) * self.image_features)


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
    if not isinstance(data, dict):
        raise ExportError(f"{path}: must hold a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != MANIFEST_SCHEMA_VERSION:
        raise ExportError(
            f"{path}: schema_version {version!r}; this warmloop reads version "
            f"{MANIFEST_SCHEMA_VERSION} (export again with this warmloop)"
        )
    _check_types(data, path)
    try:
        graphs = {name: GraphEntry(**entry) for name, entry in data.pop("graphs").items()}
        manifest = Manifest(**{**data, "graphs": graphs})
    except (KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"{path}: malformed ({exc})") from None
    _check_fields(manifest, path)
    _check_cameras(manifest, path)
    _check_graph_shapes(manifest, path)  # the graphs are the truth the others must match
    _check_normalizers(manifest, path)
    _check_schedule(manifest, path)
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
    anchoring = rti_anchor_problem(m.rti_anchor_every, m.rti_anchor_steps, m.train_steps)
    if anchoring:
        checks.insert(0, (False, *anchoring))
    for ok, name, message in checks:
        if not ok:
            raise ExportError(f"{path}: field {name} {message}")


# The JSON type each annotation of Manifest must have (bool is not an int here).
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "dict[str, Any]": (dict,),
    "dict[str, GraphEntry]": (dict,),
    "tuple[int, ...]": (list,),
    "tuple[float, ...]": (list,),
    "list[dict[str, Any]]": (list,),
}


def _check_types(data: dict, path: Path) -> None:
    """Each field's JSON type, so that a hand-edited "11" fails here, named."""
    for each in fields(Manifest):
        if each.name not in data:
            continue  # a missing required field is reported as malformed
        value, allowed = data[each.name], _JSON_TYPES[str(each.type)]
        wrong = not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)
        if not wrong and str(each.type).startswith("tuple"):
            item = int if "int" in str(each.type) else (int, float)
            wrong = not all(isinstance(v, item) and not isinstance(v, bool) for v in value)
        if wrong:
            raise ExportError(
                f"{path}: field {each.name} must be {each.type}, got {json.dumps(value)[:60]}"
            )


def _check_normalizers(m: Manifest, path: Path) -> None:
    for name, dim in (("obs_normalizer", m.obs_dim), ("action_normalizer", m.action_dim)):
        value = getattr(m, name)
        for key in ("low", "high"):
            array = value.get(key)
            ok = isinstance(array, list) and len(array) == dim
            if not ok or not all(isinstance(v, int | float) for v in array):
                raise ExportError(f"{path}: field {name}.{key} must be {dim} numbers")
            if not np.isfinite(np.asarray(array, np.float64)).all():
                raise ExportError(f"{path}: field {name}.{key} holds NaN or infinity")
        if not isinstance(value.get("discrete_factor"), int | float):
            raise ExportError(f"{path}: field {name}.discrete_factor must be a number")
        if not isinstance(value.get("discrete_dims"), list):
            raise ExportError(f"{path}: field {name}.discrete_dims must be a list")


def _check_graph_shapes(m: Manifest, path: Path) -> None:
    """obs_dim, action_dim and the horizons against the graphs' declared shapes."""
    expected = {
        ("network", "sample"): [m.pred_horizon, m.action_dim],
        ("network", "cond"): [m.cond_dim],
        ("rti_update", "shifted"): [m.pred_horizon, m.action_dim],
        ("rti_update", "cond"): [m.cond_dim],
        ("encoder", "state"): [m.obs_horizon, m.obs_dim],
        **{
            ("encoder", f"image_{c['name']}"): [m.obs_horizon, c["height"], c["width"], 3]
            for c in m.cameras
        },
    }
    for (graph, name), tail in expected.items():
        if graph not in m.graphs:
            continue
        shape = m.graphs[graph].inputs.get(name)
        if shape is None or list(shape[1:]) != tail:
            raise ExportError(
                f"{path}: graphs.{graph} input {name} has shape {shape}, but obs_dim "
                f"{m.obs_dim}, action_dim {m.action_dim} and the horizons make [batch, "
                f"{', '.join(map(str, tail))}]"
            )


def _check_cameras(m: Manifest, path: Path) -> None:
    """Each camera entry complete and sane; encoder.onnx present exactly when they are."""
    if bool(m.cameras) != ("encoder" in m.graphs):
        raise ExportError(f"{path}: field cameras and graphs.encoder must come together")
    if not m.cameras:
        return
    names = [c.get("name") if isinstance(c, dict) else None for c in m.cameras]
    if len(set(names)) != len(names) or not all(
        isinstance(n, str) and n.isidentifier() for n in names
    ):
        raise ExportError(f"{path}: field cameras must have distinct identifier names, got {names}")
    for camera in m.cameras:
        sizes = [camera.get(k) for k in ("height", "width", "crop")]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes):
            raise ExportError(
                f"{path}: field cameras.{camera['name']} needs integer height, width, crop"
            )
        if camera["height"] != camera["width"] or camera["crop"] > camera["height"]:
            raise ExportError(
                f"{path}: field cameras.{camera['name']} must be square, crop <= size"
            )
        wrong = {k: camera.get(k) for k, v in CAMERA_FORMAT.items() if camera.get(k) != v}
        if wrong:
            raise ExportError(
                f"{path}: field cameras.{camera['name']} format {wrong}; "
                f"the runtime takes {CAMERA_FORMAT}"
            )
    if len(m.state_dims) != m.obs_dim or m.image_features < 1:
        raise ExportError(f"{path}: fields state_dims and image_features disagree with obs_dim")


def _check_schedule(m: Manifest, path: Path) -> None:
    """The tables, when present, must be the ones the runtime computes."""
    from policies.diffusion.scheduler import NoiseSchedule

    schedule = NoiseSchedule(m.train_steps, m.clip_sample)
    tables = {
        "betas": list(schedule.betas),
        "alphas_cumprod": list(schedule.alphas_cumprod),
        "first_timesteps": list(range(m.train_steps - 1, -1, -1)),
        "rti_timesteps": rti_timesteps(m.k_prime, m.rti_steps),
    }
    for name, values in tables.items():
        stored = list(getattr(m, name))
        if stored and stored != values:
            raise ExportError(
                f"{path}: field {name} disagrees with train_steps {m.train_steps} "
                f"(the squared-cosine schedule), k_prime and rti_steps"
            )


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
