"""Generation schedules: Macro-from-Micro Planning (MMPL) and plain frame-by-frame.

A schedule is a list of waves; a wave is a list of requests that are generated together
in one batched call, each request naming the frame it makes and the frames it is
conditioned on. Positions are relative to the segment's first frame (position 0, the
last frame of the previous segment); negative positions reach back into earlier
segments.

MMPL for a segment of N frames (TeleWorld):
  plan      the planning frames P = {≈2, N/2, N}, one after another, each conditioned
            on the segment's first frame and on the plan frame before it;
  populate  every other frame, conditioned on the plan frames on either side of it.
            They depend only on plan frames, so they form one wave.
The last plan frame starts the next segment, so error accumulates per segment (three
sequential generations) instead of per frame (N). With `pipelined` the populate wave of
segment s runs in the same batch as the first plan wave of segment s+1 — planning ahead
while populating, on the same compute.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    segment: int
    position: int  # the frame made, relative to the segment's first frame
    context_a: int
    context_b: int | None = None
    planning: bool = False

    def absolute(self, frames_per_segment: int) -> tuple[int, int, int | None]:
        """(frame, context A, context B) as indices into the whole stream."""
        base = self.segment * frames_per_segment
        b = None if self.context_b is None else base + self.context_b
        return base + self.position, base + self.context_a, b


Wave = list[Request]


def planning_positions(frames_per_segment: int) -> list[int]:
    n = frames_per_segment
    if n < 1:
        raise ValueError(f"frames_per_segment must be at least 1, got {n}")
    return sorted({min(2, n), max(1, n // 2), n})


def mmpl_segment(segment: int, n: int) -> tuple[list[Wave], Wave]:
    """(plan waves, populate wave) of one segment."""
    plans = planning_positions(n)
    plan_waves = [
        [Request(segment, p, 0, plans[i - 1] if i else None, planning=True)]
        for i, p in enumerate(plans)
    ]
    anchors = [0, *plans]
    populate = [
        Request(segment, p, left, right)
        for left, right in itertools.pairwise(anchors)
        for p in range(left + 1, right)
    ]
    return plan_waves, populate


SCHEDULES = ("mmpl", "framewise")


def check_schedule(kind: str) -> None:
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; choose mmpl or framewise")


def segment_waves(
    kind: str, segment: int, n: int, pending: Wave, pipelined: bool = True
) -> tuple[list[Wave], Wave]:
    """The waves that run once segment `segment`'s camera path is known, and what is left
    pending until the next segment (MMPL's populate wave, when pipelined) or the end."""
    check_schedule(kind)
    if kind == "framewise":
        waves = []
        for p in range(1, n + 1):
            has_b = segment * n + p - 2 >= 0
            waves.append([Request(segment, p, p - 1, p - 2 if has_b else None, planning=p == n)])
        return waves, []
    plan_waves, populate = mmpl_segment(segment, n)
    if pipelined:
        return [pending + plan_waves[0], *plan_waves[1:]], populate
    return [*plan_waves, populate] if populate else plan_waves, []


def schedule(kind: str, segments: int, n: int, pipelined: bool = True) -> list[Wave]:
    """Every wave of `segments` segments, in the order they run."""
    if segments < 1:
        raise ValueError(f"segments must be at least 1, got {segments}")
    waves: list[Wave] = []
    pending: Wave = []
    for s in range(segments):
        more, pending = segment_waves(kind, s, n, pending, pipelined)
        waves.extend(more)
    if pending:
        waves.append(pending)
    return waves
