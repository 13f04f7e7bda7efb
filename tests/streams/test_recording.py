from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from streams import DecodeError, Heartbeat, Observation, Publisher, Queue, Subscriber
from streams.codec import decode, encode
from streams.recording import McapWriter, Recorder, read_recording, summarize
from streams.replay import replay
from tests.streams.helpers import LineReader, sample_messages, wait_for


def _publish_until_heard(pub: Publisher, count_received, topic: str = "probe") -> None:
    def heard() -> bool:
        pub.publish(topic, Heartbeat(node="probe"))
        return count_received() > 0

    assert wait_for(heard, timeout=60.0, interval=0.01), "the recorder never connected"


def test_record_then_replay_gives_identical_messages(tmp_path) -> None:
    path = tmp_path / "run.mcap"
    sent = sample_messages() * 5
    with Publisher("tcp://127.0.0.1:*", source="sim") as pub:
        recorder = Recorder(path, [pub.address], ["probe", "data"])
        thread = threading.Thread(target=recorder.run)
        thread.start()
        _publish_until_heard(pub, lambda: recorder.writer.written)
        probes = recorder.writer.written
        for message in sent:
            pub.publish("data", message)
        assert wait_for(lambda: recorder.writer.written >= probes + len(sent))
        recorder.stop()
        thread.join()

    recorded = [r.decode() for r in read_recording(path, topics=["data"])]
    assert [r.message for r in recorded] == sent
    assert summarize(path)["data"].gaps == 0

    with (
        Publisher("tcp://127.0.0.1:*", source="replay") as out,
        Subscriber(out.address, {"data": Queue(1000), "probe": Queue(1000)}) as sub,
    ):
        for _ in range(1000):  # until the subscription has reached the publisher
            out.publish("probe", Heartbeat(node="probe"))
            if sub.recv("probe", timeout=0.02) is not None:
                break
        start = time.monotonic()
        assert replay(path, out, speed=1.0, topics=["data"]) == len(sent)
        replayed = [sub.recv("data", timeout=1.0) for _ in sent]
    assert [r.message for r in replayed] == sent
    # The replayed copies keep the original stamps: same seq and source.
    assert [r.message.stamp for r in replayed] == [r.message.stamp for r in recorded]
    span = recorded[-1].t_received - recorded[0].t_received
    assert time.monotonic() - start >= span * 0.9  # original timing, not as fast as possible


def test_recorder_process_closes_a_readable_file_on_sigterm(tmp_path) -> None:
    path = tmp_path / "sig.mcap"
    with Publisher("tcp://127.0.0.1:*", source="sim") as pub:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.recording",
                str(path),
                "--connect",
                pub.address,
                "--topic",
                "probe",
                "--topic",
                "obs",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        log = LineReader(process.stderr)
        try:
            # Probes until the recorder says it has its first message: it has joined.
            def joined() -> bool:
                pub.publish("probe", Heartbeat(node="probe"))
                return any("first message" in line for line in log.lines)

            assert wait_for(joined, timeout=60.0, interval=0.02), log.text()
            for step in range(200):
                pub.publish("obs", Observation(state=np.full(3, step, np.float32), step=step))
                time.sleep(0.002)
            # Loopback delivery takes microseconds; the margin is for a loaded machine. What
            # reached the recorder's socket before SIGTERM is drained, then the file closed.
            time.sleep(0.5)
        finally:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    stderr = log.text()
    assert process.returncode == 0, stderr
    summary = summarize(path)
    assert summary["obs"].messages == 200, stderr
    assert summary["obs"].gaps == 0


def test_reading_a_missing_or_foreign_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        list(read_recording(tmp_path / "nope.mcap"))
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not an mcap file at all")
    with pytest.raises(DecodeError, match="not a readable MCAP file"):
        list(read_recording(junk))


def test_losses_before_the_first_and_after_the_last_message_are_counted(tmp_path) -> None:
    path = tmp_path / "cut.mcap"
    writer = McapWriter(path)

    def write(topic: str, message, seq: int) -> None:
        frames = encode(topic, message, seq=seq, source="sim", t_sent=0.0)
        writer.write(decode([bytes(memoryview(f)) for f in frames]))

    for seq in (3, 4, 6):  # 0..2 were sent before the recording began; 5 went missing
        write("obs", Observation(state=np.zeros(2, np.float32), step=seq), seq)
    write("heartbeat", Heartbeat(node="sim", counters={"published.obs": 10}), 0)
    writer.close()
    obs = summarize(path)["obs"]
    assert (obs.messages, obs.gaps, obs.lost_at_start, obs.lost_at_end) == (3, 1, 3, 3)
    assert obs.lost == 7 and obs.unknown_end == 0


@pytest.mark.parametrize(
    ("endpoint", "says"),
    [
        ("tcp://127.0.0.1", "tcp needs HOST:PORT"),
        ("http://x:1", "expected tcp://HOST:PORT"),
        ("tcp://10.1.2.3:5599", "refusing to bind"),
    ],
)
def test_replay_endpoint_mistakes_are_one_line(tmp_path, endpoint: str, says: str) -> None:
    path = tmp_path / "one.mcap"
    writer = McapWriter(path)
    frames = encode("hb", Heartbeat(node="x"), seq=0, source="s", t_sent=0.0)
    writer.write(decode([bytes(memoryview(f)) for f in frames]))
    writer.close()
    result = subprocess.run(
        [sys.executable, "-m", "warmloop.cli", "replay", str(path), "--endpoint", endpoint],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in result.stderr
