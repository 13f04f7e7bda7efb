from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runtime.bench import BenchResult, format_table, write_results
from runtime.cli import SUBCOMMANDS, main


def _warmloop(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_every_subcommand() -> None:
    result = _warmloop("--help")
    assert result.returncode == 0
    for name in (
        "collect",
        "train",
        "eval",
        "calibrate-rti",
        "export",
        "deploy",
        "launch",
        "replay",
        "view",
        "bench",
        "demo",
    ):
        assert name in result.stdout


@pytest.mark.parametrize("command", [c.name for c in SUBCOMMANDS])
def test_every_subcommand_has_help(command: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0


@pytest.mark.parametrize("args", [["nope"], ["bench", "--bad-flag", "streams"], ["bench"]])
def test_bad_usage_gives_one_clear_line_and_exit_code_2(args: list[str]) -> None:
    result = _warmloop(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "error" in result.stderr


def test_cli_never_imports_torch() -> None:
    code = "import sys, runtime.cli; runtime.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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
