"""streams depends on numpy, msgpack and pyzmq only: never on torch, even transitively."""

from __future__ import annotations

import subprocess
import sys

BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _NoTorch())
"""


def test_streams_imports_and_works_where_torch_cannot_be_imported() -> None:
    code = (
        BLOCK_TORCH
        + """
import numpy as np
import streams, streams.recording, streams.replay, streams.bench_peer
from streams import ActionChunk, decode, encode
chunk = ActionChunk(actions=np.zeros((2, 3), np.float32), t_first=0.0, dt=0.1)
frames = [bytes(memoryview(f)) for f in encode("a", chunk, seq=0, source="s", t_sent=0.0)]
assert decode(frames).message == chunk
print("ok")
"""
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
