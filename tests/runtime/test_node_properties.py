"""Every node type as a real process, fed hypothesis-drawn messages that pass the decoder
(#17): the process stays up, logs quietly, and answers a valid message afterwards.

The policy node has the same property in tests/policies/test_node.py (in process, where
hypothesis can shrink a failure to one observation). Here each node runs once, as
`warmloop` would start it, and hypothesis publishes its draws into it; what "answers"
means is per node: the sim takes a valid chunk, the recorder writes a probe, the
reconstruction publishes a snapshot, the world node counts a control.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import (
    ActionChunk,
    Controls,
    Endpoint,
    Frame,
    Heartbeat,
    InvalidMessage,
    Publisher,
    Queue,
    Subscriber,
    TriPlanes,
)
from tests.streams.helpers import LineReader, wait_for
from tests.world.tiny import explore_frame

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = 40  # drawn lists per node, of 1-3 messages each
FINITE = st.floats(width=32, allow_nan=False, allow_infinity=False)


def _maybe(build):
    """A strategy of messages built by `build`, keeping only those the protocol allows:
    construction refuses the rest, so no decoder would ever hand them to a node."""

    def attempt(*args):
        try:
            return build(*args)
        except (InvalidMessage, ValueError):
            return None

    return attempt


def _drive(
    publisher: Publisher, topic: str, messages: st.SearchStrategy, pace: float = 0.005
) -> int:
    """Publish what hypothesis draws, `pace` seconds apart; the number of messages sent."""
    sent = [0]

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(st.lists(messages, min_size=1, max_size=3))
    def publish(drawn) -> None:
        for message in drawn:
            if message is not None:
                publisher.publish(topic, message)
                sent[0] += 1
                time.sleep(pace)  # a stream, not a flood (bench hardening floods)

    publish()
    return sent[0]


def _start(module: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )


def _stop(process: subprocess.Popen, reader: LineReader | None = None) -> str:
    """SIGTERM; the node's log. Fails if it had died before or does not exit cleanly."""
    alive = process.poll() is None
    process.send_signal(signal.SIGTERM)
    if reader is None:
        _, log = process.communicate(timeout=60)
    else:  # the reader's thread owns the stream
        process.wait(timeout=60)
        log = reader.text()
    assert alive, f"the node died: {log[-3000:]}"
    assert process.returncode == 0, log[-3000:]
    return log


def _quiet(log: str, sent: int) -> None:
    lines = [line for line in log.splitlines() if "WARNING" in line]
    assert len(lines) <= 60, f"{len(lines)} warning lines for {sent} messages"


def _clean(summary: Path, log: str, sent: int) -> None:
    """No handler ever raised (the node's summary says so), and the log stayed short."""
    counters = json.loads(summary.read_text())["counters"]
    assert counters.get("handler_errors", 0) == 0, counters
    _quiet(log, sent)


# ---- sim: action chunks ---------------------------------------------------------------


def _chunks() -> st.SearchStrategy:
    shapes = st.tuples(st.integers(1, 12), st.sampled_from([4, 4, 4, 0, 3, 7]))
    actions = shapes.flatmap(
        lambda shape: st.lists(
            FINITE | st.sampled_from([0.0, 0.3, -0.2, 1.0]),
            min_size=shape[0] * shape[1],
            max_size=shape[0] * shape[1],
        ).map(lambda values: np.asarray(values, np.float32).reshape(shape))
    )
    return st.builds(
        _maybe(
            lambda a, t, dt, first, episode: ActionChunk(
                actions=a, t_first=time.monotonic() + t, dt=dt, first_index=first, episode=episode
            )
        ),
        actions,
        st.floats(-1e6, 1e6) | st.sampled_from([0.0, 0.01, -0.05]),
        st.floats(1e-9, 1e3) | st.just(0.02),
        st.integers(0, 2**62),
        st.sampled_from([0, 0, 0, 1, -1]),
    )


def _heartbeat_counters(beats: Subscriber, timeout: float) -> dict:
    counters, deadline = {}, time.monotonic() + timeout
    while time.monotonic() < deadline:
        received = beats.recv("heartbeat", timeout=0.2)
        if received is not None and isinstance(received.message, Heartbeat):
            counters = received.message.counters
    return counters


