"""Small statistics shared by benchmarks and evaluations."""

from __future__ import annotations

import math


def wilson_half_width(successes: int, n: int, z: float = 1.96) -> float:
    """Half-width of the Wilson score interval for a success rate (95% by default).

    Unlike the normal approximation it stays sensible at 0% and 100% success.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes}/{n}")
    p = successes / n
    return z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """(low, high) of the Wilson score interval. It is not centred on the rate, so print
    the bounds rather than "p ± half-width" (0.98 ± 0.03 would reach past 1)."""
    half = wilson_half_width(successes, n, z)
    centre = (successes / n + z * z / (2 * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
