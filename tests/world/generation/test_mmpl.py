"""MMPL and frame-by-frame schedules, and the stream that runs them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.world.tiny import tiny_model
from world.generation.mmpl import planning_positions, schedule
from world.generation.rollout import WorldStream

N = 8


def _frames_made(waves) -> list[int]:
    return [r.absolute(N)[0] for wave in waves for r in wave]


def test_planning_positions_follow_the_design() -> None:
    assert planning_positions(8) == [2, 4, 8]
    assert planning_positions(16) == [2, 8, 16]
    assert planning_positions(2) == [1, 2]
    with pytest.raises(ValueError):
        planning_positions(0)


def test_mmpl_plans_first_then_populates_and_plans_ahead() -> None:
    waves = schedule("mmpl", 2, N, pipelined=True)
    assert [[r.absolute(N)[0] for r in w] for w in waves] == [
        [2], [4], [8],  # segment 0: plan frames, from frame 0 (and the previous plan)
        [1, 3, 5, 6, 7, 10],  # segment 0 populated in one batch with segment 1's first plan
        [12], [16],
        [9, 11, 13, 14, 15],
    ]  # fmt: skip
    serial = schedule("mmpl", 2, N, pipelined=False)
    assert [[r.absolute(N)[0] for r in w] for w in serial][3] == [1, 3, 5, 6, 7]


@pytest.mark.parametrize("kind", ["mmpl", "framewise"])
def test_every_frame_is_made_once_after_its_context(kind: str) -> None:
    waves = schedule(kind, 3, N)
    made = _frames_made(waves)
    assert sorted(made) == list(range(1, 3 * N + 1))
    have = {0}
    for wave in waves:
        for request in wave:
            _, a, b = request.absolute(N)
            assert a in have and (b is None or b in have), (request, have)
        have |= {r.absolute(N)[0] for r in wave}


def test_plan_frames_condition_on_the_segment_start_and_populate_on_both_ends() -> None:
    waves = schedule("mmpl", 1, N, pipelined=False)
    plans = [r for w in waves for r in w if r.planning]
    assert [(r.position, r.context_a, r.context_b) for r in plans] == [
        (2, 0, None), (4, 0, 2), (8, 0, 4),
    ]  # fmt: skip
    populate = {r.position: (r.context_a, r.context_b) for r in waves[-1]}
    assert populate == {1: (0, 2), 3: (2, 4), 5: (4, 8), 6: (4, 8), 7: (4, 8)}


def _path(frames: int):
    poses = np.repeat(np.eye(4)[None], frames, 0)
    poses[:, 1, 3] = np.linspace(0, 1, frames)
    return poses, np.arange(frames) * 0.1


@pytest.mark.parametrize("kind", ["mmpl", "framewise"])
def test_stream_runs_the_schedule_and_releases_in_order(kind: str) -> None:
    torch.set_num_threads(1)
    released = []
    stream = WorldStream(tiny_model(), 1, N, kind=kind, on_release=lambda r: released.append(r))
    poses, times = _path(1 + 3 * N)
    stream.start(np.zeros((4, 16, 16), np.float32), poses[0], times[0])
    for s in range(3):
        stream.add_segment(poses[1 + s * N : 1 + (s + 1) * N], times[1 + s * N : 1 + (s + 1) * N])
    stream.flush()
    assert stream.order == [[r.absolute(N)[0] for r in w] for w in schedule(kind, 3, N)]
    assert [r.index for r in released] == list(range(1 + 3 * N))
    assert all(np.isfinite(r.frame).all() and r.frame.shape == (4, 16, 16) for r in released)


def test_stream_memory_stays_bounded_over_a_long_run() -> None:
    torch.set_num_threads(1)
    stream = WorldStream(tiny_model(), 1, N)
    poses, times = _path(1 + 30 * N)
    stream.start(np.zeros((4, 16, 16), np.float32), poses[0], times[0])
    sizes = []
    for s in range(30):
        stream.add_segment(poses[1 + s * N : 1 + (s + 1) * N], times[1 + s * N : 1 + (s + 1) * N])
        sizes.append(len(stream.frames) + len(stream.poses))
    assert max(sizes[10:]) <= 8 * N and sizes[-1] == sizes[15]


def test_bad_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="schedule"):
        WorldStream(tiny_model(), 1, N, kind="zigzag")
    with pytest.raises(ValueError, match="fit"):
        WorldStream(tiny_model(), 1, N, fit="some")
    stream = WorldStream(tiny_model(), 1, N)
    with pytest.raises(RuntimeError, match="start"):
        stream.add_segment(*_path(N))
    stream.start(np.zeros((4, 16, 16), np.float32), np.eye(4), 0.0)
    with pytest.raises(ValueError, match="poses"):
        stream.add_segment(*_path(N - 1))
