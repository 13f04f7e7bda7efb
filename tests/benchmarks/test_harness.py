"""The benchmark harness: results JSON, the docs table, the registry."""

from __future__ import annotations

import importlib
import json

import pytest

from benchmarks import BENCHMARKS
from benchmarks.harness import BenchResult, format_table, write_results


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_registered_benchmark_has_a_run_entry(name: str) -> None:
    assert callable(importlib.import_module(BENCHMARKS[name].module).run)


def test_bench_results_are_flat_json_with_machine_and_docs_table(tmp_path) -> None:
    result = BenchResult(
        figures={"latency_p50_us": 12.5, "missing": float("nan"), "n": 3},
        table=[["what", "value"], ["latency", "12.5"]],
        notes=["a note"],
    )
    path = write_results("demo_bench", result, tmp_path, quick=True)
    data = json.loads(path.read_text())
    assert path == tmp_path / "benchmarks" / "results" / "demo_bench.json"
    assert data["latency_p50_us"] == 12.5 and data["missing"] is None and data["n"] == 3
    assert "cores" in data["machine"] and data["quick"] is True
    assert all(not isinstance(v, dict | list) for v in data.values())
    doc = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "| latency | 12.5  |" in doc and "a note" in doc
    # A second run replaces the section instead of appending another.
    write_results("demo_bench", result, tmp_path, quick=False)
    assert (tmp_path / "docs" / "benchmarks.md").read_text().count("## demo_bench") == 1


def test_format_table_aligns_columns() -> None:
    table = format_table([["a", "bb"], ["ccc", "d"]])
    assert table.splitlines() == ["| a   | bb |", "|-----|----|", "| ccc | d  |"]
