from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

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


def _joined_recorder(pub: Publisher, module_args: list[str]):
    """A recorder process (python -m MODULE ARGS), probed until it says it has its first
    message, i.e. it has joined; the process and its stderr lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", *module_args], stderr=subprocess.PIPE, text=True
    )
    log = LineReader(process.stderr)

    def joined() -> bool:
        pub.publish("probe", Heartbeat(node="probe"))
        return any("first message" in line for line in log.lines)

    if not wait_for(joined, timeout=60.0, interval=0.02):
        process.kill()
        raise AssertionError(log.text())
    return process, log


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
        command = ["streams.recording", str(path), "--connect", pub.address]
        process, log = _joined_recorder(pub, [*command, "--topic", "probe", "--topic", "obs"])
        try:
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


def test_a_recorder_killed_with_sigkill_loses_at_most_the_last_second(tmp_path) -> None:
    """5 s at 100 Hz, then kill -9: every message published up to 1 s before the kill is
    in the cut file, checked by seq; sequence counts per channel from 1; log_time is UTC."""
    from mcap.exceptions import EndOfFile
    from mcap.reader import NonSeekingReader

    path = tmp_path / "run.mcap"
    began_ns = time.time_ns()
    with Publisher("tcp://127.0.0.1:*", source="sim") as pub:
        command = ["runtime.recorder_node", "--out", str(path), "--connect", pub.address]
        process, _ = _joined_recorder(pub, [*command, "--topics", "probe", "--topics", "obs"])
        try:
            sent_at = []  # (monotonic time, seq) of each observation
            start = time.monotonic()
            for step in range(500):  # 100 Hz for 5 s
                time.sleep(max(0.0, start + step * 0.01 - time.monotonic()))
                pub.publish("obs", Observation(state=np.zeros(3, np.float32), step=step))
                sent_at.append(time.monotonic())
        finally:
            killed_at = time.monotonic()
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    steps = [r.decode().message.step for r in read_recording(path, topics=["obs"])]
    due = [step for step, at in enumerate(sent_at) if at <= killed_at - 1.0]
    assert set(due) <= set(steps), f"lost {sorted(set(due) - set(steps))[:10]}..."
    records = []
    # The official reader, chunk by chunk, to the cut.
    with open(path, "rb") as handle, contextlib.suppress(EndOfFile):
        records.extend(NonSeekingReader(handle).iter_messages(log_time_order=False))
    by_channel: dict[int, list[int]] = {}
    for _schema, channel, message in records:
        by_channel.setdefault(channel.id, []).append(message.sequence)
        assert began_ns <= message.log_time <= time.time_ns()
    for sequences in by_channel.values():
        assert sequences == list(range(1, len(sequences) + 1))


def test_a_writer_left_idle_still_writes_its_chunk_out(tmp_path) -> None:
    path = tmp_path / "quiet.mcap"
    writer = McapWriter(path, flush_s=0.2)
    frames = encode("obs", Observation(state=np.zeros(3, np.float32)), seq=0, source="sim",
                    t_sent=time.monotonic())  # fmt: skip
    writer.write(decode(frames, t_received=time.monotonic()))
    size = path.stat().st_size
    writer.flush_if_due()
    assert path.stat().st_size == size  # within flush_s: still in memory
    time.sleep(0.3)
    writer.flush_if_due()
    assert path.stat().st_size > size  # the chunk reached the file without a new write
    assert [r.decode().message.step for r in read_recording(path)] == [0]  # a cut file reads
    writer.close()


def test_a_recording_made_before_msgspec_still_replays() -> None:
    """tests/streams/fixtures/recording-83ac073.mcap was written by the msgpack-python codec
    of commit 83ac073 (make_recording_83ac073.py, run on that commit); the msgspec
    decoder must read every message of it unchanged."""
    path = Path(__file__).parent / "fixtures" / "recording-83ac073.mcap"
    received = {r.topic: r for r in (m.decode() for m in read_recording(path))}
    assert sorted(received) == ["actions", "frame", "heartbeat", "obs"]
    obs = received["obs"].message
    assert obs.state.tolist() == list(range(7)) and (obs.step, obs.episode) == (3, 1)
    assert obs.images["wrist"].shape == (8, 8, 3)
    chunk = received["actions"].message
    assert chunk.actions.shape == (4, 4) and (chunk.t_first, chunk.dt) == (10.1, 0.1)
    frame = received["frame"].message
    assert frame.camera == "main" and float(frame.depth[0, 0]) == 2.0
    assert received["heartbeat"].message.counters == {"ticks": 12, "late": 0}
    assert [received[t].message.stamp.source for t in received] == ["old"] * 4
