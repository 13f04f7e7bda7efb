"""The dependency rule of docs/architecture.md, read from every import with `ast`.

A package may import only the packages the rule lists for it, and the package graph has
no cycle. Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> the packages of ours it may import (docs/architecture.md, "The dependency rule")
ALLOWED = {
    "streams": set(),
    "training": set(),
    "runtime": {"streams"},
    "sim": {"streams", "runtime"},
    "policies": {"streams", "runtime", "training", "sim"},
    "world": {"streams", "runtime", "training", "sim"},
    "viz": {"streams", "runtime", "world"},
    "benchmarks": {"streams", "runtime", "training", "sim", "policies", "world", "viz"},
    "warmloop": {"streams", "runtime", "training", "sim", "policies", "world", "viz", "benchmarks"},
}
OURS = set(ALLOWED)


def _imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names.add(module)
            # `from world.generation import checkpoint` imports a submodule
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _sources() -> dict[str, Path]:
    """Module name -> file; a package's __init__.py under the package's name."""
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for top in OURS
        for path in (ROOT / top).rglob("*.py")
    }


def _module_graph() -> dict[str, set[str]]:
    sources = _sources()
    return {
        module: {name for name in _imported_modules(path) if name in sources}
        for module, path in sources.items()
    }


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imported in _module_graph().items():
        for name in imported:
            if name.split(".")[0] != module.split(".")[0]:
                graph[module.split(".")[0]].add(name.split(".")[0])
    return graph


@pytest.mark.parametrize("package", sorted(OURS))
def test_each_package_imports_only_what_the_rule_allows(package: str) -> None:
    offenders = [
        f"{module} imports {name}"
        for module, imported in sorted(_module_graph().items())
        if module.split(".")[0] == package
        for name in sorted(imported)
        if name.split(".")[0] not in ALLOWED[package] | {package}
    ]
    assert not offenders, "\n".join(offenders)


def test_the_rule_itself_has_no_cycle_and_covers_every_package() -> None:
    tops = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"tests", "launch"}
    assert tops == OURS, f"add {sorted(tops - OURS)} to the rule in docs/architecture.md"
    assert _cycle(ALLOWED) is None


def test_no_import_cycle_between_packages_or_modules() -> None:
    assert _cycle(_package_graph()) is None
    assert _cycle(_module_graph()) is None


def test_reconstruction_never_imports_generation() -> None:
    offenders = [
        f"{module} imports {name}"
        for module, imported in _module_graph().items()
        if module.startswith("world.reconstruction")
        for name in imported
        if name.startswith("world.generation")
    ]
    assert not offenders


def test_the_checker_sees_a_planted_violation(tmp_path) -> None:
    planted = tmp_path / "streams" / "bad.py"
    planted.parent.mkdir()
    planted.write_text("def f():\n    from runtime.node import Node\n    from . import codec\n")
    assert _imported_modules(planted, tmp_path) >= {"runtime.node", "streams.codec"}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of nodes, or None."""
    visiting, done = set(), set()

    def visit(node: str, trail: list[str]) -> list[str] | None:
        if node in visiting:
            return [*trail[trail.index(node) :], node]
        if node in done:
            return None
        visiting.add(node)
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt, [*trail, node])
            if found:
                return found
        visiting.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None
