"""The recorder node as a process: a restart never destroys what was recorded."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from runtime.recorder_node import fresh_path
from streams import Heartbeat, Observation, Publisher
from tests.streams.helpers import LineReader, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_fresh_path_numbers_around_existing_files(tmp_path) -> None:
    out = tmp_path / "run.mcap"
    assert fresh_path(out) == out
    out.write_bytes(b"x")
    assert fresh_path(out) == tmp_path / "run.1.mcap"
    (tmp_path / "run.1.mcap").write_bytes(b"x")
    assert fresh_path(out) == tmp_path / "run.2.mcap"


def _recorder(out: Path, endpoint: str) -> tuple[subprocess.Popen, LineReader]:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "runtime.recorder_node", "--out", str(out)),
            *("--connect", endpoint, "--topics", "obs", "--topics", "probe"),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, LineReader(process.stderr)


def _until_recording(pub: Publisher, log: LineReader) -> None:
    def joined() -> bool:
        pub.publish("probe", Heartbeat(node="probe"))
        return any("first message" in line for line in log.lines)

    assert wait_for(joined, timeout=60, interval=0.02), log.text()


def test_a_restarted_recorder_writes_a_new_file_and_leaves_the_old_one(tmp_path) -> None:
    out = tmp_path / "run.mcap"
    with Publisher("tcp://127.0.0.1:*", source="sim") as pub:
        first, first_log = _recorder(out, pub.address)
        try:
            _until_recording(pub, first_log)
            for step in range(50):
                pub.publish("obs", Observation(state=np.zeros(3, np.float32), step=step))
        finally:
            first.send_signal(signal.SIGKILL)  # a crash: nothing is closed
            first.wait(timeout=30)
        assert out.exists()
        before = out.read_bytes()
        for step in range(50, 70):  # while no recorder runs: lost
            pub.publish("obs", Observation(state=np.zeros(3, np.float32), step=step))
        second, second_log = _recorder(out, pub.address)
        try:
            _until_recording(pub, second_log)
            for step in range(70, 80):
                pub.publish("obs", Observation(state=np.zeros(3, np.float32), step=step))
            time.sleep(0.5)  # delivered on loopback before SIGTERM drains the socket
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
    assert second.returncode == 0, second_log.text()
    assert out.read_bytes() == before  # untouched
    assert (tmp_path / "run.1.mcap").stat().st_size > 0
    assert "a restart never overwrites" in second_log.text()
    # Over both files, every observation the recordings do not hold is counted as lost.
    info = subprocess.run(
        [
            *(sys.executable, "-m", "warmloop.cli", "replay", "--info"),
            *(str(out), str(tmp_path / "run.1.mcap")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert info.returncode == 0, info.stderr
    line = next(x for x in info.stdout.splitlines() if x.startswith("obs:"))
    held = int(line.split(": ", 1)[1].split(" ", 1)[0])
    lost = int(line.split("lost ", 1)[1].split(":", 1)[0])
    assert held + lost == 80, line  # seq 0..79 all accounted for
    assert f"{out}: cut short" in info.stdout
