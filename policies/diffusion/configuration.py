"""Configuration of a diffusion policy: typed, validated on construction, JSON round trip."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

SAMPLERS = ("ddpm", "ddim", "rti")
BACKBONES = ("small", "resnet18")  # policies/diffusion/vision.py
WARM_START_MODES = ("state", "renoise")
RTI_SAMPLERS = ("ddpm", "ddim")  # how a warm RTI update denoises from K'


@dataclass
class DiffusionConfig:
    obs_dim: int
    action_dim: int
    task: str = ""
    # Horizons (see policies/diffusion/data.py for their alignment).
    obs_horizon: int = 2
    pred_horizon: int = 16
    action_horizon: int = 8
    # Image observations (policies/diffusion/vision.py). No cameras: a low-dim policy whose
    # observation is the whole state vector. With cameras, obs_dim counts `state_dims`,
    # the env observation's proprioceptive entries kept beside the frames.
    cameras: tuple[str, ...] = ()
    state_dims: tuple[int, ...] = ()
    image_size: int = 96  # frames as the camera gives them, H = W
    crop_size: int = 84  # random crops in training, the centre at inference (DP: 84 of 96)
    backbone: str = "small"
    image_features: int = 64  # per camera and step
    # Training only: the image features also learn to predict these entries of the env
    # observation (the state the policy does not see, e.g. the cube's position), by a
    # linear head weighted `aux_state_weight` beside the denoising loss. Levine et al.
    # (2016) pre-trained their spatial-softmax vision layers on object poses so.
    aux_state_dims: tuple[int, ...] = ()
    aux_state_weight: float = 1.0
    # Network.
    down_dims: tuple[int, ...] = (64, 128, 256)
    step_embed_dim: int = 128
    kernel_size: int = 5
    # Diffusion.
    train_steps: int = 100
    discrete_dims: tuple[int, ...] = ()
    discrete_factor: float = 10.0  # RTI "scale": discrete dims of actions divided by it
    rti_k_prime: int = 2  # warm-start step; `warmloop calibrate-rti` chooses it per task
    rti_mode: str = "state"
    rti_sampler: str = "ddpm"  # stochastic, as in the paper; or deterministic "ddim"
    rti_steps: int = 0  # DDIM: network calls per warm update, spaced K'..0; 0 = K'+1
    rti_clip: bool = True  # RTI "clip": snap discrete dims of the stored guess
    # Re-anchoring: every Nth prediction of an episode is a cold DDIM prediction from
    # noise (rti_anchor_steps network calls) instead of a warm update; 0 = never. A warm
    # start that drifts from what the cameras show is pulled back (checkpoints/README.md).
    rti_anchor_every: int = 0
    rti_anchor_steps: int = 10
    # Training.
    batch_size: int = 256
    num_steps: int = 20_000
    lr: float = 1e-4
    weight_decay: float = 1e-6
    adam_betas: tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = 500
    ema_power: float = 0.75
    ema_max_decay: float = 0.9999
    checkpoint_every: int = 1_000
    seed: int = 0

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        self.state_dims = tuple(self.state_dims)
        self.aux_state_dims = tuple(self.aux_state_dims)
        self.down_dims = tuple(self.down_dims)
        self.discrete_dims = tuple(self.discrete_dims)
        self.adam_betas = tuple(self.adam_betas)
        positive = (
            "obs_dim",
            "action_dim",
            "obs_horizon",
            "pred_horizon",
            "action_horizon",
            "step_embed_dim",
            "batch_size",
            "num_steps",
            "checkpoint_every",
        )
        for name in positive:
            _require(self, getattr(self, name) >= 1, name, "must be at least 1")
        _require(
            self, self.obs_horizon <= self.pred_horizon, "obs_horizon", "must be <= pred_horizon"
        )
        _require(
            self,
            self.obs_horizon - 1 + self.action_horizon <= self.pred_horizon,
            "action_horizon",
            "must fit: obs_horizon - 1 + action_horizon <= pred_horizon",
        )
        _require(
            self,
            self.pred_horizon % 2 ** (len(self.down_dims) - 1) == 0,
            "pred_horizon",
            f"must be divisible by {2 ** (len(self.down_dims) - 1)} (U-Net levels)",
        )
        _require(self, self.train_steps >= 2, "train_steps", "must be at least 2")
        _require(
            self,
            0 <= self.rti_k_prime < self.train_steps,
            "rti_k_prime",
            f"must be in 0..{self.train_steps - 1}",
        )
        _require(
            self,
            self.rti_mode in WARM_START_MODES,
            "rti_mode",
            f"must be one of {WARM_START_MODES}",
        )
        problem = rti_denoising_problem(self.rti_k_prime, self.rti_sampler, self.rti_steps)
        if problem:
            _require(self, False, *problem)
        anchoring = rti_anchor_problem(
            self.rti_anchor_every, self.rti_anchor_steps, self.train_steps
        )
        if anchoring:
            _require(self, False, *anchoring)
        _require(
            self,
            all(0 <= d < self.action_dim for d in self.discrete_dims),
            "discrete_dims",
            f"must be action dimensions 0..{self.action_dim - 1}",
        )
        _require(self, self.discrete_factor >= 1, "discrete_factor", "must be >= 1")
        _require(self, self.lr > 0 and self.weight_decay >= 0, "lr", "must be positive")
        if self.cameras:
            self._check_images()
        else:
            _require(self, not self.aux_state_dims, "aux_state_dims", "needs cameras")
        _require(self, 0 < self.ema_max_decay < 1, "ema_max_decay", "must be in (0, 1)")

    @property
    def uses_images(self) -> bool:
        return bool(self.cameras)

    @property
    def cond_dim(self) -> int:
        """The U-Net's global condition: To steps of state (and features per camera)."""
        per_step = self.obs_dim + len(self.cameras) * self.image_features
        return self.obs_horizon * per_step

    def _check_images(self) -> None:
        _require(
            self,
            all(c.isidentifier() for c in self.cameras)
            and len(set(self.cameras)) == len(self.cameras),
            "cameras",
            "must be distinct names of letters, digits and underscores",
        )
        _require(
            self,
            len(self.state_dims) == self.obs_dim,
            "state_dims",
            f"must list obs_dim = {self.obs_dim} observation entries",
        )
        _require(self, self.backbone in BACKBONES, "backbone", f"must be one of {BACKBONES}")
        _require(self, 16 <= self.image_size <= 512, "image_size", "must be within 16..512")
        _require(
            self, 16 <= self.crop_size <= self.image_size, "crop_size", "must be in 16..image_size"
        )
        _require(self, self.image_features >= 1, "image_features", "must be at least 1")
        _require(
            self,
            all(d >= 0 for d in self.aux_state_dims)
            and len(set(self.aux_state_dims)) == len(self.aux_state_dims)
            and not set(self.aux_state_dims) & set(self.state_dims),
            "aux_state_dims",
            "must be distinct observation entries, none of them in state_dims",
        )
        _require(self, self.aux_state_weight > 0, "aux_state_weight", "must be positive")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffusionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"DiffusionConfig: unknown fields {unknown}")
        return cls(**data)


