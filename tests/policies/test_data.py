from __future__ import annotations

import numpy as np
import pytest

from policies.diffusion.data import Normalizer, executed_slice, windows


def test_normalizer_maps_to_unit_range_and_back() -> None:
    data = np.array([[0.0, 10.0, -1.0], [2.0, 20.0, 1.0], [1.0, 15.0, 1.0]])
    norm = Normalizer.fit(data)
    y = norm.normalize(data)
    np.testing.assert_allclose(y.min(0), -1)
    np.testing.assert_allclose(y.max(0), 1)
    np.testing.assert_allclose(norm.unnormalize(y), data, atol=1e-5)
    constant = Normalizer.fit(np.ones((4, 2)))
    assert np.isfinite(constant.normalize(np.ones((1, 2)))).all()
    restored = Normalizer.from_dict(norm.to_dict())
    np.testing.assert_array_equal(restored.normalize(data), y)


def test_scale_method_shrinks_discrete_dims_by_the_factor() -> None:
    actions = np.array([[0.0, -1.0], [1.0, 1.0]])  # dim 1 is the gripper
    norm = Normalizer.fit(actions, discrete_dims=[1], discrete_factor=10.0)
    y = norm.normalize(actions)
    np.testing.assert_allclose(y[:, 1], [-0.1, 0.1])
    np.testing.assert_allclose(y[:, 0], [-1.0, 1.0])
    np.testing.assert_allclose(norm.unnormalize(y), actions, atol=1e-6)


def test_normalizer_refuses_non_finite_data() -> None:
    with pytest.raises(ValueError, match="NaN"):
        Normalizer.fit(np.array([[np.nan, 1.0]]))


def test_windows_follow_the_documented_alignment() -> None:
    obs = np.arange(5, dtype=float)[:, None]  # o_t = t
    act = 10 + np.arange(5, dtype=float)[:, None]  # a_t = 10 + t
    o, a = windows([obs], [act], obs_horizon=2, pred_horizon=4)
    assert o.shape == (5, 2, 1) and a.shape == (5, 4, 1)
    np.testing.assert_array_equal(o[2, :, 0], [1, 2])  # o_{i−1}, o_i at i = 2
    np.testing.assert_array_equal(a[2, :, 0], [11, 12, 13, 14])  # from a_{i−To+1}
    np.testing.assert_array_equal(o[0, :, 0], [0, 0])  # padded at the start
    np.testing.assert_array_equal(a[4, :, 0], [13, 14, 14, 14])  # padded at the end
    assert a[2, executed_slice(2, 2), 0].tolist() == [12, 13]  # a_i, a_{i+1}


def test_windows_reject_mismatched_episodes() -> None:
    with pytest.raises(ValueError, match="observations"):
        windows([np.zeros((3, 1))], [np.zeros((4, 1))], 2, 4)
    with pytest.raises(ValueError, match="To"):
        windows([np.zeros((3, 1))], [np.zeros((3, 1))], 3, 2)
