"""The linear probe tells features that hold a position from features that do not."""

from __future__ import annotations

import numpy as np

from benchmarks.encoder_probe import ridge_probe


def test_the_probe_finds_a_position_the_features_hold_and_not_one_they_lack() -> None:
    rng = np.random.default_rng(0)
    positions = rng.uniform(-0.2, 0.2, (400, 2))
    mixing = rng.normal(size=(2, 16))
    holding = positions @ mixing + 0.001 * rng.normal(size=(400, 16))
    lacking = rng.normal(size=(400, 16))
    found = ridge_probe(holding, positions, 300)
    blind = ridge_probe(lacking, positions, 300)
    assert found.shape == (100,) and np.median(found) < 0.005
    mean_only = np.median(np.linalg.norm(positions[300:] - positions[:300].mean(0), axis=1))
    assert np.median(blind) > 0.8 * mean_only  # no better than guessing the mean


def test_a_state_policy_is_refused_with_a_message(tmp_path, capsys) -> None:
    from pathlib import Path

    from benchmarks.encoder_probe import main

    shipped = Path(__file__).resolve().parents[2] / "checkpoints" / "pickplace"
    assert main([str(shipped), str(tmp_path)]) == 2
    assert "sees no cameras" in capsys.readouterr().err


def test_a_pusht_policy_is_probed_for_its_pusher_and_block(tmp_path) -> None:
    from pathlib import Path

    from benchmarks.encoder_probe import probe
    from sim.collect import collect

    collect("pusht", 4, tmp_path, images=True, progress=False, cameras=("top",))
    shipped = Path(__file__).resolve().parents[2] / "checkpoints" / "pusht-image"
    rows = probe(shipped, tmp_path)["rows"]
    sources = ("from top", "from all cameras")
    assert set(rows) == {
        f"{target}: {source}"
        for target in ("pusher", "block")
        for source in ("the mean position (no image)", *sources)
    } | {f"block yaw: {source}" for source in ("the mean yaw (no image)", *sources)}
    assert all(np.isfinite(list(row.values())).all() for row in rows.values())
    assert "median_deg" in rows["block yaw: from top"]


def test_the_yaw_probe_measures_angles_across_the_wrap() -> None:
    from benchmarks.encoder_probe import yaw_errors_deg

    yaw = np.random.default_rng(1).uniform(-np.pi, np.pi, 400)
    sin_cos = np.c_[np.sin(yaw), np.cos(yaw)]
    exact = yaw_errors_deg(sin_cos, sin_cos, 300)  # features that hold the angle itself
    assert exact.max() < 1e-3  # the ridge term leaves micro-degrees
    # held-out features say 179 degrees where the truth is -179: 2 degrees off, not 358
    features, truth = sin_cos.copy(), sin_cos.copy()
    features[300:] = [np.sin(np.radians(179)), np.cos(np.radians(179))]
    truth[300:] = [np.sin(np.radians(-179)), np.cos(np.radians(-179))]
    assert np.allclose(yaw_errors_deg(features, truth, 300), 2.0, atol=1e-3)


def test_a_probe_of_no_frames_is_refused(tmp_path, capsys) -> None:
    import pytest

    from benchmarks.encoder_probe import main

    with pytest.raises(SystemExit) as exited:
        main(["checkpoints/pickplace-image", str(tmp_path), "--steps", "0"])
    assert exited.value.code == 2 and "--steps must be at least 1" in capsys.readouterr().err