def rti_anchor_problem(every: int, steps: int, train_steps: int) -> tuple[str, str] | None:
    """(field, what is wrong) if RTI cannot re-anchor this way, else None: the one rule
    for config, policy and export manifest."""
    if every < 0:
        return "rti_anchor_every", "must be >= 0 (0: never)"
    if not 1 <= steps <= train_steps:
        return "rti_anchor_steps", f"must be in 1..{train_steps}"
    return None


def rti_denoising_problem(k_prime: int, sampler: str, steps: int) -> tuple[str, str] | None:
    """(field, what is wrong) if a warm RTI update cannot denoise this way, else None.

    The one rule for config, policy, calibration, export manifest and sampler alike.
    """
    if sampler not in RTI_SAMPLERS:
        return "rti_sampler", f"must be one of {RTI_SAMPLERS}"
    if steps and sampler != "ddim":
        return "rti_steps", "strided steps are DDIM's: need rti_sampler 'ddim' (DDPM runs K'..0)"
    if not 0 <= steps <= k_prime + 1:
        return "rti_steps", f"must be in 0..K'+1 = {k_prime + 1} (0: every step)"
    return None


def rti_steps_within(k_prime: int, steps: int) -> int:
    """A stored DDIM step count under another K': a chain from K' has K'+1 steps at most."""
    return min(steps, k_prime + 1)


def _require(config: DiffusionConfig, ok: bool, field_name: str, message: str) -> None:
    if not ok:
        value = getattr(config, field_name)
        raise ValueError(f"DiffusionConfig.{field_name} = {value!r}: {message}")
