"""streams depends on numpy, msgpack and pyzmq only: never on torch, even transitively."""

from __future__ import annotations

from tests.no_torch import run_without_torch


def test_streams_imports_and_works_where_torch_cannot_be_imported() -> None:
    result = run_without_torch(
        """
import numpy as np
import streams, streams.recording, streams.replay, benchmarks.streams_peer
from streams import ActionChunk, decode, encode
chunk = ActionChunk(actions=np.zeros((2, 3), np.float32), t_first=0.0, dt=0.1)
frames = [bytes(memoryview(f)) for f in encode("a", chunk, seq=0, source="s", t_sent=0.0)]
assert decode(frames).message == chunk
print("ok")
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
