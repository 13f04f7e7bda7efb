"""bench world's truth rows: the classical baselines and the revisit selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks import world_truth
from benchmarks.world import revisit_pairs
from sim import trajectories
from sim.envs import make_env
from world.generation.rollout import explore_path


def test_the_warp_beats_a_copy_on_co_visible_pixels_of_a_real_path():
    path = explore_path(trajectories.orbit(8, speed=0.6, turn=0.6), seed=3)
    targets = world_truth.Targets.of(path)
    counts = targets.counts()
    assert counts["targets"] == 8 and 0.2 < counts["covisible_fraction"] < 1.0
    rows = {k: targets.score(v).summary() for k, v in world_truth.classical(path).items()}
    assert rows["warp-start"]["psnr_covisible"] > rows["copy"]["psnr_covisible"] + 3
    assert rows["warp-start"]["psnr"] > rows["copy"]["psnr"]
    # The truth itself scores infinitely well and exactly as sharp.
    perfect = targets.score(targets.truth).summary()
    assert perfect["psnr"] == float("inf") and perfect["sharpness"] == 1.0


def test_revisits_count_only_after_the_camera_went_far_away():
    path = explore_path(world_truth.excursion(np.random.default_rng(0), 64), seed=0)
    every = revisit_pairs(path, -1.0, -1.0)
    far = revisit_pairs(path, 1.0, 45.0)
    assert len(every) == 31  # equal poses all the way out and back
    assert 0 < len(far) < len(every)
    assert all(first < 16 for first, _ in far)  # only the early poses: the turn is between


def test_an_excursion_goes_far_and_comes_back() -> None:
    """Revisits on it come after the start left the view: > 1 m and > 45 degrees away."""
    env = make_env("explore", max_episode_steps=100)
    start, _ = env.reset(seed=1)
    farthest = (0.0, 0.0)
    for action in world_truth.excursion(np.random.default_rng(1), 64):
        end, *_ = env.step(action)
        distance = float(np.linalg.norm(end[:3] - start[:3]))
        turned = abs((end[3] - start[3] + np.pi) % (2 * np.pi) - np.pi)
        farthest = max(farthest, (distance, float(np.degrees(turned))))
    np.testing.assert_allclose(end[:5], start[:5], atol=1e-4)
    assert farthest[0] > 1.0 and farthest[1] > 45.0, farthest


def test_world_students_are_tuned_off_the_benchmark_path(monkeypatch, capsys) -> None:
    """benchmarks/world_tune.py scores candidates on random walks bench world never uses."""
    import json

    from benchmarks import world_tune

    bench_path = explore_path(trajectories.random_walk(np.random.default_rng(0), 8), 0)
    (tuning,) = world_tune.tuning_paths((world_tune.TUNING_SEEDS[0],))
    assert 0 not in world_tune.TUNING_SEEDS
    assert not np.allclose(tuning.poses[1:9], bench_path.poses[1:])
    monkeypatch.setattr(world_tune, "TUNING_SEEDS", (1000,))
    monkeypatch.setattr(world_tune, "SEGMENTS", 1)
    checkpoints = Path(__file__).resolve().parents[2] / "checkpoints"
    student, teacher = checkpoints / "explore-student", checkpoints / "explore-teacher"
    assert world_tune.main([str(student), "--teacher", str(teacher)]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert set(rows) == {"warp-start", "teacher-cut-2", str(student)}
    # The shipped student, handed the warp, is no worse than the warp it is handed.
    assert rows[str(student)]["psnr"] > rows["warp-start"]["psnr"] - 1.0


def test_world_tune_samples_students_guided_at_each_agreement_gate(monkeypatch, capsys) -> None:
    """--agreement adds a guided row per gate, with how many targets the memory reached."""
    import json

    from benchmarks import world_tune
    from benchmarks.world import SMOKE_MEMORY

    monkeypatch.setattr(world_tune, "TUNING_SEEDS", (1000,))
    monkeypatch.setattr(world_tune, "SEGMENTS", 1)
    monkeypatch.setattr(world_tune, "REVISIT_MEMORY", SMOKE_MEMORY)  # one fitting step a frame
    checkpoints = Path(__file__).resolve().parents[2] / "checkpoints"
    student = str(checkpoints / "explore-student")
    argv = [student, "--teacher", str(checkpoints / "explore-teacher"), "--agreement", "0", "99"]
    assert world_tune.main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    gate_off, gate_shut = rows[f"{student} guided@0"], rows[f"{student} guided@99"]
    for row in (gate_off, gate_shut):
        assert row["memory_guided_targets"] + row["memory_withheld_targets"] == world_tune.N
    # No field renders the scene at 99 dB: that gate withholds every target, and the
    # guided rollout is then the warp-only one, frame for frame.
    assert gate_shut["memory_guided_targets"] == 0
    assert gate_shut["psnr"] == rows[student]["psnr"]
