from __future__ import annotations

import numpy as np
import pytest
import torch

from policies.diffusion.sampler import (
    RTIState,
    clip_discrete,
    rti_network_calls,
    rti_timesteps,
    rti_update,
    sample_ddim,
    sample_ddpm,
    shift_chunk,
    warm_start,
)
from policies.diffusion.scheduler import NoiseSchedule


class CountingOracle:
    """An epsilon 'network' that knows the clean sample: counts how often it is called."""

    def __init__(self, schedule: NoiseSchedule, x0: np.ndarray):
        self.schedule, self.x0, self.calls = schedule, x0, 0

    def __call__(self, x, t):
        self.calls += 1
        ab = self.schedule.alpha_bar(t)
        return (x - np.sqrt(ab) * self.x0) / np.sqrt(1 - ab)


def _noise(shape, seed=0):
    rng = np.random.default_rng(seed)
    return lambda: rng.normal(size=shape)


def test_shift_drops_executed_and_repeats_the_last() -> None:
    chunk = np.arange(8, dtype=float).reshape(1, 4, 2)  # actions [0,1],[2,3],[4,5],[6,7]
    np.testing.assert_array_equal(shift_chunk(chunk, 1)[0], [[2, 3], [4, 5], [6, 7], [6, 7]])
    np.testing.assert_array_equal(shift_chunk(chunk, 3)[0], [[6, 7]] * 4)
    np.testing.assert_array_equal(shift_chunk(chunk, 0), chunk)
    torch_shifted = shift_chunk(torch.from_numpy(chunk), 2)
    np.testing.assert_array_equal(torch_shifted.numpy(), shift_chunk(chunk, 2))
    with pytest.raises(ValueError):
        shift_chunk(chunk, 5)


def test_clip_snaps_discrete_dims_to_plus_minus_one_over_factor() -> None:
    chunk = np.array([[[0.3, 0.9], [0.1, -0.2], [0.5, 0.0]]])
    clipped = clip_discrete(chunk, [1], 10.0)
    np.testing.assert_allclose(clipped[..., 1], [[0.1, -0.1, -0.1]])
    np.testing.assert_array_equal(clipped[..., 0], chunk[..., 0])  # continuous untouched
    assert chunk[0, 0, 1] == 0.9  # the input is not modified


def test_full_ddpm_and_ddim_call_the_network_k_times() -> None:
    s = NoiseSchedule(100)
    x0 = np.random.default_rng(3).uniform(-0.8, 0.8, (1, 16, 4))
    oracle = CountingOracle(s, x0)
    out = sample_ddpm(oracle, s, np.random.default_rng(4).normal(size=x0.shape), _noise(x0.shape))
    assert oracle.calls == 100
    np.testing.assert_allclose(out, x0, atol=1e-6)
    oracle.calls = 0
    out = sample_ddim(
        oracle, s, np.random.default_rng(5).normal(size=x0.shape), s.ddim_timesteps(10)
    )
    assert oracle.calls == 10
    np.testing.assert_allclose(out, x0, atol=1e-6)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("mode", ["state", "renoise"])
def test_rti_update_makes_k_prime_plus_one_calls(sampler: str, mode: str) -> None:
    s = NoiseSchedule(100)
    previous = np.random.default_rng(6).uniform(-0.5, 0.5, (1, 16, 4))
    target = shift_chunk(previous, 1)
    oracle = CountingOracle(s, target)
    out = rti_update(
        oracle, s, previous, 1, k_prime=2, noise=_noise(previous.shape), mode=mode, sampler=sampler
    )
    assert oracle.calls == 3
    assert out.shape == previous.shape
    np.testing.assert_allclose(out, target, atol=1e-6)  # an oracle lands on its sample


def test_strided_ddim_rti_steps_spread_from_k_prime_to_zero() -> None:
    assert rti_timesteps(14, 3) == [14, 7, 0]
    assert rti_timesteps(14, 1) == [14]
    assert rti_timesteps(4, 0) == rti_timesteps(4, 5) == [4, 3, 2, 1, 0]
    assert rti_network_calls(14, "ddim", 3) == 3 and rti_network_calls(14, "ddpm") == 15
    for k_prime in range(12):
        for steps in range(1, k_prime + 2):
            timesteps = rti_timesteps(k_prime, steps)
            assert len(set(timesteps)) == steps and timesteps[0] == k_prime
            assert timesteps == sorted(timesteps, reverse=True)
            assert timesteps[-1] == (0 if steps > 1 else k_prime)  # one step: K' to clean
    with pytest.raises(ValueError, match="K'\\+1"):
        rti_timesteps(2, 4)


@pytest.mark.parametrize("mode", ["state", "renoise"])
def test_strided_ddim_rti_update_is_the_ddim_chain_over_those_steps(mode: str) -> None:
    s = NoiseSchedule(100)
    previous = np.random.default_rng(7).uniform(-0.5, 0.5, (1, 16, 4))
    target = shift_chunk(previous, 1)
    oracle = CountingOracle(s, target)
    out = rti_update(oracle, s, previous, 1, 14, _noise(previous.shape), mode, "ddim", steps=3)
    assert oracle.calls == 3
    np.testing.assert_allclose(out, target, atol=1e-6)

    # Against a network that is not an oracle, it is exactly DDIM over [14, 7, 0].
    def network(x, t):
        return np.tanh(x + 0.01 * t)

    start = warm_start(s, target, 14, "state", None)
    expected = sample_ddim(network, s, start, [14, 7, 0])
    got = rti_update(network, s, previous, 1, 14, None, "state", "ddim", steps=3)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="DDIM"):
        rti_update(oracle, s, previous, 1, 14, _noise(previous.shape), sampler="ddpm", steps=3)


def test_renoise_diffuses_the_guess_to_level_k_prime() -> None:
    s = NoiseSchedule(100)
    guess = np.full((4000, 1, 1), 0.5)
    noisy = warm_start(s, guess, 30, "renoise", _noise(guess.shape))
    assert noisy.mean() == pytest.approx(np.sqrt(s.alpha_bar(30)) * 0.5, abs=0.03)
    assert noisy.var() == pytest.approx(1 - s.alpha_bar(30), rel=0.1)
    assert warm_start(s, guess, 30, "state", _noise(guess.shape)) is guess


def test_rti_state_clears_on_reset_and_clips_what_it_stores() -> None:
    state = RTIState(discrete_dims=[3], clip_factor=10.0)
    assert not state.warm
    state.store(np.array([[[0.1, 0.2, 0.3, 0.7]]]))
    assert state.warm and state.guess[0, 0, 3] == pytest.approx(0.1)
    state.reset()
    assert not state.warm and state.guess is None


def test_bad_arguments() -> None:
    s = NoiseSchedule(100)
    x = np.zeros((1, 4, 2))
    with pytest.raises(ValueError, match="k_prime"):
        rti_update(lambda x, t: x, s, x, 1, 100, _noise(x.shape))
    with pytest.raises(ValueError, match="mode"):
        rti_update(lambda x, t: x, s, x, 1, 3, _noise(x.shape), mode="guess")
    with pytest.raises(ValueError, match="sampler"):
        rti_update(lambda x, t: x, s, x, 1, 3, _noise(x.shape), sampler="euler")
