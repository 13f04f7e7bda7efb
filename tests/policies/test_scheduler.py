"""The schedules against closed forms derived independently of the implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from policies.diffusion.scheduler import NoiseSchedule, squared_cosine_betas


def test_squared_cosine_schedule_matches_its_definition() -> None:
    betas = squared_cosine_betas(100)
    f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    # ᾱ_t telescopes to f((t+1)/K) / f(0) wherever no beta hit the 0.999 cap.
    alphas_cumprod = np.cumprod(1 - betas)
    for t in (0, 10, 50, 90):
        assert alphas_cumprod[t] == pytest.approx(f((t + 1) / 100) / f(0), rel=1e-9)
    assert betas.max() <= 0.999 and betas.min() > 0
    assert np.all(np.diff(alphas_cumprod) < 0)


@pytest.mark.parametrize("t", [1, 5, 50, 99])
def test_ddpm_posterior_equals_the_gaussian_product(t: int) -> None:
    """q(x_{t−1}|x_t,x_0) ∝ q(x_t|x_{t−1}) q(x_{t−1}|x_0): precision-weighted combination."""
    s = NoiseSchedule(100)
    beta, ab_prev = s.betas[t], s.alphas_cumprod[t - 1]
    precision = (1 - beta) / beta + 1 / (1 - ab_prev)
    variance = 1 / precision
    coef_xt = variance * math.sqrt(1 - beta) / beta
    coef_x0 = variance * math.sqrt(ab_prev) / (1 - ab_prev)
    assert s.posterior(t) == pytest.approx((coef_x0, coef_xt, variance), rel=1e-9)


def test_ddpm_step_with_the_true_noise_lands_on_the_posterior_mean() -> None:
    s = NoiseSchedule(100)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-0.9, 0.9, (4, 16, 2))
    eps = rng.normal(size=x0.shape)
    t = 30
    x_t = s.add_noise(x0, eps, t)
    coef_x0, coef_xt, _ = s.posterior(t)
    np.testing.assert_allclose(
        s.ddpm_step(x_t, eps, t, noise=np.zeros_like(x0)), coef_x0 * x0 + coef_xt * x_t, atol=1e-12
    )
    # At t = 0 the step returns the mean, which with the true noise is x_0 itself.
    np.testing.assert_allclose(s.ddpm_step(s.add_noise(x0, eps, 0), eps, 0, None), x0, atol=1e-9)


def test_ddim_with_eta_zero_follows_the_deterministic_trajectory() -> None:
    s = NoiseSchedule(100)
    rng = np.random.default_rng(1)
    x0 = rng.uniform(-0.9, 0.9, (3, 8, 4))
    eps = rng.normal(size=x0.shape)
    timesteps = s.ddim_timesteps(10)
    assert timesteps == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    x = s.add_noise(x0, eps, timesteps[0])
    for t, t_prev in zip(timesteps, [*timesteps[1:], -1], strict=True):
        x = s.ddim_step(x, eps, t, t_prev)  # an oracle epsilon
        np.testing.assert_allclose(x, s.add_noise(x0, eps, t_prev), atol=1e-9)
    np.testing.assert_allclose(x, x0, atol=1e-9)


def test_ddim_eta_one_has_the_ddpm_variance_for_adjacent_steps() -> None:
    s = NoiseSchedule(100)
    t = 40
    zero = np.zeros(1)
    one = np.ones(1)
    x_t = np.array([0.3])
    spread = s.ddim_step(x_t, zero, t, t - 1, eta=1.0, noise=one) - s.ddim_step(
        x_t, zero, t, t - 1, eta=1.0, noise=zero
    )
    assert spread[0] ** 2 == pytest.approx(s.posterior(t)[2], rel=1e-9)


def test_numpy_and_torch_give_the_same_steps() -> None:
    s = NoiseSchedule(100)
    rng = np.random.default_rng(2)
    x, eps, noise = (rng.normal(size=(2, 16, 4)) for _ in range(3))
    as_torch = [torch.from_numpy(a) for a in (x, eps, noise)]
    np.testing.assert_allclose(
        s.ddpm_step(*as_torch[:2], 20, as_torch[2]).numpy(),
        s.ddpm_step(x, eps, 20, noise),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        s.ddim_step(*as_torch[:2], 50, 40, 0.5, as_torch[2]).numpy(),
        s.ddim_step(x, eps, 50, 40, 0.5, noise),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        s.predict_x0(as_torch[0] * 10, as_torch[1], 5).numpy(),
        s.predict_x0(x * 10, eps, 5),
        atol=1e-12,
    )


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="train_steps"):
        NoiseSchedule(1)
    with pytest.raises(ValueError, match="DDIM steps"):
        NoiseSchedule(100).ddim_timesteps(0)
    with pytest.raises(ValueError, match="needs noise"):
        NoiseSchedule(100).ddim_step(np.zeros(1), np.zeros(1), 50, 40, eta=1.0)
