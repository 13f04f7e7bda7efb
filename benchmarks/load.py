"""Load beside a measurement: programs that each want a whole core, as on a shared robot
computer or a CI machine running other jobs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """`count` busy-looping processes for the duration of the block."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
