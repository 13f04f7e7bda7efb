"""The benchmark harness: results JSON, the docs table, the registry."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import pytest

from benchmarks import BENCHMARKS, SIZES
from benchmarks.harness import BenchResult, format_table, write_results

ROOT = Path(__file__).resolve().parents[2]
# A benchmark that runs another's code at that one's sizes names it here.
SIZES_FROM = {"benchmarks.policy_panda": "benchmarks.policy"}


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_registered_benchmark_runs_every_size(name: str) -> None:
    bench = BENCHMARKS[name]
    module = importlib.import_module(bench.module)
    assert list(inspect.signature(module.run).parameters) == ["size", "checkpoints"]
    sizes = importlib.import_module(SIZES_FROM.get(bench.module, bench.module)).SIZES
    assert set(sizes) == set(SIZES), "each size needs its parameters"
    for path in bench.sources:
        assert (ROOT / path).exists(), f"{name} depends on {path}, which is not there"
    for checkpoint in bench.checkpoints:
        assert (ROOT / "checkpoints" / checkpoint / "config.json").exists()


def test_bench_results_are_flat_json_with_machine_and_docs_table(tmp_path) -> None:
    result = BenchResult(
        figures={"latency_p50_us": 12.5, "missing": float("nan"), "n": 3},
        table=[["what", "value"], ["latency", "12.5"]],
        notes=["a note"],
    )
    path = write_results("demo_bench", result, tmp_path, size="quick")
    data = json.loads(path.read_text())
    assert path == tmp_path / "benchmarks" / "results" / "demo_bench.json"
    assert data["latency_p50_us"] == 12.5 and data["missing"] is None and data["n"] == 3
    assert "cores" in data["machine"] and data["size"] == "quick"
    assert all(not isinstance(v, dict | list) for v in data.values())
    doc = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "| latency | 12.5  |" in doc and "a note" in doc
    # A second run replaces the section instead of appending another.
    write_results("demo_bench", result, tmp_path, size="full")
    assert (tmp_path / "docs" / "benchmarks.md").read_text().count("## demo_bench") == 1


def test_format_table_aligns_columns() -> None:
    table = format_table([["a", "bb"], ["ccc", "d"]])
    assert table.splitlines() == ["| a   | bb |", "|-----|----|", "| ccc | d  |"]
