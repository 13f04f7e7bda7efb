"""The torch diffusion policy: full DDPM, DDIM, or RTI warm-started sampling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from policies.diffusion import checkpoint as ckpt
from policies.diffusion.configuration import (
    SAMPLERS,
    WARM_START_MODES,
    rti_anchor_problem,
    rti_denoising_problem,
    rti_steps_within,
)
from policies.diffusion.inpainting import DEFAULT_BETA, INPAINT_MODES, Inpainting, soft_mask
from policies.diffusion.sampler import RTIState, rti_update, sample_ddim, sample_ddpm, shift_chunk
from policies.diffusion.scheduler import NoiseSchedule
from policies.diffusion.training import build_network
from policies.images import check_images
from training.checkpoint import load_into


class DiffusionPolicy:
    """Implements policies.interface.Policy with a checkpoint's EMA network.

    sampler: "ddpm" (all K steps), "ddim" (`ddim_steps`), or "rti": the first call of an
    episode denoises fully with DDPM, later calls warm-start from the previous chunk
    shifted by `executed` actions and denoise from K'. `warm_start` ("state" or
    "renoise"), `rti_sampler` ("ddpm": K'+1 stochastic steps; "ddim": deterministic)
    and `rti_steps` (DDIM steps from K'; 0 = K'+1) override the checkpoint's.

    Under inference delay, `inpaint` ("replace" or "guide", policies/diffusion/
    inpainting.py) makes every prediction after an episode's first agree with the
    previous chunk on its first `frozen` rows (the history rows plus the delay); `ddim`
    and `rti` samplers only. `guidance_beta` clips RTC's guidance weight.
    """

    def __init__(
        self,
        checkpoint: ckpt.Checkpoint | Path | str,
        sampler: str = "rti",
        ddim_steps: int = 10,
        k_prime: int | None = None,
        executed: int = 1,
        seed: int = 0,
        device: str = "cpu",
        warm_start: str | None = None,
        rti_sampler: str | None = None,
        rti_steps: int | None = None,
        inpaint: str = "none",
        frozen: int = 0,
        guidance_beta: float = DEFAULT_BETA,
        anchor_every: int | None = None,
        anchor_steps: int | None = None,
    ):
        if not isinstance(checkpoint, ckpt.Checkpoint):
            checkpoint = ckpt.load(Path(checkpoint))
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        config = checkpoint.config
        self.config, self.sampler, self.ddim_steps = config, sampler, ddim_steps
        self.k_prime = config.rti_k_prime if k_prime is None else k_prime
        if not 0 <= self.k_prime < config.train_steps:
            raise ValueError(f"k_prime must be in 0..{config.train_steps - 1}, got {k_prime}")
        if not 1 <= executed <= config.pred_horizon:
            raise ValueError(f"executed must be in 1..{config.pred_horizon}, got {executed}")
        self.executed = executed
        # How RTI enters the chain: the shifted guess as the state at K' (the paper) or
        # re-noised to level K' (Diffuser); the checkpoint's choice unless overridden.
        self.warm_start = config.rti_mode if warm_start is None else warm_start
        if self.warm_start not in WARM_START_MODES:
            raise ValueError(f"warm_start must be one of {WARM_START_MODES}, got {warm_start!r}")
        self.rti_sampler = config.rti_sampler if rti_sampler is None else rti_sampler
        # A K' below the calibrated one keeps every step the stored DDIM count allows.
        stored_steps = rti_steps_within(self.k_prime, config.rti_steps)
        self.rti_steps = stored_steps if rti_steps is None else rti_steps
        problem = rti_denoising_problem(self.k_prime, self.rti_sampler, self.rti_steps)
        if problem:
            name, message = problem
            raise ValueError(f"{name} = {getattr(self, name)!r} (K' = {self.k_prime}): {message}")
        self.obs_horizon, self.pred_horizon = config.obs_horizon, config.pred_horizon
        self._set_anchor(anchor_every, anchor_steps)
        self._check_inpainting(inpaint, frozen, guidance_beta)
        self.inpaint, self.frozen, self.guidance_beta = inpaint, frozen, guidance_beta
        self.obs_dim = config.obs_dim
        self.obs_normalizer = checkpoint.obs_normalizer
        self.action_normalizer = checkpoint.action_normalizer
        self.network = build_network(config).to(device).eval()
        load_into(self.network, checkpoint.model_state, Path("model.safetensors"))
        self.schedule = NoiseSchedule(config.train_steps)
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self._rti_states: dict[int, RTIState] = {}
        self.network_calls = 0
        self.encoder_calls = 0  # image policies: one per prediction, whatever the sampler

    def _set_anchor(self, every: int | None, steps: int | None) -> None:
        """RTI's re-anchoring: every `every`th prediction cold, by DDIM in `steps` calls."""
        config = self.config
        self.anchor_every = config.rti_anchor_every if every is None else every
        self.anchor_steps = config.rti_anchor_steps if steps is None else steps
        problem = rti_anchor_problem(self.anchor_every, self.anchor_steps, config.train_steps)
        if problem:
            name, message = problem
            got = self.anchor_every if name == "rti_anchor_every" else self.anchor_steps
            raise ValueError(f"{name} {message}, got {got}")

    def _check_inpainting(self, inpaint: str, frozen: int, beta: float) -> None:
        if inpaint not in INPAINT_MODES:
            raise ValueError(f"inpaint must be one of {INPAINT_MODES}, got {inpaint!r}")
        if inpaint != "none" and self.sampler == "ddpm":
            raise ValueError("inpainting needs the ddim or rti sampler")
        if not 0 <= frozen <= self.pred_horizon - self.executed:
            raise ValueError(
                f"frozen must be in 0..{self.pred_horizon - self.executed} (the horizon less "
                f"the executed actions), got {frozen}"
            )
        if beta < 0:
            raise ValueError(f"guidance_beta must be at least 0, got {beta}")

    @property
    def warm_starts(self) -> bool:
        """Whether predictions after an episode's first start from the previous chunk."""
        return self.sampler == "rti" or self.inpaint != "none"

    @property
    def rti(self) -> RTIState:
        """The warm-start state of slot 0, the one `infer` uses."""
        return self._rti_state(0)

    def _rti_state(self, slot: int) -> RTIState:
        state = self._rti_states.get(slot)
        if state is None:
            clip = self.config.discrete_factor if self.config.rti_clip else None
            state = self._rti_states[slot] = RTIState(self.config.discrete_dims, clip)
        return state

    def reset(self, slot: int | None = None) -> None:
        """Forget the warm-start guess of one episode slot, or of every slot."""
        if slot is None:
            self._rti_states.clear()
        else:
            self._rti_states.pop(slot, None)

    @property
    def cameras(self) -> tuple[str, ...]:
        """The cameras `infer` needs frames of; () for a policy on the state alone."""
        return self.config.cameras

    @property
    def state_dims(self) -> tuple[int, ...]:
        """The entries of a scene's observation the policy's state is; () for all."""
        return self.config.state_dims

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def infer(
        self, observations: np.ndarray, images: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        batch_images = None if images is None else {c: f[None] for c, f in images.items()}
        return self.infer_batch(np.asarray(observations)[None], (0,), batch_images)[0]

    def infer_batch(
        self,
        observations: np.ndarray,
        slots: Sequence[int],
        images: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """(B, To, D) observations of B independent episodes -> (B, Tp, A) actions.

        `slots` names the episode of each row: RTI keeps one warm-start guess per slot,
        so a batch may mix episodes that have just started with warm ones. An image
        policy also takes `images`, {camera: (B, To, H, W, 3) uint8 frames}.
        """
        chunk = self.predict_normalized(observations, slots, images)
        actions = self.action_normalizer.unnormalize(chunk.cpu().numpy())
        for d in self.config.discrete_dims:
            actions[..., d] = np.where(actions[..., d] > 0, 1.0, -1.0)
        return actions

    @torch.no_grad()
    def predict_normalized(
        self,
        observations: np.ndarray,
        slots: Sequence[int] = (0,),
        images: Mapping[str, np.ndarray] | None = None,
    ) -> torch.Tensor:
        """(B, To, D) observations -> (B, Tp, A) chunks in the network's normalised units."""
        cond = self.condition(observations, slots, images)
        if self.sampler == "ddpm":
            return self._sample_full(cond)
        # Plain RTI's, as in the ONNX runtime: an inpainted update keeps its frozen prefix.
        every = self.anchor_every if self.sampler == "rti" and self.inpaint == "none" else 0
        warm, anchored = [], []
        for i, slot in enumerate(slots):
            state = self._rti_state(slot)
            if self.warm_starts and state.warm:
                (anchored if state.anchor_due(every) else warm).append(i)
        cold = [i for i in range(len(slots)) if i not in warm and i not in anchored]
        chunk = torch.empty(
            (len(slots), self.pred_horizon, self.config.action_dim), device=self.device
        )
        if warm:
            guess = torch.cat([self._rti_state(slots[i]).guess for i in warm])
            chunk[warm] = self._warm_chunk(cond[warm], guess)
        if cold:  # a DDIM prediction, or RTI's first of an episode: from pure noise
            chunk[cold] = self._cold_chunk(cond[cold])
        if anchored:
            chunk[anchored] = self._anchor_chunk(cond[anchored])
        if self.warm_starts:
            for i, slot in enumerate(slots):
                self._rti_state(slot).store(chunk[i : i + 1])
        return chunk

    def _anchor_chunk(self, cond: torch.Tensor) -> torch.Tensor:
        """RTI re-anchoring: from noise, as the first prediction, in `anchor_steps` calls."""
        timesteps = self.schedule.ddim_timesteps(self.anchor_steps)
        return sample_ddim(self._eps_fn(cond), self.schedule, self._noise(len(cond)), timesteps)

    def _cold_chunk(self, cond: torch.Tensor) -> torch.Tensor:
        if self.sampler == "rti":  # the first prediction of an episode denoises fully
            return self._sample_full(cond)
        timesteps = self.schedule.ddim_timesteps(self.ddim_steps)
        return sample_ddim(self._eps_fn(cond), self.schedule, self._noise(len(cond)), timesteps)

    def _warm_chunk(self, cond: torch.Tensor, guess: torch.Tensor) -> torch.Tensor:
        """From the previous chunks `guess`: an RTI update, or DDIM inpainting its prefix."""
        batch = len(cond)
        inpainting = self._inpainting(guess) if self.inpaint != "none" else None
        if self.sampler == "ddim":
            return sample_ddim(
                self._eps_fn(cond),
                self.schedule,
                self._noise(batch),
                self.schedule.ddim_timesteps(self.ddim_steps),
                noise=lambda: self._noise(batch),
                inpainting=inpainting,
            )
        return rti_update(
            self._eps_fn(cond),
            self.schedule,
            guess,
            self.executed,
            self.k_prime,
            lambda: self._noise(batch),
            self.warm_start,
            self.rti_sampler,
            self.rti_steps,
            inpainting,
        )

    def _inpainting(self, guess: torch.Tensor) -> Inpainting:
        """Agree with the previous chunks' plan: `guess` shifted to this prediction's ticks."""
        weights = soft_mask(self.pred_horizon, self.frozen, self.pred_horizon - self.executed)
        return Inpainting(
            known=shift_chunk(guess, self.executed),
            frozen=self.frozen,
            mode=self.inpaint,
            weights=torch.from_numpy(weights).to(self.device),
            beta=self.guidance_beta,
            noised=not (self.sampler == "rti" and self.warm_start == "state"),
        )

    @torch.no_grad()
    def condition(
        self,
        observations: np.ndarray,
        slots: Sequence[int] = (0,),
        images: Mapping[str, np.ndarray] | None = None,
    ) -> torch.Tensor:
        """The U-Net's (B, G) condition, made once per prediction: every denoising step
        of it (all K'+1 of a warm RTI update) reuses the encoder's features."""
        observations = self._check_batch(observations, slots)
        normalized = torch.from_numpy(self.obs_normalizer.normalize(observations))
        if not self.cameras:
            if images:
                raise ValueError("this policy sees no cameras; got images of " + str(list(images)))
            return normalized.reshape(len(slots), -1).to(self.device)
        frames = check_images(images, self.cameras, observations.shape[:2], self.config.image_size)
        self.encoder_calls += 1
        return self.network.encode(
            normalized.to(self.device),
            {c: torch.from_numpy(f).to(self.device) for c, f in frames.items()},
        )

    def _check_batch(self, observations: np.ndarray, slots: Sequence[int]) -> np.ndarray:
        expected = (len(slots), self.obs_horizon, self.config.obs_dim)
        observations = np.asarray(observations, np.float32)
        if observations.shape != expected:
            raise ValueError(f"observations must have shape {expected}, got {observations.shape}")
        if len(set(slots)) != len(slots):
            raise ValueError(f"slots must be distinct, got {list(slots)}")
        if not np.isfinite(observations).all():
            raise ValueError("observations contain NaN or infinity")
        return observations

    def _eps_fn(self, cond: torch.Tensor):
        def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
            self.network_calls += 1  # one batched call counts once
            return self.network(x, torch.full((x.shape[0],), t, device=self.device), cond)

        return eps_fn

    def _noise(self, batch: int) -> torch.Tensor:
        shape = (batch, self.pred_horizon, self.config.action_dim)
        return torch.randn(shape, generator=self.generator, device=self.device)

    def _sample_full(self, cond: torch.Tensor) -> torch.Tensor:
        batch = cond.shape[0]
        return sample_ddpm(
            self._eps_fn(cond), self.schedule, self._noise(batch), lambda: self._noise(batch)
        )
