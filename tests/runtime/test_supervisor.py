"""The launcher's process supervision, with real processes."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from runtime.launch_file import MAX_BACKOFF, LaunchGraph, NodeSpec, RestartPolicy
from runtime.supervisor import (
    EXIT_FAULTS,
    EXIT_GAVE_UP,
    EXIT_INTERRUPTED,
    EXIT_NODE_FAILED,
    EXIT_OK,
    NodeRecord,
    Supervisor,
)

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
            NodeSpec(
                "flaky",
                HELPER,
                ["flaky", str(counter)],
                RestartPolicy(True, 2, 0.2),
                required=False,  # the run goes on without it
            ),
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
    assert "[flaky] restart 2/2 in 0.4 s" in log  # the back-off doubled
    assert report.ended_by == "node main" and time.monotonic() - began < 30
    # Every failure is in the report, the last one too, and the run says it had faults.
    assert report.faults == [
        "flaky failed 3 time(s): "
        + ", ".join(f"code 3 at {e.at:.1f} s" for e in report.exits["flaky"])
        + "; restarted 2 time(s)"
    ]
    assert "gave up on flaky after 3 failure(s): last exit code 3, last log line: attempt 3" in log
    assert report.exit_code == EXIT_FAULTS


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


def _graph(tmp_path, *nodes: NodeSpec) -> LaunchGraph:
    return LaunchGraph("t", tmp_path / "t.yaml", list(nodes), [])


def test_a_required_node_that_fails_for_good_ends_the_run_and_says_why(tmp_path) -> None:
    graph = _graph(
        tmp_path,
        NodeSpec("policy", HELPER, ["flaky", str(tmp_path / "n")], RestartPolicy(True, 3, 0.2)),
        NodeSpec("sim", HELPER, ["finite", "600"], ends_run=True),
    )
    output = io.StringIO()
    began = time.monotonic()
    report = Supervisor(graph, output=output, handle_signals=False).run()
    assert time.monotonic() - began < 60  # not the sim's ten minutes
    assert report.ended_by == "gave up on policy" and report.exit_code == EXIT_GAVE_UP
    assert report.gave_up == [
        "gave up on policy after 4 failure(s): last exit code 3, last log line: attempt 4"
    ]
    assert report.exit_codes["policy"] == [3, 3, 3, 3]  # the last failure is kept
    assert report.exits["sim"][-1].at_shutdown and not report.exits["sim"][-1].failed


def test_exit_codes_say_how_the_run_went(tmp_path) -> None:
    clean = _graph(tmp_path, NodeSpec("main", HELPER, ["finite", "0.1"], ends_run=True))
    assert Supervisor(clean, output=io.StringIO(), handle_signals=False).run().exit_code == 0
    assert EXIT_OK == 0

    running = _graph(tmp_path, NodeSpec("main", HELPER, ["finite", "600"], ends_run=True))
    supervisor = Supervisor(running, output=io.StringIO(), handle_signals=False)
    reports = []
    thread = threading.Thread(target=lambda: reports.append(supervisor.run()))
    thread.start()
    time.sleep(0.5)
    supervisor.stop()  # what SIGINT does
    thread.join()
    assert reports[0].exit_code == EXIT_INTERRUPTED and not reports[0].faults


def test_a_killed_node_that_ends_the_run_is_a_fault(tmp_path) -> None:
    graph = _graph(tmp_path, NodeSpec("sim", HELPER, ["finite", "600"], ends_run=True))
    supervisor = Supervisor(graph, output=io.StringIO(), handle_signals=False)
    reports = []
    thread = threading.Thread(target=lambda: reports.append(supervisor.run()))
    thread.start()
    deadline = time.monotonic() + 30
    while supervisor.pid("sim") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(supervisor.pid("sim"), signal.SIGKILL)
    thread.join()
    report = reports[0]
    assert report.exit_code == EXIT_NODE_FAILED
    assert report.faults and "signal SIGKILL" in report.faults[0]


@pytest.mark.parametrize(("grace", "killed"), [(0.3, True), (5.0, False)])
def test_each_node_gets_its_own_grace_to_finish(tmp_path, grace, killed) -> None:
    graph = _graph(
        tmp_path,
        NodeSpec("viewer", HELPER, ["slow_exit", "1.0"], grace=grace),
        NodeSpec("main", HELPER, ["finite", "1.0"], ends_run=True),
    )
    report = Supervisor(graph, output=io.StringIO(), handle_signals=False).run()
    last = report.exits["viewer"][-1]
    assert last.at_shutdown and (last.code == -signal.SIGKILL) == killed
    assert report.exit_code == (EXIT_FAULTS if killed else EXIT_OK)


def test_restart_delays_double_to_a_ceiling_without_overflow() -> None:
    policy = RestartPolicy(True, 100, 0.5)
    assert [policy.delay(n) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert policy.delay(20) == MAX_BACKOFF and policy.delay(5000) == MAX_BACKOFF
    assert RestartPolicy(True, 3, 0.0).delay(0) == 0.2  # never faster than the minimum


def test_restarts_are_rate_limited_to_a_window(tmp_path) -> None:
    supervisor = Supervisor(
        _graph(tmp_path, NodeSpec("n", HELPER, ["finite", "0"])), output=io.StringIO()
    )
    record = NodeRecord(NodeSpec("n", HELPER, [], RestartPolicy(True, 100, 0.2)))
    now = 1000.0
    record.restarted_at = [now - 50, now - 40, now - 30, now - 20, now - 10]
    # Five restarts in the last 60 s: the sixth waits until the oldest leaves the window.
    assert supervisor._restart_delay(record, now) == pytest.approx(10.0)
    record.restarted_at = [now - 50]
    assert supervisor._restart_delay(record, now) == 0.2
