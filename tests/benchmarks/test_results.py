"""Recorded results know where they came from, and say when they no longer hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import BENCHMARKS
from benchmarks.provenance import checkpoint_sha256, fingerprint, key, staleness

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
WITH_CHECKPOINTS = sorted(n for n, b in BENCHMARKS.items() if b.checkpoints)


@pytest.mark.parametrize("name", WITH_CHECKPOINTS)
def test_results_were_measured_on_the_shipped_checkpoints(name: str) -> None:
    """A retrained or recalibrated checkpoint must come with its benchmark re-run."""
    recorded = json.loads((RESULTS / f"{name}.json").read_text())
    for checkpoint in BENCHMARKS[name].checkpoints:
        shipped = checkpoint_sha256(ROOT / "checkpoints" / checkpoint)
        assert recorded.get(key("checkpoint_sha256", checkpoint)) == shipped, (
            f"benchmarks/results/{name}.json was not measured on checkpoints/{checkpoint} "
            f"as shipped: run `warmloop bench {name}`"
        )


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_recorded_result_carries_its_provenance(name: str) -> None:
    recorded = json.loads((RESULTS / f"{name}.json").read_text())
    assert recorded["size"] == "full" and recorded["commit"] and "command" in recorded
    assert set(fingerprint(BENCHMARKS[name], ROOT, ROOT / "checkpoints")) <= set(recorded)


def test_staleness_names_what_changed(tmp_path) -> None:
    bench = BENCHMARKS["policy"]
    current = {
        **fingerprint(bench, ROOT, ROOT / "checkpoints"),
        "size": "full",
        "dirty": False,
    }
    assert staleness(bench, current, ROOT) == []
    assert staleness(bench, {**current, "size": "quick"}, ROOT) == ["not a full run"]
    changed = {**current, key("source_sha256", "sim"): "0" * 64}
    assert staleness(bench, changed, ROOT) == ["code sim changed"]
    retrained = {**current, key("checkpoint_sha256", "pusht"): "0" * 64}
    assert staleness(bench, retrained, ROOT) == ["checkpoint pusht changed"]
    assert "uncommitted" in staleness(bench, {**current, "dirty": True}, ROOT)[0]
    old = {k: v for k, v in current.items() if not k.startswith("source")}
    assert any("before provenance" in reason for reason in staleness(bench, old, ROOT))