def test_sim_node_survives_any_allowed_chunk_and_takes_a_valid_one(tmp_path) -> None:
    actions = f"ipc://{tmp_path}/act"
    publisher = Publisher(Endpoint(actions, bind=True), source="policy")
    sim = _start(
        "sim.node", "--task", "pickplace", "--episodes", "1000", "--publish",
        f"ipc://{tmp_path}/obs", "--actions", actions, "--wait-for-policy", "0",
        "--summary", str(tmp_path / "sim.json"),
    )  # fmt: skip
    beats = Subscriber(f"ipc://{tmp_path}/obs", {"heartbeat": Queue(100), "observation": Queue(1)})
    try:
        assert wait_for(lambda: beats.recv("observation", timeout=0.1) is not None, 60)
        sent = _drive(publisher, "action", _chunks())
        before = _heartbeat_counters(beats, 1.5).get("chunks", 0)
        episode = beats.recv("observation", timeout=5.0).message.episode
        valid = np.tile([0.5, 0.0, 0.3, -1.0], (16, 1)).astype(np.float32)

        def taken() -> bool:
            publisher.publish(
                "action",
                ActionChunk(actions=valid, t_first=time.monotonic(), dt=0.02, episode=episode),
            )
            return _heartbeat_counters(beats, 1.2).get("chunks", 0) > before

        assert wait_for(taken, 30, interval=0.0)
    finally:
        log = _stop(sim)
        beats.close()
        publisher.close()
    _clean(tmp_path / "sim.json", log, sent)


# ---- recorder and reconstruction: frames and any other message --------------------------


def _rotations() -> st.SearchStrategy:
    quaternion = st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(
        lambda q: np.linalg.norm(q) > 1e-3
    )

    def matrix(q) -> np.ndarray:
        w, x, y, z = np.asarray(q) / np.linalg.norm(q)
        return np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
            ]
        )

    return quaternion.map(matrix)


def _frames() -> st.SearchStrategy:
    sizes = st.tuples(st.integers(1, 12), st.integers(1, 12))
    depth_values = st.floats(0, 1e30) | st.just(float("inf")) | st.just(2.0)

    def frame(size, depth, focal, centre, rotation, translation, scene_time):
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rotation, translation
        height, width = size
        return Frame(
            rgb=np.full((height, width, 3), 128, np.uint8),
            depth=None if depth is None else np.full(size, depth, np.float32),
            intrinsics=np.array([[focal, 0, centre], [0, focal, centre], [0, 0, 1.0]]),
            pose=pose,
            scene_time=scene_time,
        )

    return st.builds(
        _maybe(frame),
        sizes,
        st.none() | depth_values,
        st.floats(1e-6, 1e9) | st.just(45.7),
        st.floats(-1e9, 1e9) | st.just(4.0),
        _rotations(),
        st.lists(st.floats(-1e12, 1e12) | st.just(0.0), min_size=3, max_size=3),
        st.floats(-1e12, 1e12) | st.just(0.5),
    )


def _good_frame(index: int) -> Frame:
    return explore_frame(np.random.default_rng(index), index, size=32)


def test_recorder_records_any_allowed_message_and_a_probe_after(tmp_path) -> None:
    from streams.recording import read_recording

    publisher = Publisher("tcp://127.0.0.1:*", source="sim")
    recorder = _start(
        "runtime.recorder_node", "--out", str(tmp_path / "run.mcap"), "--connect",
        publisher.address, "--topics", "frame", "--topics", "probe", "--foxglove",
    )  # fmt: skip
    log_lines = LineReader(recorder.stderr)

    def joined() -> bool:
        publisher.publish("probe", Heartbeat(node="join"))
        return any("first message" in line for line in log_lines.lines)

    try:
        assert wait_for(joined, 60, interval=0.05), log_lines.text()
        sent = _drive(publisher, "frame", _frames())
        publisher.publish("probe", Heartbeat(node="after", counters={"sent": sent}))
        time.sleep(1.0)
    finally:
        log = _stop(recorder, log_lines)
        publisher.close()
    probes = [m.decode().message for m in read_recording(tmp_path / "run.mcap", topics=["probe"])]
    assert probes[-1].node == "after", log[-2000:]
    frames = list(read_recording(tmp_path / "run.mcap", topics=["frame"]))
    assert len(frames) == sent, f"{len(frames)} of {sent} frames recorded"
    _quiet(log, sent)


def test_reconstruction_node_survives_any_allowed_frame_and_still_fits(tmp_path) -> None:
    from world.reconstruction.exchange import from_message

    frames, world = f"ipc://{tmp_path}/frames", f"ipc://{tmp_path}/world"
    publisher = Publisher(Endpoint(frames, bind=True), source="camera")
    node = _start(
        "world.reconstruction.node", "--frames", frames, "--publish", world,
        "--resolution", "8", "--channels", "4", "--time-steps", "2", "--keyframes", "4",
        "--rays-per-step", "64", "--samples", "4", "--steps-per-frame", "1",
        "--publish-hz", "5", "--summary", str(tmp_path / "node.json"),
    )  # fmt: skip
    snapshots = Subscriber(world, {"triplanes": Queue(2)})
    try:

        def fitting() -> bool:
            publisher.publish("frame", _good_frame(0))
            return snapshots.recv("triplanes", timeout=0.2) is not None

        assert wait_for(fitting, 60, interval=0.0)
        sent = _drive(publisher, "frame", _frames())
        for index in range(8):  # a valid stream again: it must fit and publish from it
            publisher.publish("frame", _good_frame(index))
            time.sleep(0.05)
        while snapshots.recv("triplanes", timeout=0.0) is not None:
            pass  # snapshots fitted during the drawn frames
        received = snapshots.recv("triplanes", timeout=10.0)
        assert received is not None, "no snapshot after the drawn frames"
        field = from_message(received.message)
        assert all(torch_finite(p) for p in field.parameters())
    finally:
        log = _stop(node)
        snapshots.close()
        publisher.close()
    _clean(tmp_path / "node.json", log, sent)


