"""Demonstration datasets: one zarr group per dataset, one subgroup per episode.

    DIR/                         zarr group; attrs: format, version, task, env_id, ...
      episode_000000/            attrs: seed, success, score, length, complete
        obs        (T, D)  f4    low-dimensional observation before each action
        action     (T, A)  f4
        reward     (T,)    f4
        time       (T,)    f8    scene time of each observation
        images/CAM/rgb        (T, H, W, 3) u1   (when images were collected)
        images/CAM/depth      (T, H, W)    f4   metres, inf = no hit
        images/CAM/pose       (T, 4, 4)    f8   camera-to-world
        images/CAM/intrinsics (3, 3)       f8

An episode counts only once its `complete` attribute is set, which happens after all
its arrays are written; an interrupted episode is deleted and redone on resume.
docs/datasets.md describes the layout for users of other tools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

FORMAT = "warmloop-dataset"
VERSION = 1
# Metadata that must agree when a collection resumes into an existing dataset.
FRAMES_PER_CHUNK = 16
RESUME_KEYS = ("task", "env_id", "expert", "seed", "images", "image_size", "cameras", "depth")


class DatasetError(ValueError):
    """A dataset that is missing, of another format, or incompatible with a resume."""


@dataclass
class Episode:
    index: int
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.arrays["action"].shape[0])


def episode_key(index: int) -> str:
    return f"episode_{index:06d}"


class DatasetWriter:
    """Creates or resumes a dataset; writes whole episodes atomically (see module doc)."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = Path(path)
        if self.path.is_file() or (
            self.path.is_dir()
            and any(self.path.iterdir())
            and not (self.path / "zarr.json").exists()
        ):
            raise DatasetError(f"{self.path} exists and is not a warmloop dataset")
        self.root = zarr.open_group(str(self.path), mode="a")
        existing = dict(self.root.attrs)
        if existing:
            _check_format(self.path, existing)
            mismatched = [k for k in RESUME_KEYS if existing.get(k) != meta.get(k)]
            if mismatched:
                raise DatasetError(
                    f"{self.path} was collected with other settings: "
                    + ", ".join(
                        f"{k}={existing.get(k)!r} (now {meta.get(k)!r})" for k in mismatched
                    )
                )
        else:
            self.root.attrs.update({"format": FORMAT, "version": VERSION, **meta})
        self._drop_incomplete()

    def _drop_incomplete(self) -> None:
        for name, group in list(self.root.groups()):
            if not group.attrs.get("complete", False):
                del self.root[name]

    def completed(self) -> set[int]:
        return {int(name.split("_")[1]) for name, _ in self.root.groups()}

    def write_episode(
        self, index: int, arrays: dict[str, np.ndarray], attrs: dict[str, Any]
    ) -> None:
        write_episode(self.root, index, arrays, attrs)


def write_episode(
    root: zarr.Group, index: int, arrays: dict[str, np.ndarray], attrs: dict[str, Any]
) -> None:
    """Write one episode into a dataset's group, `complete` last. Episodes are separate
    subgroups, so processes may write different episodes into one dataset at once."""
    key = episode_key(index)
    if key in root:
        del root[key]
    group = root.create_group(key)
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        # Images: FRAMES_PER_CHUNK frames a chunk, so a random window reads one or two
        # small chunks and a dataset is not a million tiny files; the rest: one chunk
        # per episode.
        chunks = (FRAMES_PER_CHUNK, *array.shape[1:]) if array.ndim >= 3 else array.shape
        *parents, leaf = name.split("/")
        target = group
        for parent in parents:
            target = target.require_group(parent)
        target.create_array(
            leaf, shape=array.shape, dtype=array.dtype, chunks=tuple(max(1, c) for c in chunks)
        )[...] = array
    group.attrs.update({**attrs, "length": int(arrays["action"].shape[0])})
    group.attrs["complete"] = True  # last: only now does the episode count


def _check_format(path: Path, attrs: dict[str, Any]) -> None:
    if attrs.get("format") != FORMAT:
        raise DatasetError(f"{path} is not a warmloop dataset (format {attrs.get('format')!r})")
    if attrs.get("version") != VERSION:
        raise DatasetError(
            f"{path} has dataset version {attrs.get('version')!r}; this "
            f"warmloop reads version {VERSION}"
        )


def read_meta(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not (path / "zarr.json").exists():
        raise DatasetError(f"{path}: no dataset here (run `warmloop collect` first)")
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    _check_format(path, attrs)
    return attrs


def load_episodes(path: Path, with_images: bool = True) -> list[Episode]:
    """Every complete episode, in index order, loaded into memory."""
    read_meta(path)
    root = zarr.open_group(str(path), mode="r")
    episodes = []
    for name, group in sorted(root.groups()):
        if not group.attrs.get("complete", False):
            continue
        arrays = {}
        for array_path, array in _walk(group):
            if with_images or not array_path.startswith("images/"):
                arrays[array_path] = np.asarray(array[...])
        episodes.append(Episode(int(name.split("_")[1]), arrays, dict(group.attrs)))
    return episodes


def _walk(group: zarr.Group, prefix: str = ""):
    for name, array in group.arrays():
        yield prefix + name, array
    for name, sub in group.groups():
        yield from _walk(sub, f"{prefix}{name}/")
