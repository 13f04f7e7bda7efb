"""The node base: a message whose handler fails is counted, logged within bounds, survived."""

from __future__ import annotations

import logging

import numpy as np

from runtime.node import Node
from streams import ActionChunk, Observation, Received
from streams.logs import ThrottledLog


def test_throttled_warnings_keep_the_first_lines_then_one_summary_per_period(caplog) -> None:
    throttled = ThrottledLog(logging.getLogger("test.throttle"), first=10, period=3600)
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        for i in range(5000):
            throttled.warning("bad input", "bad input %d", i)
        throttled.warning("other kind", "another")
    lines = caplog.messages
    assert lines[:10] == [f"bad input {i}" for i in range(10)]
    assert lines[10].startswith("1 more bad input (11 in all)")  # the first summary line
    assert lines[11:] == ["another"]  # each kind has its own first lines


class _Failing(Node):
    name = "failing"

    def __init__(self) -> None:
        super().__init__()
        self.handled = []
        self.handlers = {Observation: self._on_observation, ActionChunk: self.handled.append}

    def _on_observation(self, observation: Observation) -> None:
        raise ZeroDivisionError(f"step {observation.step}")


def test_a_failing_handler_is_counted_and_the_next_message_is_handled(caplog) -> None:
    node = _Failing()
    bad = Received("observation", Observation(state=np.zeros(3, np.float32), step=1))
    good = ActionChunk(actions=np.zeros((2, 4), np.float32), t_first=0.0, dt=0.1)
    with caplog.at_level(logging.WARNING):
        for _ in range(100):
            assert node.dispatch(bad)
        assert node.dispatch(Received("action", good))
    assert node.counters["handler_errors"] == 100
    assert node.counters["handler_errors.ZeroDivisionError"] == 100
    assert node.handled == [good]
    assert len(caplog.records) <= 11
    assert "ZeroDivisionError while handling warmloop.Observation: step 1" in caplog.messages[0]
