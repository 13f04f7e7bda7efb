from __future__ import annotations

import pytest
import torch

from policies.diffusion.network import ConditionalUnet1D


def _net(**kwargs) -> ConditionalUnet1D:
    torch.manual_seed(0)
    return ConditionalUnet1D(action_dim=4, global_cond_dim=2 * 11, **kwargs).eval()


def test_shapes_and_batch_independence() -> None:
    net = _net()
    sample = torch.randn(3, 16, 4)
    step = torch.tensor([0, 50, 99])
    cond = torch.randn(3, 22)
    with torch.no_grad():
        out = net(sample, step, cond)
        single = net(sample[1:2], step[1:2], cond[1:2])
    assert out.shape == (3, 16, 4)
    torch.testing.assert_close(out[1:2], single, rtol=1e-4, atol=1e-5)  # GroupNorm, not BN


def test_the_condition_and_the_step_change_the_output() -> None:
    net = _net()
    sample, step, cond = torch.randn(1, 16, 4), torch.tensor([10]), torch.randn(1, 22)
    with torch.no_grad():
        base = net(sample, step, cond)
        assert not torch.allclose(base, net(sample, step, cond + 1.0))
        assert not torch.allclose(base, net(sample, torch.tensor([60]), cond))


@pytest.mark.parametrize("horizon", [8, 16, 32])
def test_horizons_divisible_by_four_round_trip(horizon: int) -> None:
    out = _net()(torch.randn(2, horizon, 4), torch.tensor([1, 2]), torch.randn(2, 22))
    assert out.shape == (2, horizon, 4)


def test_default_size_is_small_enough_for_a_cpu() -> None:
    parameters = sum(p.numel() for p in _net().parameters())
    assert 1e6 < parameters < 6e6
    with pytest.raises(ValueError, match="multiples of 8"):
        ConditionalUnet1D(4, 22, down_dims=(60, 120))
