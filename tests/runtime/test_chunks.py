"""Choosing and merging due actions from timestamped chunks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.chunks import ChunkExecutor
from streams import ActionChunk


def chunk(value: float, t_first: float, length: int = 4, gripper: float = 1.0) -> ActionChunk:
    actions = np.tile([value, value, gripper], (length, 1)).astype(np.float32)
    actions[:, 0] += np.arange(length)  # action i of the chunk is value + i on axis 0
    return ActionChunk(actions=actions, t_first=t_first, dt=0.1)


def test_latest_executes_the_action_due_now_from_the_newest_chunk() -> None:
    executor = ChunkExecutor("latest", staleness=1.0)
    executor.offer(chunk(0.0, t_first=10.0), now=10.0)
    assert executor.due_action(10.05)[0] == 0.0
    assert executor.due_action(10.25)[0] == 2.0  # action 2 covers [10.2, 10.3)
    executor.offer(chunk(5.0, t_first=10.2), now=10.2)
    assert executor.due_action(10.25)[0] == 5.0


def test_actions_already_past_on_arrival_are_dropped_and_counted() -> None:
    executor = ChunkExecutor("latest", staleness=1.0)
    executor.offer(chunk(0.0, t_first=10.0), now=10.25)  # arrives 2.5 periods late
    assert executor.counters["late_actions"] == 2
    assert executor.due_action(10.25)[0] == 2.0
    executor.offer(chunk(0.0, t_first=9.0), now=10.25)  # entirely in the past
    assert executor.counters["late_chunks"] == 1


def test_staleness_and_exhausted_chunks_mean_hold() -> None:
    executor = ChunkExecutor("latest", staleness=0.3)
    assert executor.due_action(0.0) is None  # nothing received yet
    executor.offer(chunk(0.0, t_first=10.0, length=8), now=10.0)
    assert executor.due_action(10.29) is not None
    assert executor.due_action(10.31) is None  # stale: the watchdog holds
    executor.offer(chunk(0.0, t_first=20.0, length=2), now=20.0)
    assert executor.due_action(20.25) is None  # fresh, but its actions ran out
    assert executor.counters["stale_chunks"] == 1


@pytest.mark.parametrize(
    "strategy, expected",
    [
        ("latest", 11.0),
        ("average", (1.0 * 11.0 + 0.5 * 2.0) / 1.5),  # newest weighs 1, the older 1/2
        ("ensemble", (2.0 + np.exp(-0.01) * 11.0) / (1 + np.exp(-0.01))),  # oldest weighs 1
    ],
)
def test_overlapping_chunks_merge_by_strategy(strategy, expected) -> None:
    executor = ChunkExecutor(strategy, staleness=1.0, discrete_dims=[2])
    executor.offer(chunk(0.0, t_first=10.0, gripper=-1.0), now=10.0)
    executor.offer(chunk(10.0, t_first=10.1, gripper=1.0), now=10.1)
    action = executor.due_action(10.25)  # old chunk's action 2, new chunk's action 1
    assert action[0] == pytest.approx(expected, rel=1e-6)
    assert action[2] == 1.0  # the gripper comes from the newest chunk, never averaged


def test_clock_offset_shifts_chunk_times_into_ours() -> None:
    executor = ChunkExecutor("latest", staleness=1.0, clock_offset=100.0)
    executor.offer(chunk(0.0, t_first=110.0), now=10.0)  # the chunk's clock runs 100 s ahead
    assert executor.due_action(10.15)[0] == 1.0


@pytest.mark.parametrize(
    ("t_first", "dt"), [(-1e300, 1e-9), (1e300, 1e-9), (0.0, 5e-324), (10.0, 1e300)]
)
def test_extreme_but_valid_timestamps_never_raise(t_first: float, dt: float) -> None:
    """The protocol allows any finite t_first and positive dt; their ratio may not be."""
    executor = ChunkExecutor("ensemble", staleness=1.0)
    executor.offer(chunk(1.0, t_first=10.0), now=10.0)
    extreme = ActionChunk(actions=np.zeros((4, 3), np.float32), t_first=t_first, dt=dt)
    executor.offer(extreme, now=10.0)
    due = executor.due_action(10.05)
    assert due is None or np.isfinite(due).all()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="merge strategy"):
        ChunkExecutor("median")
    with pytest.raises(ValueError, match="staleness"):
        ChunkExecutor("latest", staleness=0)


@settings(max_examples=300, deadline=None)
@given(
    t_first=st.floats(allow_nan=False, allow_infinity=False),
    dt=st.floats(min_value=0, exclude_min=True, allow_infinity=False),
    rows=st.integers(1, 20),
    now=st.floats(-1e6, 1e6),
    strategy=st.sampled_from(["latest", "average", "ensemble"]),
)
def test_any_chunk_the_protocol_allows_is_offered_and_merged_without_raising(
    t_first: float, dt: float, rows: int, now: float, strategy: str
) -> None:
    try:
        extreme = ActionChunk(actions=np.ones((rows, 3), np.float32), t_first=t_first, dt=dt)
    except ValueError:
        return  # refused by the message's own validation: never reaches an executor
    executor = ChunkExecutor(strategy, staleness=1.0)
    executor.offer(chunk(1.0, t_first=now), now=now)
    executor.offer(extreme, now=now)
    due = executor.due_action(now + 0.05)
    assert due is not None and np.isfinite(due).all()  # the first chunk still covers now
