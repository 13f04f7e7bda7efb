"""Reading a JSON object from a file with a typed error, without torch.

Checkpoints (torch) and exported policies (the torch-free deploy path) both read one, so
this module imports nothing but the standard library.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: Path, what: str, error: type[ValueError]) -> dict[str, Any]:
    """A JSON object from `path`; `error` when missing or not JSON. `what` names the
    directory's expected kind for the message, such as "a checkpoint"."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: missing (is {Path(path).parent} {what}?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise error(f"{path}: expected a JSON object")
    return meta
