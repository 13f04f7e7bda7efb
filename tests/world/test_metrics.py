"""PSNR and SSIM, the metrics behind every dB figure, against scikit-image's."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sim.envs import make_env
from world.metrics import psnr, ssim


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1,
    )


def _rendered_pair() -> tuple[np.ndarray, np.ndarray]:
    """Two real frames of the Explore room, one camera step apart."""
    env = make_env("explore")
    env.reset(seed=0)
    first = env.unwrapped.render_camera("eye", 64, 64).rgb / 255.0
    env.step(np.array([1.0, 0, 0, 0.3, 0], np.float32))
    second = env.unwrapped.render_camera("eye", 64, 64).rgb / 255.0
    env.close()
    return first, second


@pytest.mark.parametrize("seed", [0, 1])
def test_psnr_and_ssim_agree_with_scikit_image_on_random_images(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.uniform(size=(48, 40, 3))
    b = np.clip(a + rng.normal(scale=0.1, size=a.shape), 0, 1)
    assert psnr(float(np.mean((a - b) ** 2))) == pytest.approx(
        peak_signal_noise_ratio(a, b, data_range=1.0), abs=1e-9
    )
    assert ssim(a, b) == pytest.approx(_reference_ssim(a, b), abs=1e-6)


def test_psnr_and_ssim_agree_with_scikit_image_on_rendered_frames() -> None:
    a, b = _rendered_pair()
    assert psnr(float(np.mean((a - b) ** 2))) == pytest.approx(
        peak_signal_noise_ratio(a, b, data_range=1.0), abs=1e-9
    )
    assert ssim(a, b) == pytest.approx(_reference_ssim(a, b), abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0) and psnr(0.0) == float("inf")


def test_sharpness_falls_with_blur_and_masked_mse_pools_pixels():
    from world.metrics import masked_mse, sharpness

    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, (32, 32, 3))
    blurred = (truth + np.roll(truth, 1, 0) + np.roll(truth, 1, 1) + np.roll(truth, 1, (0, 1))) / 4
    assert sharpness(truth, truth) == 1.0
    assert sharpness(blurred, truth) < 0.3
    mask = np.zeros((32, 32), bool)
    mask[:4] = True
    total, count = masked_mse(truth, truth + 0.5 * mask[..., None], mask)
    assert count == 4 * 32 and total / count == pytest.approx(0.25)
