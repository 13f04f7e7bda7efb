"""Every Python package of the tree is listed for installation (non-editable installs)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_with_an_init_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in ROOT.glob("*/**/__init__.py")
        if init.parts[len(ROOT.parts)] not in ("tests", "launch", ".venv", "build")
    }
    assert found <= listed, f"add to pyproject.toml packages: {sorted(found - listed)}"