def torch_finite(tensor) -> bool:
    return bool(tensor.isfinite().all())


# ---- world: TriPlanes snapshots and controls ------------------------------------------


def _valid_triplanes(resolution: int = 4) -> TriPlanes:
    from world.reconstruction.exchange import to_message
    from world.reconstruction.field import FieldConfig, TriPlaneField

    config = FieldConfig(resolution=resolution, channels=2, deform_channels=2, time_steps=2,
                         sh_degree=1, hidden=8, band_dim=4)  # fmt: skip
    return to_message(TriPlaneField(config, np.array([[-2, -2, 0], [2, 2, 2.0]]), (0.0, 1.0)))


def _triplanes() -> st.SearchStrategy:
    """Snapshots near a valid one: planes of other sizes or values, decoder weights
    dropped, reshaped or replaced, other flags, bounds and time ranges."""
    base = _valid_triplanes()

    def mutate(scale, resolution, drop, flags, bounds, times):
        planes = {
            name: {p: (np.ones_like(a, shape=(*a.shape[:-2], resolution, resolution)) * scale)
                   .astype(a.dtype) for p, a in getattr(base, name).items()}
            for name in ("canonical", "deformation")
        }  # fmt: skip
        decoder = {k: v for k, v in base.decoder.items() if k not in drop}
        decoder["flags"] = np.asarray(flags, np.float32)
        low, size = np.asarray(bounds[:3]), np.asarray(bounds[3:])  # size > 0
        return TriPlanes(**planes, decoder=decoder, bounds=np.stack([low, low + size]),
                         t_start=times[0], t_end=times[0] + times[1])  # fmt: skip

    return st.builds(
        _maybe(mutate),
        st.floats(-6e4, 6e4) | st.just(0.1),
        st.integers(1, 6) | st.just(4),
        st.just(set()) | st.sets(st.sampled_from(sorted(base.decoder))),
        st.just([1.0, 1.0]) | st.lists(st.floats(-5, 5), min_size=0, max_size=3),
        st.tuples(
            *[st.floats(-1e6, 1e6) | st.just(0.0)] * 3, *[st.floats(1e-6, 1e6) | st.just(1.0)] * 3
        ),
        st.tuples(st.floats(-1e9, 1e9), st.floats(0, 1e9)),
    )


def test_world_node_survives_any_allowed_snapshot_and_control(tmp_path) -> None:
    from tests.world.tiny import save_tiny

    memory, keys, world = (f"ipc://{tmp_path}/{n}" for n in ("memory", "keys", "world"))
    snapshots = Publisher(Endpoint(memory, bind=True), source="reconstruction")
    controls = Publisher(Endpoint(keys, bind=True), source="drive")
    node = _start(
        "world.generation.node", "--checkpoint", str(save_tiny(tmp_path / "tiny")),
        "--publish", world, "--memory", memory, "--controls", keys, "--segments", "0",
        "--summary", str(tmp_path / "world.json"),
    )  # fmt: skip
    beats = Subscriber(world, {"heartbeat": Queue(100), "frame": Queue(1)})
    try:
        assert wait_for(lambda: beats.recv("frame", timeout=0.1) is not None, 60)
        sent = _drive(snapshots, "triplanes", _triplanes(), pace=0.03)
        keys_drawn = st.builds(_maybe(lambda k: Controls(keys=k)), st.text(max_size=12))
        sent += _drive(controls, "controls", keys_drawn | st.sampled_from(
            [Controls(keys=k) for k in ("w", "w+left", "", "q", "x+y")]
        ))  # fmt: skip
        before = _heartbeat_counters(beats, 2.5)

        def answered() -> bool:
            controls.publish("controls", Controls(keys="d"))
            snapshots.publish("triplanes", _valid_triplanes())
            now = _heartbeat_counters(beats, 1.2)
            return all(now.get(k, 0) > before.get(k, 0) for k in ("controls", "snapshots"))

        assert wait_for(answered, 60, interval=0.0)
        assert beats.recv("frame", timeout=10.0) is not None
    finally:
        log = _stop(node)
        beats.close()
        snapshots.close()
        controls.close()
    _clean(tmp_path / "world.json", log, sent)
