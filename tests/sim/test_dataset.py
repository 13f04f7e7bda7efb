from __future__ import annotations

import numpy as np
import pytest
import zarr

from sim.collect import collect
from sim.dataset import DatasetError, episode_key, load_episodes, read_meta
from warmloop.cli import main


def test_collect_then_load_round_trip_and_resume(tmp_path) -> None:
    out = tmp_path / "pp.zarr"
    summary = collect(
        "pickplace", 2, out, seed=5, images=True, image_size=24, progress=False, depth=True
    )
    assert summary["collected_now"] == 2 and summary["success_rate_now"] == 1.0
    meta = read_meta(out)
    assert meta["task"] == "pickplace" and meta["env_id"] == "warmloop/PickPlace-v0"
    assert meta["expert"] and meta["seed"] == 5 and meta["discrete_action_dims"] == [3]
    episodes = load_episodes(out)
    assert [e.index for e in episodes] == [0, 1]
    for episode in episodes:
        length = episode.length
        assert episode.attrs["length"] == length and episode.attrs["seed"] == 5 + episode.index
        assert episode.arrays["obs"].shape == (length, 11)
        assert episode.arrays["action"].shape == (length, 4)
        assert episode.arrays["images/top/rgb"].shape == (length, 24, 24, 3)
        assert episode.arrays["images/top/depth"].shape == (length, 24, 24)
        assert episode.arrays["images/top/pose"].shape == (length, 4, 4)
        assert episode.arrays["images/top/intrinsics"].shape == (3, 3)

    # An interrupted episode: arrays written, never marked complete.
    root = zarr.open_group(str(out), mode="a")
    partial = root.create_group(episode_key(2))
    partial.create_array("action", shape=(3, 4), dtype="f4")
    assert [e.index for e in load_episodes(out)] == [0, 1]  # never looks complete

    again = collect(
        "pickplace", 3, out, seed=5, images=True, image_size=24, progress=False, depth=True
    )
    assert again["collected_now"] == 1  # only the missing episode is collected
    episodes = load_episodes(out)
    assert [e.index for e in episodes] == [0, 1, 2]
    # Episode 2 is exactly what a fresh collection would give (seed 5 + 2).
    collect("pickplace", 3, tmp_path / "fresh.zarr", seed=5, images=False, progress=False)
    np.testing.assert_array_equal(
        load_episodes(tmp_path / "fresh.zarr")[2].arrays["action"], episodes[2].arrays["action"]
    )


def test_workers_write_the_same_dataset_as_one_process(tmp_path) -> None:
    settings = dict(seed=7, images=True, image_size=16, cameras=("top",), progress=False)
    collect("pickplace", 3, tmp_path / "one.zarr", **settings)
    summary = collect("pickplace", 3, tmp_path / "two.zarr", workers=2, **settings)
    assert summary["collected_now"] == 3 and summary["success_rate_now"] == 1.0
    one, two = load_episodes(tmp_path / "one.zarr"), load_episodes(tmp_path / "two.zarr")
    assert [e.index for e in two] == [0, 1, 2]
    for serial, parallel in zip(one, two, strict=True):
        assert serial.attrs == parallel.attrs
        assert sorted(serial.arrays) == sorted(parallel.arrays)
        for name, array in serial.arrays.items():
            np.testing.assert_array_equal(parallel.arrays[name], array, err_msg=name)


def test_policy_datasets_hold_the_named_cameras_rgb_only_by_default(tmp_path) -> None:
    out = tmp_path / "pp.zarr"
    collect("pickplace", 1, out, images=True, image_size=16, cameras=("top",), progress=False)
    meta = read_meta(out)
    assert meta["cameras"] == ["top"] and meta["depth"] is False
    (episode,) = load_episodes(out)
    assert sorted(episode.arrays) == sorted(
        ["obs", "action", "reward", "time"]
        + [f"images/top/{name}" for name in ("rgb", "pose", "intrinsics")]
    )
    # Frames are stored 16 to a chunk, not one file per frame.
    assert zarr.open_group(str(out))[episode_key(0)]["images/top/rgb"].chunks[0] == 16


def test_resume_with_other_settings_is_refused(tmp_path) -> None:
    out = tmp_path / "pp.zarr"
    collect("pickplace", 1, out, seed=0, progress=False)
    with pytest.raises(DatasetError, match="seed=0"):
        collect("pickplace", 2, out, seed=1, progress=False)


def test_explore_collects_rgbd_poses_and_times(tmp_path) -> None:
    out = tmp_path / "ex.zarr"
    collect("explore", 1, out, image_size=16, progress=False)
    (episode,) = load_episodes(out)
    assert episode.arrays["images/eye/rgb"].shape[1:] == (16, 16, 3)
    assert episode.arrays["images/eye/depth"].shape[1:] == (16, 16)  # RGB-D by default
    assert np.all(np.diff(episode.arrays["time"]) > 0)
    assert episode.attrs["behaviour"] == "random_walk"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["collect", "nope", "--out", "{tmp}/x"], "unknown task"),
        (["collect", "pusht", "--episodes", "0", "--out", "{tmp}/x"], "at least 1"),
        (["collect", "pusht", "--out", "{tmp}/not_a_dataset"], "not a warmloop dataset"),
        (["collect", "pusht", "--image-size", "2", "--out", "{tmp}/x"], "image-size"),
        (["collect", "pusht", "--workers", "0", "--out", "{tmp}/x"], "--workers must be"),
        (
            ["collect", "pusht", "--images", "--cameras", "wrist", "--out", "{tmp}/x"],
            "unknown cameras ['wrist']; this task has ['top']",
        ),
    ],
)
def test_bad_collect_arguments_give_a_clear_error(tmp_path, capsys, args, message) -> None:
    (tmp_path / "not_a_dataset").mkdir()
    (tmp_path / "not_a_dataset" / "notes.txt").write_text("mine")
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    assert message in capsys.readouterr().err
