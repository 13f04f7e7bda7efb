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
    # 40 periods of 5 ms from the first deadline (one period after creation): never
    # sooner; later only by what a busy machine adds (no upper bound to trip over).
    assert elapsed >= 0.195
    assert rate.stats.ticks == 40
    assert len(rate.stats.lateness) == len(rate.stats.wake_lateness) == 40
    assert min(rate.stats.lateness) >= 0  # a tick never starts before its deadline


def test_overrun_is_counted_and_skip_realigns_to_the_grid() -> None:
    rate = Rate(100, overrun="skip")
    rate.sleep()
    first = rate._deadline
    time.sleep(0.035)  # a 35 ms overrun: three and a half periods
    lateness = rate.sleep()
    assert lateness > 0.02
    assert rate.stats.late >= 1 and rate.stats.missed >= 1
    # Skip drops the deadlines already passed: the next one is on the grid, in the future
    # of the late tick, several periods on.
    jumped = (rate._deadline - first) / rate.period  # a whole number, up to float error
    assert round(jumped) >= 3 and abs(jumped - round(jumped)) < 1e-6  # 2p + 35 ms -> 5p


def test_catch_up_keeps_every_deadline_of_the_grid() -> None:
    rate = Rate(100, overrun="catch_up")
    rate.sleep()
    first = rate._deadline
    time.sleep(0.035)
    rate.sleep()
    rate.sleep()  # behind the grid: returns at once
    assert rate._deadline - first == pytest.approx(2 * rate.period)
    assert rate.stats.missed >= 1


def test_wake_up_lateness_is_measured_before_the_spin_and_the_spin_is_costed() -> None:
    spinning, sleeping = Rate(100, spin=0.004), Rate(100, spin=0.0)
    for _ in range(10):
        spinning.sleep()
        sleeping.sleep()
    # time.sleep never returns early: the OS's lateness is never negative.
    assert min(spinning.stats.wake_lateness) >= 0 and min(sleeping.stats.wake_lateness) >= 0
    # A 4 ms window spins for up to 4 ms of every tick that slept; no window never spins.
    assert spinning.stats.spun > 10 * 0.002 and sleeping.stats.spun < 10 * 0.0005
    assert 0 < spinning.stats.spin_share < 1


def test_misses_per_10k_ticks() -> None:
    from runtime.rate import RateStats

    assert RateStats(ticks=20_000, missed=3).misses_per_10k() == 1.5
    assert RateStats().misses_per_10k() == 0


@pytest.mark.parametrize(
    ("hz", "overrun", "spin"),
    [(0, "skip", 0.001), (-5, "skip", 0.001), (10, "later", 0.001), (100, "skip", 0.01)],
)
def test_bad_configuration_is_refused(hz: float, overrun: str, spin: float) -> None:
    with pytest.raises(ValueError):
        Rate(hz, overrun=overrun, spin=spin)


def test_jitter_histogram_bins_every_tick_by_its_lateness() -> None:
    from runtime.rate import RateStats

    stats = RateStats(lateness=[0.000001, 0.00003, 0.0003, 0.0003, 0.004, 1.0])
    histogram = stats.histogram()
    assert sum(histogram.values()) == 6
    assert histogram["<=0.01ms"] == 1 and histogram["<=0.05ms"] == 1
    assert histogram["<=0.5ms"] == 2 and histogram["<=5ms"] == 1 and histogram[">50ms"] == 1
