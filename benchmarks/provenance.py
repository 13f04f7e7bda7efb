"""Where a figure came from: the commit, the code and the checkpoints it depends on.

Every results file records, beside the figures:

    commit, dirty            `git rev-parse HEAD`, and whether the paths the figures
                             depend on had uncommitted changes
    command                  the command line that produced it
    source_sha256_<path>     a hash of the Python files under each path the benchmark
                             depends on (its registry entry's `sources`, and its module)
    checkpoint_sha256_<name> a hash of checkpoints/<name>/config.json, which carries the
                             weights' own sha256 and everything calibrated into it

A result is current while every one of those hashes still matches the checkout:
`warmloop bench --status` says which are not, and why.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from benchmarks import Benchmark


def git_state(root: Path, paths: list[str]) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout at `root`, dirty when any of `paths` differs from
    the commit; (None, None) outside git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", *paths)
    if commit is None:
        return None, None
    return commit.strip(), bool(status and status.strip())


def tree_sha256(path: Path) -> str:
    """sha256 over the relative names and bytes of every .py file at or under `path`."""
    files = [path] if path.is_file() else sorted(path.rglob("*.py"))
    digest = hashlib.sha256()
    for file in files:
        if "__pycache__" in file.parts:
            continue
        digest.update(str(file.relative_to(path.parent)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def checkpoint_sha256(directory: Path) -> str | None:
    config = directory / "config.json"
    return hashlib.sha256(config.read_bytes()).hexdigest() if config.exists() else None


def dependencies(bench: Benchmark) -> list[str]:
    """The paths (relative to the checkout) whose code decides the benchmark's figures."""
    own = bench.module.replace(".", "/") + ".py"
    return sorted({own, *bench.sources})


def tracked_paths(bench: Benchmark) -> list[str]:
    """Code and checkpoints: what must be committed for a figure to be reproducible."""
    return [*dependencies(bench), *(f"checkpoints/{name}" for name in bench.checkpoints)]


def key(prefix: str, name: str) -> str:
    return f"{prefix}_{name.replace('/', '_').removesuffix('.py')}"


def fingerprint(bench: Benchmark, root: Path, checkpoints: Path) -> dict[str, str | None]:
    """The hashes a result of `bench` records, as flat figures."""
    figures: dict[str, str | None] = {
        key("source_sha256", path): tree_sha256(root / path) for path in dependencies(bench)
    }
    for name in bench.checkpoints:
        figures[key("checkpoint_sha256", name)] = checkpoint_sha256(checkpoints / name)
    return figures


def staleness(bench: Benchmark, recorded: dict, root: Path) -> list[str]:
    """Why a recorded result no longer describes this checkout; [] when it is current."""
    if recorded.get("size", "quick" if recorded.get("quick") else "full") != "full":
        return ["not a full run"]
    reasons = []
    for name, value in fingerprint(bench, root, root / "checkpoints").items():
        if name not in recorded:
            reasons.append(f"no {name} recorded (a result from before provenance)")
        elif recorded[name] != value:
            what = name.removeprefix("source_sha256_").removeprefix("checkpoint_sha256_")
            kind = "checkpoint" if name.startswith("checkpoint") else "code"
            reasons.append(f"{kind} {what} changed")
    if recorded.get("dirty"):
        reasons.append("run on a tree with uncommitted changes")
    return reasons
