from __future__ import annotations

import time

import pytest

from runtime.rate import Rate


def test_rate_keeps_the_period_on_average() -> None:
    rate = Rate(200)
    start = time.monotonic()
    for _ in range(40):
        rate.sleep()
    elapsed = time.monotonic() - start
    # 40 periods of 5 ms from the first deadline (one period after creation).
    assert 0.195 <= elapsed < 0.35
    assert rate.stats.ticks == 40
    assert len(rate.stats.lateness) == 40


def test_overrun_is_counted_and_skip_realigns_to_the_grid() -> None:
    rate = Rate(100, overrun="skip")
    rate.sleep()
    time.sleep(0.035)  # a 35 ms overrun: three and a half periods
    lateness = rate.sleep()
    assert lateness > 0.02
    assert rate.stats.late >= 1 and rate.stats.missed >= 1
    # Skip drops the deadlines already passed: the next tick is on time again.
    assert rate.sleep() < 0.005


def test_catch_up_runs_the_missed_ticks_back_to_back() -> None:
    rate = Rate(100, overrun="catch_up")
    rate.sleep()
    time.sleep(0.035)
    rate.sleep()
    start = time.monotonic()
    rate.sleep()
    rate.sleep()
    assert time.monotonic() - start < 0.004  # the grid is behind: no waiting


@pytest.mark.parametrize(("hz", "overrun"), [(0, "skip"), (-5, "skip"), (10, "later")])
def test_bad_configuration_is_refused(hz: float, overrun: str) -> None:
    with pytest.raises(ValueError):
        Rate(hz, overrun=overrun)


def test_jitter_histogram_bins_every_tick_by_its_lateness() -> None:
    from runtime.rate import RateStats

    stats = RateStats(lateness=[0.000001, 0.00003, 0.0003, 0.0003, 0.004, 1.0])
    histogram = stats.histogram()
    assert sum(histogram.values()) == 6
    assert histogram["<=0.01ms"] == 1 and histogram["<=0.05ms"] == 1
    assert histogram["<=0.5ms"] == 2 and histogram["<=5ms"] == 1 and histogram[">50ms"] == 1
