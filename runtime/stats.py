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
