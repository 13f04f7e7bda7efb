"""Shared test set-up: headless rendering, a clean skip for tests that need CUDA, and
torch's thread count restored after each test."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A test that sets torch's thread count (training.threads does) must not leave it
    set for the tests after it in the same worker: float sums reordered across threads
    move fitted results, and which tests share a worker changes from run to run."""
    torch = sys.modules.get("torch")  # never imported here: the torch-free tests stay so
    before = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        default = int(os.environ.get("OMP_NUM_THREADS", "0")) or os.cpu_count() or 1
        torch.set_num_threads(before if before is not None else default)
