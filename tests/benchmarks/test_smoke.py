"""Every registered benchmark runs end to end in CI, at its smoke size.

A smoke run takes seconds: tiny random-weight stand-ins for the shipped checkpoints
(benchmarks/smoke.py), a few repetitions and short episodes, on the same code path as
the full run. It writes into its own directory and leaves the checkout's results and
docs alone. The runs go two at a time, started together by the first test: many of
them mostly wait (on sockets, real-time ticks, child processes), so a pair shares the
two cores of a CI machine where one alone leaves one idle.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from benchmarks import BENCHMARKS

ROOT = Path(__file__).resolve().parents[2]


def _tracked_outputs() -> str:
    done = subprocess.run(
        ["git", "status", "--porcelain", "--", "benchmarks/results", "docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return done.stdout


def _smoke_run(name: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "warmloop.cli", "bench", name, "--smoke", "--root", str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """{benchmark: (its root, the future of its run)}, all submitted at once."""
    before = _tracked_outputs()
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs: dict[str, tuple[Path, Future]] = {}
        for name in sorted(BENCHMARKS):
            root = tmp_path_factory.mktemp(f"smoke-{name}")
            runs[name] = (root, pool.submit(_smoke_run, name, root))
        yield runs
    assert _tracked_outputs() == before, "a smoke run changed tracked results or docs"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_smoke_run(name: str, smoke_runs) -> None:
    tmp_path, future = smoke_runs[name]
    done = future.result()
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "benchmarks" / "results" / f"{name}.json").read_text())
    assert result["size"] == "smoke" and result["command"].endswith(
        f"{name} --smoke --root {tmp_path}"
    )
    assert any(key.startswith("source_sha256_") for key in result)
    numbers = [v for v in result.values() if isinstance(v, float)]
    assert numbers, "a benchmark that measured nothing"
    assert f"<!-- bench:{name} -->" in (tmp_path / "docs" / "benchmarks.md").read_text()
