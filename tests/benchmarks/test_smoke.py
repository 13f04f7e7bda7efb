"""Every registered benchmark runs end to end in CI, at its smoke size.

A smoke run takes seconds: tiny random-weight stand-ins for the shipped checkpoints
(benchmarks/smoke.py) and a few repetitions, on the same code path as the full run. It
writes into its own directory and leaves the checkout's results and docs alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
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


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_smoke_run(name: str, tmp_path) -> None:
    before = _tracked_outputs()
    done = subprocess.run(
        [sys.executable, "-m", "warmloop.cli", "bench", name, "--smoke", "--root", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "benchmarks" / "results" / f"{name}.json").read_text())
    assert result["size"] == "smoke" and result["command"].endswith(
        f"{name} --smoke --root {tmp_path}"
    )
    assert any(key.startswith("source_sha256_") for key in result)
    numbers = [v for v in result.values() if isinstance(v, float)]
    assert numbers, "a benchmark that measured nothing"
    assert f"<!-- bench:{name} -->" in (tmp_path / "docs" / "benchmarks.md").read_text()
    assert _tracked_outputs() == before, "a smoke run changed tracked results or docs"
