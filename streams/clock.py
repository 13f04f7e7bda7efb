"""Clock offset and round-trip time between two processes, NTP style.

One exchange gives four monotonic times: the client sends at t0, the server receives
at t1 and replies at t2, the client receives at t3. Then

    rtt    = (t3 - t0) - (t2 - t1)
    offset = ((t1 - t0) + (t2 - t3)) / 2        (server clock minus client clock)

The exchange with the smallest rtt bounds the offset error most tightly (±rtt/2), so
the estimate keeps that one. runtime/ uses the offset to map a peer's timestamps onto
the local clock for latency compensation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ClockSample:
    t0: float  # client send (client clock)
    t1: float  # server receive (server clock)
    t2: float  # server send (server clock)
    t3: float  # client receive (client clock)

    @property
    def rtt(self) -> float:
        return (self.t3 - self.t0) - (self.t2 - self.t1)

    @property
    def offset(self) -> float:
        return ((self.t1 - self.t0) + (self.t2 - self.t3)) / 2


@dataclass(frozen=True)
class ClockEstimate:
    offset: float  # server clock minus client clock, seconds
    rtt: float  # round trip of the best exchange, seconds
    samples: int

    def to_local(self, t_remote: float) -> float:
        """A time on the server's clock expressed on the client's clock."""
        return t_remote - self.offset

    def to_remote(self, t_local: float) -> float:
        return t_local + self.offset


def estimate(samples: Iterable[ClockSample]) -> ClockEstimate:
    samples = list(samples)
    if not samples:
        raise ValueError("need at least one clock sample")
    best = min(samples, key=lambda s: s.rtt)
    return ClockEstimate(offset=best.offset, rtt=best.rtt, samples=len(samples))
