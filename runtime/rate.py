"""A fixed-rate loop on the monotonic clock, with deadline accounting.

Waiting sleeps until about 1 ms before the deadline, then spins: `time.sleep` alone
overshoots by up to a scheduler tick. A tick that starts after its deadline is late;
a late tick beyond a whole period is a missed deadline. On overrun the loop either
skips to the next future deadline ("skip") or keeps the grid and catches up ("catch_up").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

SPIN_WINDOW = 0.001  # seconds before a deadline spent spinning instead of sleeping
# A tick this much behind its deadline counts as late: half the spin window, well above
# how long the spin loop takes to notice the deadline (microseconds), so a "late" tick
# is one that the sleep overslept, not noise of the spin itself.
LATE_AFTER = 0.0005
OVERRUNS = ("skip", "catch_up")
# Upper edges (ms) of the jitter histogram's bins; the last bin holds everything above.
HISTOGRAM_EDGES_MS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)


@dataclass
class RateStats:
    ticks: int = 0
    late: int = 0  # started after the deadline
    missed: int = 0  # started more than one period after the deadline
    lateness: list[float] = field(default_factory=list)  # seconds, one per tick

    def histogram(self) -> dict[str, int]:
        """Ticks per lateness bin, keyed by the bin's upper edge: {"<=0.01ms": n, ...}."""
        counts = [0] * (len(HISTOGRAM_EDGES_MS) + 1)
        for seconds in self.lateness:
            ms = seconds * 1e3
            counts[next((i for i, e in enumerate(HISTOGRAM_EDGES_MS) if ms <= e), -1)] += 1
        keys = [f"<={e:g}ms" for e in HISTOGRAM_EDGES_MS] + [f">{HISTOGRAM_EDGES_MS[-1]:g}ms"]
        return dict(zip(keys, counts, strict=True))


class Rate:
    def __init__(self, hz: float, overrun: str = "skip", keep_lateness: int = 100_000):
        if hz <= 0:
            raise ValueError(f"rate must be positive, got {hz}")
        if overrun not in OVERRUNS:
            raise ValueError(f"overrun must be one of {OVERRUNS}, got {overrun!r}")
        self.period = 1.0 / hz
        self.overrun = overrun
        self.stats = RateStats()
        self._keep = keep_lateness
        self._deadline = time.monotonic() + self.period

    def reset(self) -> None:
        self._deadline = time.monotonic() + self.period

    def sleep(self) -> float:
        """Wait for the next deadline; return how late this tick starts (seconds)."""
        remaining = self._deadline - time.monotonic()
        if remaining > SPIN_WINDOW:
            time.sleep(remaining - SPIN_WINDOW)
        while time.monotonic() < self._deadline:
            pass
        now = time.monotonic()
        lateness = now - self._deadline
        self._account(lateness)
        self._deadline += self.period
        if self.overrun == "skip" and now >= self._deadline:
            behind = int((now - self._deadline) // self.period) + 1
            self._deadline += behind * self.period
        return lateness

    def _account(self, lateness: float) -> None:
        stats = self.stats
        stats.ticks += 1
        if lateness > LATE_AFTER:
            stats.late += 1
        if lateness > self.period:
            stats.missed += 1
        if len(stats.lateness) < self._keep:
            stats.lateness.append(lateness)
