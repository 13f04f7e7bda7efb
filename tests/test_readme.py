"""The README says what recorded runs measured."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_demo_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("```\nsuccess:", 1)[1].split("```", 1)[0]
    return ("success:" + block).strip().splitlines()


def test_readme_demo_block_is_the_recorded_demo_run() -> None:
    recorded = json.loads((ROOT / "benchmarks" / "results" / "demo.json").read_text())
    assert recorded["size"] == "full", "the README quotes a full `warmloop bench demo` run"
    shown = _readme_demo_block()
    printed = recorded["printed"].splitlines()
    assert shown[: len(printed)] == printed
