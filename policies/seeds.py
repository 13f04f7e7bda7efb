"""Seed ranges: what each experiment may draw its episodes from, in one place.

Tune on one range, report on another. Anything chosen from closed-loop results (K',
learning rates, horizons, warm-start modes) is chosen on TUNING seeds; benchmarks
report on REPORT seeds; FRESH seeds are touched by nothing but a final report, so a
figure there is out of sample for every choice made here. Datasets are collected on
seeds 0, 1, 2, ..., far below all of them.
"""

COLLECT = 0  # `warmloop collect`: episode i of a dataset uses seed i
REPORT = 100_000  # `warmloop eval` and every benchmark's scored episodes
TUNING = 200_000  # `warmloop calibrate-rti`, and any hand tuning
LATENCY = 300_000  # episodes a benchmark only times (batch-1 latency), never scores
FRESH = 900_000  # the held-out check beside a benchmark's report; nothing tunes on it

# Within TUNING: calibration's held-out expert demonstrations first, then its
# closed-loop checks, so that the two never share a start.
TUNING_DEMONSTRATIONS = TUNING
TUNING_CLOSED_LOOP = TUNING + 10_000
