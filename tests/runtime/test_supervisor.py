"""The launcher's process supervision, with real processes."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

from runtime.launch_file import LaunchGraph, NodeSpec, RestartPolicy
from runtime.supervisor import Supervisor

HELPER = "tests.runtime.helper_nodes"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def test_failed_nodes_restart_with_backoff_and_logs_are_prefixed(tmp_path) -> None:
    counter = tmp_path / "runs"
    graph = LaunchGraph(
        "t",
        tmp_path / "t.yaml",
        [
            NodeSpec("flaky", HELPER, ["flaky", str(counter)], RestartPolicy(True, 2, 0.05)),
            NodeSpec("main", HELPER, ["finite", "2.0"], ends_run=True),
        ],
        [],
    )
    output = io.StringIO()
    began = time.monotonic()
    report = Supervisor(graph, output=output, handle_signals=False).run()
    log = output.getvalue()
    assert report.restarts == {"flaky": 2, "main": 0}
    assert report.exit_codes["flaky"] == [3, 3, 3] and report.exit_codes["main"] == [0]
    assert counter.read_text() == "3"
    assert "[flaky] attempt 1" in log and "[flaky] attempt 3" in log and "[main] done" in log
    assert "[flaky] restart 2/2 in 0.1 s" in log  # the back-off doubled
    assert report.ended_by == "node main" and time.monotonic() - began < 10
    assert any("flaky exited with [3, 3]" in fault for fault in report.faults)


def test_stop_leaves_no_orphans_and_no_ipc_files(tmp_path) -> None:
    ipc, pids = tmp_path / "node.sock", tmp_path / "pids"
    graph = LaunchGraph(
        "t",
        tmp_path / "t.yaml",
        [NodeSpec("binder", HELPER, ["binder", str(ipc), str(pids)])],
        [ipc],
    )
    supervisor = Supervisor(graph, output=io.StringIO(), handle_signals=False)
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    deadline = time.monotonic() + 20
    while not pids.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    node, grandchild = map(int, pids.read_text().split())
    assert ipc.exists() and _alive(node) and _alive(grandchild)
    supervisor.stop()
    thread.join(timeout=15)
    assert not thread.is_alive()
    time.sleep(0.2)
    assert not _alive(node) and not _alive(grandchild)
    assert not ipc.exists()
