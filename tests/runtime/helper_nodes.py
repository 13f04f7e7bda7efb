"""Small real processes for supervisor tests: `python -m tests.runtime.helper_nodes KIND ...`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import zmq


def flaky(counter: Path) -> int:
    """Counts its runs in a file, says so, and fails."""
    runs = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(runs))
    print(f"attempt {runs}", flush=True)
    return 3


def finite(seconds: float) -> int:
    time.sleep(seconds)
    print("done", flush=True)
    return 0


def binder(ipc: Path, pids: Path) -> int:
    """Binds an ipc socket, spawns a grandchild, records both pids, then waits forever."""
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    socket.bind(f"ipc://{ipc}")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    import os

    pids.write_text(f"{os.getpid()} {child.pid}")
    while True:
        time.sleep(0.1)


def slow_exit(seconds: float) -> int:
    """Runs until SIGTERM, then takes `seconds` to finish (a viewer writing its MP4)."""
    import signal

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    print("running", flush=True)
    while not stopping:
        time.sleep(0.02)
    time.sleep(seconds)
    print("finished", flush=True)
    return 0


if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    if kind == "flaky":
        raise SystemExit(flaky(Path(rest[0])))
    if kind == "finite":
        raise SystemExit(finite(float(rest[0])))
    if kind == "slow_exit":
        raise SystemExit(slow_exit(float(rest[0])))
    raise SystemExit(binder(Path(rest[0]), Path(rest[1])))
