"""The policy benchmark's JSON keys and target notes, from given evaluation results."""

from __future__ import annotations

import math
from dataclasses import replace

from benchmarks import policy_panda
from benchmarks.policy import _add_fresh, _result, paired_gap
from policies.diffusion.evaluate import EvalResult


def _eval(success: float, latency_ms: float) -> EvalResult:
    return EvalResult(100, success, 0.05, success, latency_ms, 2 * latency_ms, 3, 1, 1.0)


def test_keys_and_targets_per_task() -> None:
    results = {
        "pickplace": {
            "ddpm100": _eval(0.90, 300.0),
            "ddim10": _eval(0.80, 40.0),
            "rti": _eval(0.87, 10.0),  # 0.90 - 0.87 is 0.030000000000000027
            "rti_chunk": _eval(0.50, 10.0),
            "rti_renoise": _eval(0.85, 10.0),
        },
        "pusht": {
            "ddpm100": _eval(0.60, 600.0),
            "ddim10": _eval(0.50, 60.0),
            "rti": _eval(0.50, 30.0),
            "rti_chunk": _eval(0.10, 30.0),
            "rti_state": _eval(0.40, 30.0),
        },
    }
    rti = {
        "pickplace": {"k_prime": 2, "warm_start": "state", "sampler": "ddpm", "calls": 3},
        "pusht": {"k_prime": 30, "warm_start": "renoise", "sampler": "ddim", "calls": 4},
    }
    out = _result(results, rti, 100, {"pickplace": 1.0})
    figures = out.figures
    for task in ("pickplace", "pusht"):
        for label in ("ddpm100", "ddim10", "rti", "rti_state", "rti_renoise"):
            assert f"success_{label}_{task}" in figures
        assert f"rti_k_prime_{task}" in figures
    assert figures["latency_p50_ms_rti"] == 10.0  # the keys are PickPlace's
    assert figures["latency_p50_ms_rti_pusht"] == 30.0
    assert figures["rti_k_prime_pusht"] == 30 and figures["rti_calls_pusht"] == 4
    assert figures["rti_sampler_pickplace"] == "ddpm"
    assert any("pusht K' = 30 (renoise, ddim, 4 calls)" in note for note in out.notes)
    assert figures["rti_warm_start_pusht"] == "renoise"
    pick, push = out.notes[0], out.notes[1]
    assert "-0.03 (met)" in pick and "30.0x below DDPM-100" in pick
    assert "-0.10 (NOT met)" in push and "2.0x below DDIM-10" in push
    assert "DDPM-100 success 0.90 against the expert's 1.00 (target >= 90% of it: met)" in pick
    assert "expert" not in push  # no expert figure given for PushT
    assert figures["success_rti_state_pusht"] == 0.40
    assert figures["success_rti_renoise_pusht"] is None  # PushT's rti row is the renoise one
    assert len(out.table) == 1 + 10


def test_panda_rows_carry_the_task_and_missing_ones_are_named() -> None:
    results = {
        "panda-pusht": {
            "ddpm100": _eval(0.93, 750.0),
            "ddim10": _eval(0.83, 80.0),
            "rti": _eval(0.91, 18.0),
            "rti_chunk": _eval(0.20, 18.0),
            "rti_state": _eval(0.30, 18.0),
        }
    }
    rti = {"panda-pusht": {"k_prime": 10, "warm_start": "renoise", "sampler": "ddim", "calls": 2}}
    out = _result(results, rti, 100, {"panda-pusht": 1.0}, policy_panda.TASKS, policy_panda.PLOT)
    figures = out.figures
    assert figures["success_rti_panda-pusht"] == 0.91
    assert figures["latency_p50_ms_rti_panda-pusht"] == 18.0
    assert figures["rti_k_prime_panda-pusht"] == 10
    assert figures["success_rti_panda-pickplace"] is None  # no checkpoint: null, not absent
    assert (
        "panda-pusht targets: RTI success within 3 points of DDPM-100: -0.02 (met)"
        in (out.notes[0])
    )
    assert any("No shipped checkpoint for panda-pickplace:" in n for n in out.notes)
    assert "success_rti_pusht" not in figures  # the mocap tasks are `bench policy`'s
    assert any("policy_panda_success_latency.png" in note for note in out.notes)


def _episodes(first_seed: int, successes: list[bool]) -> EvalResult:
    records = [
        {"episode": i, "seed": first_seed + i, "success": won} for i, won in enumerate(successes)
    ]
    rate = sum(successes) / len(successes)
    return replace(_eval(rate, 10.0), episodes=len(successes), per_episode=records)


def test_the_gap_is_paired_by_seed_over_both_ranges() -> None:
    # Reporting range: RTI fails seeds 0 and 1, DDPM-100 fails seed 2 (gap -0.1 of 10);
    # fresh range: both fail seed 100 (no difference there).
    rti = [_episodes(0, [False, False] + [True] * 8), _episodes(100, [False] + [True] * 9)]
    ddpm = [_episodes(0, [True, True, False] + [True] * 7), _episodes(100, [False] + [True] * 9)]
    gap, low, high, seeds = paired_gap(rti, ddpm)
    assert seeds == 20 and math.isclose(gap, -0.05)
    differences = [-1, -1, 1] + [0] * 17  # mean -0.05, sd 0.394: half-width 0.173
    sd = math.sqrt(sum((d + 0.05) ** 2 for d in differences) / 19)
    assert math.isclose(high - gap, 1.96 * sd / math.sqrt(20)) and math.isclose(
        gap - low, high - gap
    )
    # Seeds only one sampler ran are left out, and fewer than two shared give no interval.
    assert paired_gap([_episodes(0, [True])], [_episodes(5, [True])])[3] == 0
    assert math.isnan(paired_gap([_episodes(0, [True])], [_episodes(0, [False])])[0])


def test_the_pooled_gap_is_a_figure_and_a_note_beside_each_range() -> None:
    results = {
        "pusht": {"ddpm100": _episodes(0, [True] * 10), "rti": _episodes(0, [False] + [True] * 9)}
    }
    fresh = {"pusht": {"ddpm100": _episodes(900, [True] * 10), "rti": _episodes(900, [True] * 10)}}
    out = _result({"pusht": {**results["pusht"], "ddim10": _eval(0.5, 50.0)}}, {}, 10, {})
    _add_fresh(out, results, fresh)
    assert math.isclose(out.figures["success_gap_rti_ddpm100_pusht_pooled"], -0.05)
    assert out.figures["success_gap_rti_ddpm100_low_pusht_pooled"] < -0.05
    assert "-0.10 on the reporting seeds, +0.00 on fresh ones" in out.notes[0]
    assert "pusht -0.050 [" in out.notes[1] and "over 20 seeds (NOT met)" in out.notes[1]
