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


def test_a_scene_of_another_layout_is_refused_with_a_message(tmp_path, capsys) -> None:
    from pathlib import Path

    from benchmarks.encoder_probe import main

    shipped = Path(__file__).resolve().parents[2] / "checkpoints" / "pusht-image"
    assert main([str(shipped), str(tmp_path)]) == 2
    assert "PickPlace layouts" in capsys.readouterr().err


def test_a_probe_of_no_frames_is_refused(tmp_path, capsys) -> None:
    import pytest

    from benchmarks.encoder_probe import main

    with pytest.raises(SystemExit) as exited:
        main(["checkpoints/pickplace-image", str(tmp_path), "--steps", "0"])
    assert exited.value.code == 2 and "--steps must be at least 1" in capsys.readouterr().err
