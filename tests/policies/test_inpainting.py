"""Freezing the delayed prefix: replacement keeps it exactly, RTC guidance pulls towards it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from policies.diffusion.inpainting import Inpainting, guided_eps, soft_mask
from policies.diffusion.policy import DiffusionPolicy
from policies.diffusion.sampler import rti_update, sample_ddim, sample_ddpm, shift_chunk
from policies.diffusion.scheduler import NoiseSchedule
from tests.policies.test_deploy import CHECKPOINT

SCHEDULE = NoiseSchedule(100)


def _noise(shape, seed=0):
    rng = np.random.default_rng(seed)
    return lambda: rng.normal(size=shape)


def network(x, t):  # not an oracle: the prefix can only come out right by inpainting
    return np.tanh(x + 0.01 * t)


def test_soft_mask_is_one_on_the_frozen_rows_then_decays_to_zero() -> None:
    weights = soft_mask(16, frozen=3, overlap_end=12)
    np.testing.assert_array_equal(weights[:3], 1.0)
    assert np.all(np.diff(weights[3:12]) < 0) and 0 < weights[11] < weights[3] < 1
    np.testing.assert_array_equal(weights[12:], 0.0)
    with pytest.raises(ValueError):
        soft_mask(16, frozen=17, overlap_end=12)


@pytest.mark.parametrize("chain", ["ddim", "ddpm", "rti-state", "rti-renoise"])
def test_replacement_keeps_the_frozen_prefix_exactly(chain: str) -> None:
    shape = (2, 16, 4)
    previous = np.random.default_rng(1).uniform(-1, 1, shape)
    known = shift_chunk(previous, 3)
    inpainting = Inpainting(known, frozen=5, noised=chain != "rti-state")
    start = np.random.default_rng(2).normal(size=shape)
    if chain == "ddim":
        out = sample_ddim(
            network,
            SCHEDULE,
            start,
            SCHEDULE.ddim_timesteps(10),
            noise=_noise(shape),
            inpainting=inpainting,
        )
    elif chain == "ddpm":
        out = sample_ddpm(network, SCHEDULE, start, _noise(shape), inpainting=inpainting)
    else:
        mode = chain.removeprefix("rti-")
        out = rti_update(
            network, SCHEDULE, previous, 3, 4, _noise(shape), mode, inpainting=inpainting
        )
    np.testing.assert_array_equal(out[:, :5], known[:, :5])
    assert not np.allclose(out[:, 5:], known[:, 5:])  # the rest is the network's own


def _gaussian_denoiser(mean: float, std: float):
    """The exact ε-prediction for data ~ N(mean, std²) per element: its optimum is known."""

    def eps(x: torch.Tensor, t: int) -> torch.Tensor:
        ab = SCHEDULE.alpha_bar(t)
        variance = ab * std**2 + 1 - ab
        x0 = mean + std**2 * math.sqrt(ab) / variance * (x - math.sqrt(ab) * mean)
        return (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)

    return eps


def test_guidance_with_beta_zero_is_plain_sampling() -> None:
    eps = _gaussian_denoiser(0.0, 0.5)
    x = torch.randn(3, 16, 2, generator=torch.Generator().manual_seed(0))
    known = torch.ones(3, 16, 2)
    weights = torch.from_numpy(soft_mask(16, 4, 12))
    for t in (90, 40, 5):
        plain = eps(x, t)
        assert torch.equal(guided_eps(eps, SCHEDULE, x, t, known, weights, beta=0.0), plain)
    inpainting = Inpainting(known, 4, "guide", weights, beta=0.0)
    timesteps = SCHEDULE.ddim_timesteps(10)
    guided = sample_ddim(eps, SCHEDULE, x, timesteps, inpainting=inpainting)
    torch.testing.assert_close(guided, sample_ddim(eps, SCHEDULE, x, timesteps), rtol=0, atol=0)


def test_guidance_pulls_the_prefix_towards_the_frozen_actions() -> None:
    eps = _gaussian_denoiser(0.0, 0.5)  # unguided samples centre on 0
    x = torch.randn(64, 16, 2, generator=torch.Generator().manual_seed(1))
    known = torch.full((64, 16, 2), 0.8)
    weights = torch.from_numpy(soft_mask(16, 4, 12))
    timesteps = SCHEDULE.ddim_timesteps(10)
    plain = sample_ddim(eps, SCHEDULE, x, timesteps)
    inpainting = Inpainting(known, 4, "guide", weights, beta=5.0)
    guided = sample_ddim(eps, SCHEDULE, x, timesteps, inpainting=inpainting)
    distance = lambda sample, rows: (sample[:, rows] - 0.8).abs().mean().item()  # noqa: E731
    assert distance(guided, slice(0, 4)) < 0.5 * distance(plain, slice(0, 4))
    # Beyond the mask (weight 0) the rows move only through the network, here not at all.
    torch.testing.assert_close(guided[:, 12:], plain[:, 12:])


def test_policy_inpaints_every_prediction_after_the_first() -> None:
    policy = DiffusionPolicy(CHECKPOINT, sampler="ddim", executed=4, inpaint="replace", frozen=3)
    observations = np.zeros((1, policy.obs_horizon, policy.obs_dim), np.float32)
    first = policy.predict_normalized(observations)
    guess = policy.rti.guess.clone()
    second = policy.predict_normalized(observations)
    known = shift_chunk(guess, 4)
    torch.testing.assert_close(second[:, :3], known[:, :3], rtol=0, atol=0)
    assert not torch.equal(first[:, :3], second[:, :3])
    with pytest.raises(ValueError, match="ddim or rti"):
        DiffusionPolicy(CHECKPOINT, sampler="ddpm", inpaint="replace")
    with pytest.raises(ValueError, match="frozen"):
        DiffusionPolicy(CHECKPOINT, sampler="ddim", executed=8, inpaint="guide", frozen=12)
