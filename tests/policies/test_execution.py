"""The lockstep delay model: what plays while a late chunk is on its way."""

from __future__ import annotations

import numpy as np
import pytest

from policies.diffusion.evaluate import evaluate
from policies.diffusion.execution import ChunkPlan, check_timing

START = 1  # obs_horizon 2: row 1 of a chunk is the tick it was predicted at


def _chunk(label: int, rows: int = 16) -> np.ndarray:
    """Action row i of chunk `label` reads (label, i): who planned what is visible."""
    return np.array([[label, i] for i in range(rows)], float)


def _play(plan: ChunkPlan, ticks: int) -> list[tuple[int, int]]:
    """Run the plan for `ticks`, predicting chunk k at the k-th request."""
    played, label = [], 0
    for _ in range(ticks):
        if plan.needs_prediction():
            plan.receive(_chunk(label), START)
            label += 1
        action = plan.next_action()
        played.append((int(action[0]), int(action[1])))
    return played


def test_actions_during_the_delay_come_from_the_previous_chunk() -> None:
    played = _play(ChunkPlan(delay=2, executed=4), 12)
    # chunk 0 (at rest, no delay) rows 1..; chunk 1 predicted at tick 4 plays from tick 6
    # with its row 1 + 2; chunk 2 predicted at tick 8 plays from tick 10.
    assert played[:6] == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6)]
    assert played[6:10] == [(1, 3), (1, 4), (1, 5), (1, 6)]
    assert played[10:] == [(2, 3), (2, 4)]


def test_without_delay_a_chunk_plays_at_once_every_s_ticks() -> None:
    played = _play(ChunkPlan(delay=0, executed=3), 7)
    assert played == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 1)]


def test_jitter_delays_arrival_within_its_bound_and_never_starves() -> None:
    plan = ChunkPlan(delay=1, jitter=2, executed=3, rng=np.random.default_rng(5))
    played = _play(plan, 60)
    for tick, (label, row) in enumerate(played):
        if label > 0:
            predicted_at = 3 * label
            late = tick - predicted_at
            assert row == START + late and late >= 1  # never before the delay
    arrivals = {
        label: next(t for t, (k, _) in enumerate(played) if k == label) for label in range(1, 19)
    }
    assert {a - 3 * k for k, a in arrivals.items()} <= {1, 2, 3}
    assert len({a - 3 * k for k, a in arrivals.items()}) > 1  # it does jitter


def test_ensembling_averages_every_chunk_that_covers_a_tick() -> None:
    plan = ChunkPlan(delay=0, executed=1, merge="ensemble", discrete_dims=(1,))
    plan.receive(np.array([[0.0, -1.0]] * 4), START)
    plan.next_action()
    plan.receive(np.array([[1.0, 1.0]] * 4), START)
    action = plan.next_action()
    weights = np.exp(-0.01 * np.arange(2))
    assert action[0] == pytest.approx(weights[1] / weights.sum())  # the older weighs more
    assert action[1] == 1.0  # the gripper follows the newest chunk, never averaged


def test_boundary_jumps_are_measured_where_a_new_chunk_starts() -> None:
    plan = ChunkPlan(delay=0, executed=2, discrete_dims=(1,))
    for label in range(3):
        plan.receive(np.array([[10.0 * label, 1.0], [10.0 * label + 1, 1.0], [0, 0], [0, 0]]), 0)
        plan.next_action(), plan.next_action()
    figures = plan.smoothness()
    assert figures["boundary_jump"] == pytest.approx(9.0)  # 1 -> 10, 11 -> 20
    assert figures["mean_step"] == pytest.approx((1 + 9 + 1 + 9 + 1) / 5)


def test_impossible_timings_are_refused() -> None:
    with pytest.raises(ValueError, match="two inferences"):
        check_timing(4, 0, 2, START, 16)
    with pytest.raises(ValueError, match="cannot cover"):
        check_timing(8, 0, 8, START, 16)
    check_timing(4, 0, 4, START, 16)


class _Scripted:
    """A policy that always plans to hold still; it only counts what it is asked."""

    obs_horizon, pred_horizon, sampler = 2, 16, "ddim"

    class config:  # the attribute name the evaluation reads
        discrete_dims = (3,)

    def __init__(self):
        self.network_calls, self.predictions = 0, 0

    def reset(self, slot=None) -> None:
        pass

    def infer_batch(self, observations: np.ndarray, slots) -> np.ndarray:
        self.predictions += len(slots)
        self.network_calls += 1
        return np.zeros((len(slots), 16, 4), np.float32)


def test_the_evaluation_predicts_once_every_s_ticks_under_delay() -> None:
    policy = _Scripted()
    result = evaluate(policy, "pickplace", 2, 4, progress=False, num_envs=2, delay=2)
    ticks = sum(episode["length"] for episode in result.per_episode)
    lengths = [episode["length"] for episode in result.per_episode]
    assert policy.predictions == sum(-(-length // 4) for length in lengths)
    assert result.delay == 2 and result.actions_per_prediction == 4 and ticks > 8
