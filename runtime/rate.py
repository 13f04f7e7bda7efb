"""A fixed-rate loop on the monotonic clock, with deadline accounting.

Waiting sleeps until `spin` seconds before the deadline, then spins: `time.sleep` alone
overshoots by up to a scheduler tick. Two latenesses are kept per tick:

- wake-up lateness: when `time.sleep` returned, minus when it was asked to return. What
  a loop that does not spin would see: the operating system's figure, and the one
  targets use.
- tick lateness (jitter): when the tick starts, after the spin, minus the deadline. With
  a spin window this is mostly how fast the spin loop notices the deadline.

The spin costs CPU: `RateStats.spin_share` is the fraction of wall time spent spinning.
A tick that starts more than LATE_AFTER after its deadline is late; one more than a
period late is a missed deadline. On overrun the loop either skips to the next future
deadline ("skip") or keeps the grid and catches up ("catch_up").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# Seconds before a deadline spent spinning instead of sleeping, by default. 0 never
# spins: the tick starts when the OS wakes the thread (docs/runtime.md has the figures).
SPIN_WINDOW = 0.001
# A tick this much behind its deadline counts as late: half the default spin window, well
# above how long the spin loop takes to notice the deadline (microseconds), so a "late"
# tick is one that the sleep overslept, not noise of the spin itself.
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
    wake_lateness: list[float] = field(default_factory=list)  # seconds, before the spin
    spun: float = 0.0  # seconds spent spinning
    started: float = field(default_factory=time.monotonic)

    @property
    def spin_share(self) -> float:
        """Fraction of the wall time since the loop started spent spinning (of one core)."""
        return self.spun / max(1e-9, time.monotonic() - self.started)

    def misses_per_10k(self) -> float:
        return 1e4 * self.missed / max(1, self.ticks)

    def histogram(self) -> dict[str, int]:
        """Ticks per lateness bin, keyed by the bin's upper edge: {"<=0.01ms": n, ...}."""
        counts = [0] * (len(HISTOGRAM_EDGES_MS) + 1)
        for seconds in self.lateness:
            ms = seconds * 1e3
            counts[next((i for i, e in enumerate(HISTOGRAM_EDGES_MS) if ms <= e), -1)] += 1
        keys = [f"<={e:g}ms" for e in HISTOGRAM_EDGES_MS] + [f">{HISTOGRAM_EDGES_MS[-1]:g}ms"]
        return dict(zip(keys, counts, strict=True))


class Rate:
    def __init__(
        self,
        hz: float,
        overrun: str = "skip",
        keep_lateness: int = 100_000,
        spin: float = SPIN_WINDOW,
    ):
        if hz <= 0:
            raise ValueError(f"rate must be positive, got {hz}")
        if overrun not in OVERRUNS:
            raise ValueError(f"overrun must be one of {OVERRUNS}, got {overrun!r}")
        if not 0 <= spin < 1.0 / hz:
            raise ValueError(f"spin must be in [0, one period = {1.0 / hz} s), got {spin}")
        self.period = 1.0 / hz
        self.overrun = overrun
        self.spin = spin
        self.stats = RateStats()
        self._keep = keep_lateness
        self._deadline = time.monotonic() + self.period

    def reset(self) -> None:
        self._deadline = time.monotonic() + self.period

    def sleep(self) -> float:
        """Wait for the next deadline; return how late this tick starts (seconds)."""
        remaining = self._deadline - time.monotonic()
        wake_at = self._deadline - self.spin
        slept = remaining > self.spin
        if slept:
            time.sleep(remaining - self.spin)
        woke = time.monotonic()
        # How late the OS woke us for the time we asked: a loop without the spin would
        # start its tick that late. Not asleep (already behind): lateness past the deadline.
        oversleep = woke - wake_at if slept else max(0.0, woke - self._deadline)
        while time.monotonic() < self._deadline:
            pass
        now = time.monotonic()
        self.stats.spun += now - woke
        lateness = now - self._deadline
        self._account(lateness, oversleep)
        self._deadline += self.period
        if self.overrun == "skip" and now >= self._deadline:
            behind = int((now - self._deadline) // self.period) + 1
            self._deadline += behind * self.period
        return lateness

    def _account(self, lateness: float, wake_lateness: float) -> None:
        stats = self.stats
        stats.ticks += 1
        if lateness > LATE_AFTER:
            stats.late += 1
        if lateness > self.period:
            stats.missed += 1
        if len(stats.lateness) < self._keep:
            stats.lateness.append(lateness)
            stats.wake_lateness.append(wake_lateness)
