"""Image metrics for reconstruction: PSNR and SSIM (Wang et al. 2004), numpy only.

SSIM follows the common convention (scikit-image's `structural_similarity` with
`gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1`): an
11x11 Gaussian window, the map averaged away from the border the window cannot cover.
tests/world/test_metrics.py checks both against scikit-image.
"""

from __future__ import annotations

import math

import numpy as np


def psnr(mse: float) -> float:
    """PSNR in dB of images in [0, 1] from their mean squared error."""
    return float("inf") if mse <= 0 else float(-10 * math.log10(mse))


SIGMA, RADIUS = 1.5, 5  # scikit-image: radius = int(3.5 * sigma + 0.5)


def _gaussian_blur(image: np.ndarray, sigma: float = SIGMA, radius: int = RADIUS) -> np.ndarray:
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(image, ((radius, radius), (radius, radius)), mode="reflect")
    rows = sum(
        k * padded[:, radius + o : radius + o + image.shape[1]]
        for k, o in zip(kernel, offsets, strict=True)
    )
    return sum(
        k * rows[radius + o : radius + o + image.shape[0]]
        for k, o in zip(kernel, offsets, strict=True)
    )


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over pixels and channels of two (H, W, C) images in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for channel in range(a.shape[-1]):
        x, y = a[..., channel].astype(np.float64), b[..., channel].astype(np.float64)
        mx, my = _gaussian_blur(x), _gaussian_blur(y)
        vx = _gaussian_blur(x * x) - mx * mx
        vy = _gaussian_blur(y * y) - my * my
        cov = _gaussian_blur(x * y) - mx * my
        ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(ssim_map[RADIUS:-RADIUS, RADIUS:-RADIUS].mean())
    return float(np.mean(values))


def masked_mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    """Summed squared error over the masked pixels of (H, W, C) images, and their count,
    so that a split (co-visible / disoccluded) can be pooled over many frames."""
    squared = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(-1)
    return float(squared[mask].sum()), int(mask.sum())


def high_frequency_energy(image: np.ndarray) -> float:
    """Mean squared 4-neighbour Laplacian of the grey image: what blur removes."""
    grey = np.asarray(image, np.float64).mean(-1)
    laplacian = (
        grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1]
    )
    return float(np.mean(laplacian**2))


def sharpness(image: np.ndarray, truth: np.ndarray) -> float:
    """High-frequency energy relative to the truth frame's: 1 is as sharp as the truth,
    below 1 blurred, above 1 noisier. Blur lowers MSE, so fidelity needs this beside it."""
    reference = high_frequency_energy(truth)
    return float("nan") if reference == 0 else high_frequency_energy(image) / reference
