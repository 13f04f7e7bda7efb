"""Warning lines that a flood of bad input cannot turn into a second flood."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any


class ThrottledLog:
    """Warnings that cannot flood a log: per kind, the first `first` lines, then one line
    per `period` seconds saying how many were left out. Counters elsewhere stay exact."""

    def __init__(self, logger: logging.Logger, first: int = 10, period: float = 10.0):
        self.logger, self.first, self.period = logger, first, period
        self._seen: Counter[str] = Counter()
        self._quiet: Counter[str] = Counter()  # left out since the last summary line
        self._last_summary: dict[str, float] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        self._seen[kind] += 1
        if self._seen[kind] <= self.first:
            self.logger.warning(message, *args)
            return
        self._quiet[kind] += 1
        now = time.monotonic()
        if now - self._last_summary.get(kind, -self.period) >= self.period:
            self.logger.warning(
                "%d more %s (%d in all); logging one line per %.0f s. Last: " + message,
                self._quiet[kind], kind, self._seen[kind], self.period, *args,
            )  # fmt: skip
            self._quiet[kind] = 0
            self._last_summary[kind] = now
