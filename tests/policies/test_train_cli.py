"""`warmloop train` end to end, alone and data-parallel under torchrun (gloo, 2 CPUs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from policies.diffusion import checkpoint as ckpt
from sim.collect import collect
from warmloop.cli import main

# One thread: `make test` runs two xdist workers on two cores, and training's default
# (every core) oversubscribes them; the data-parallel test's replicas took 23 s with it
# alone and 45 s beside the other worker, against 5 s with one thread each.
TINY = ["--steps", "30", "--batch-size", "16", "--down-dims", "16", "32", "--threads", "1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "pickplace"
    collect("pickplace", 3, path, progress=False)
    return path


def test_train_writes_a_loadable_checkpoint(dataset, tmp_path, capsys) -> None:
    out = tmp_path / "ckpt"
    args = ["train", "pickplace", "--data", str(dataset), "--out", str(out), "--lr", "3e-4"]
    assert main([*args, "--action-horizon", "4", *TINY]) == 0
    assert "30 steps" in capsys.readouterr().out
    loaded = ckpt.load(out)
    assert loaded.step == 30 and loaded.config.discrete_dims == (3,)
    assert loaded.config.obs_dim == 11 and loaded.config.action_dim == 4
    assert loaded.config.lr == 3e-4 and loaded.config.action_horizon == 4


def test_train_keeps_snapshots_that_record_their_training_time(dataset, tmp_path) -> None:
    from benchmarks.training_curve import recorded_minutes

    out = tmp_path / "ckpt"
    args = ["train", "pickplace", "--data", str(dataset), "--out", str(out), *TINY]
    assert main([*args, "--checkpoint-every", "10", "--snapshots"]) == 0
    snapshots = sorted((out / "snapshots").iterdir())
    assert [s.name for s in snapshots] == ["step-000010", "step-000020", "step-000030"]
    assert [ckpt.load(s).step for s in snapshots] == [10, 20, 30]
    minutes = [recorded_minutes(s) for s in snapshots]
    assert minutes == sorted(minutes) and minutes[0] >= 0
    # Resumed, the run's time goes on from where it stopped rather than from zero.
    assert main([*args, "--steps", "40", "--checkpoint-every", "10", "--snapshots"]) == 0
    assert recorded_minutes(out / "snapshots" / "step-000040") >= minutes[-1]
    with pytest.raises(ValueError, match="no training time"):
        recorded_minutes(out)  # the run's own checkpoint is not a snapshot
    _check_the_curve_gives_a_snapshot_a_calibrated_rti(out, snapshots[-1], tmp_path)


def _check_the_curve_gives_a_snapshot_a_calibrated_rti(out, snapshot, tmp_path) -> None:
    from benchmarks import training_curve
    from policies.diffusion.calibrate import Calibration, store

    # A calibration's result, stored where calibrate-rti stores it, without its episodes.
    chosen = Calibration(5, 5, {}, {}, rti_sampler="ddim", warm_start="renoise", rti_steps=2)
    store(out, chosen)
    curve = tmp_path / "curve"
    common = [str(curve), str(snapshot), "--episodes", "1", "--rti-from", str(out)]
    assert training_curve.main([*common, "--reference", "expert=1.0", "--budget", "60"]) == 0
    record = json.loads(curve.with_suffix(".json").read_text())
    assert record["references"] == ["expert=1.0"] and record["budget_minutes"] == 60
    settings = record["rti_settings"]
    assert (settings["k_prime"], settings["rti_steps"], settings["warm_start"]) == (5, 2, "renoise")
    assert [p["step"] for p in record["points"]] == [30]
    assert curve.with_suffix(".png").stat().st_size > 0
    for bad in (["--reference", "expert"], ["--reference", "expert=2"]):
        with pytest.raises(SystemExit):
            training_curve.main([*common, *bad])
    with pytest.raises(SystemExit):
        training_curve.main([str(curve), str(snapshot), "--rti-from", str(tmp_path / "none")])
    with pytest.raises(SystemExit):  # RTI's settings under another sampler: refused, not dropped
        training_curve.main([*common, "--sampler", "ddim"])


def test_train_refuses_missing_or_foreign_data(dataset, tmp_path, capsys) -> None:
    assert main(["train", "pickplace", "--data", str(tmp_path / "none"), *TINY]) == 2
    assert "no dataset here" in capsys.readouterr().err
    assert main(["train", "pusht", "--data", str(dataset), *TINY]) == 2
    assert "holds 'pickplace' data" in capsys.readouterr().err
    assert main(["train", "pickplace", "--data", str(dataset), "--lr", "0", *TINY]) == 2
    assert "lr" in capsys.readouterr().err
    args = ["train", "pickplace", "--data", str(dataset), "--action-horizon", "16"]
    assert main([*args, *TINY]) == 2
    assert "action_horizon" in capsys.readouterr().err


def test_data_parallel_replicas_agree(dataset, tmp_path) -> None:
    warmloop = shutil.which("warmloop", path=os.path.dirname(sys.executable))
    assert warmloop, "the warmloop entry point is not installed next to this Python"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            warmloop,
            "train",
            "pickplace",
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "ddp"),
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "replicas agree" in result.stdout
    assert ckpt.load(tmp_path / "ddp").step == 30


@pytest.mark.slow
def test_eval_reports_success_latency_and_calls(dataset, tmp_path, capsys) -> None:
    out = tmp_path / "ckpt"
    assert main(["train", "pickplace", "--data", str(dataset), "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    video = tmp_path / "first.mp4"
    assert (
        main(
            [
                "eval",
                str(out),
                "--sampler",
                "rti",
                "--k-prime",
                "2",
                "--episodes",
                "1",
                "--video",
                str(video),
            ]
        )
        == 0
    )
    report = dict(line.split(": ") for line in capsys.readouterr().out.strip().splitlines())
    assert float(report["network_calls_per_prediction"]) == 3.0  # K' + 1
    assert report["actions_per_prediction"] == "1"
    assert float(report["success_rate"]) in (0.0, 1.0)  # one episode: it succeeded or not
    assert float(report["latency_p50_ms"]) > 0
    assert video.stat().st_size > 1000
    assert main(["eval", str(out), "--sampler", "ddim", "--steps", "4", "--episodes", "1"]) == 0
    report = dict(line.split(": ") for line in capsys.readouterr().out.strip().splitlines())
    assert float(report["network_calls_per_prediction"]) == 4.0
    assert report["actions_per_prediction"] == "8"
    # Vectorised: three episodes on two environments, predictions batched.
    args = ["eval", str(out), "--sampler", "rti", "--k-prime", "2", "--episodes", "3"]
    results = tmp_path / "results"
    assert main([*args, "--num-envs", "2", "--out", str(results), "--videos", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = dict(line.split(": ") for line in lines if not line.startswith("wrote "))
    assert report["episodes"] == "3"
    recorded = json.loads((results / "eval.json").read_text())
    assert [e["seed"] for e in recorded["per_episode"]] == [100_000, 100_001, 100_002]
    assert all(e["length"] > 0 and e["success"] in (True, False) for e in recorded["per_episode"])
    successes = sum(e["success"] for e in recorded["per_episode"])
    assert recorded["success_rate"] == pytest.approx(successes / 3)
    assert recorded["command"].startswith("warmloop eval") and recorded["sampler"] == "rti"
    assert sorted(p.name for p in results.glob("*.mp4")) == ["episode0.mp4", "episode1.mp4"]
    assert float(report["network_calls_per_prediction"]) == 3.0  # per batched call
    assert 1.0 < float(report["mean_batch"]) <= 2.0
    assert main([*args, "--num-envs", "0"]) == 2
    assert main(["eval", str(tmp_path / "missing"), "--episodes", "1"]) == 2
    capsys.readouterr()
    # Under delay: RTI predicts every d ticks, the prefix frozen; impossible timings refused.
    delayed = ["eval", str(out), "--k-prime", "2", "--episodes", "1", "--delay", "2"]
    assert main([*delayed, "--inpaint", "replace"]) == 0
    report = dict(line.split(": ") for line in capsys.readouterr().out.strip().splitlines())
    assert report["delay"] == "2" and report["actions_per_prediction"] == "2"
    assert float(report["success_low"]) <= float(report["success_rate"])
    assert main([*delayed, "--execute", "1"]) == 2
    assert "two inferences" in capsys.readouterr().err
    assert main([*delayed, "--delay", "15"]) == 2


@pytest.mark.slow
def test_calibrate_rti_stores_a_checked_k_prime(dataset, tmp_path, capsys) -> None:
    import json

    from policies.diffusion.calibrate import choose

    out = tmp_path / "ckpt"
    assert main(["train", "pickplace", "--data", str(dataset), "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "calibrate-rti",
                str(out),
                "--episodes",
                "1",
                "--check-episodes",
                "1",
                "--rti-sampler",
                "ddim",
                "--rti-steps",
                "2",
                "--warm-start",
                "renoise",
                "--anchor-every",
                "4",
                "--anchor-steps",
                "6",
            ]
        )
        == 0
    )
    meta = json.loads((out / "config.json").read_text())
    calibration = meta["extra"]["rti_calibration"]
    ratios = {int(k): v for k, v in calibration["ratios"].items()}
    assert calibration["k_prime_offline"] == choose(ratios)
    assert meta["config"]["rti_k_prime"] == calibration["k_prime"]
    assert str(calibration["k_prime"]) in calibration["closed_loop_success"]
    config = ckpt.load(out).config  # the weight hash still holds
    assert config.rti_k_prime == calibration["k_prime"] and config.rti_sampler == "ddim"
    assert config.rti_steps == min(2, config.rti_k_prime + 1)
    assert config.rti_mode == "renoise"
    assert (config.rti_anchor_every, config.rti_anchor_steps) == (4, 6)
    assert calibration["anchor_every"] == 4  # the candidates ran re-anchored
    printed = capsys.readouterr().out
    assert "chose K'" in printed and "re-anchored every 4 by DDIM-6" in printed


def test_choose_picks_the_ratio_nearest_one() -> None:
    from policies.diffusion.calibrate import choose

    assert choose({0: 40.0, 1: 3.0, 2: 1.2, 3: 0.5}) == 2
    assert choose({0: 0.9, 1: 0.2}) == 0


def test_the_closed_loop_check_tries_small_and_large_k_prime() -> None:
    from policies.diffusion.calibrate import check_candidates

    assert check_candidates(14) == [1, 2, 7, 13, 14, 15, 28]
    assert check_candidates(1) == [0, 1, 2]
    assert check_candidates(0) == [0, 1, 2]
