"""How many CPU threads torch may use in this process, by one rule for every entry point.

torch's default (one intra-op thread per core, spinning while it waits for work) is
right for one training job alone on a machine. Beside a simulator, other nodes or other
jobs it oversubscribes the cores: on a loaded 2-core machine `warmloop eval` went from a
25.6 ms to a 405 ms median RTI latency with it. So:

- inference (eval, calibrate-rti, the policy, world and reconstruction nodes, latency
  benchmarks): 1 thread; at batch 1 the networks here gain little from a second one;
- training (train, distill): every core this process may run on (its CPU affinity);
- `--threads N` (or a node's `threads` parameter) overrides either.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
INFERENCE = "inference"
TRAINING = "training"


def cores_available() -> int:
    """Cores this process may run on (its affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(purpose: str) -> int:
    if purpose not in (INFERENCE, TRAINING):
        raise ValueError(f"purpose must be {INFERENCE!r} or {TRAINING!r}, got {purpose!r}")
    return 1 if purpose == INFERENCE else cores_available()


def set_threads(threads: int | None, purpose: str) -> int:
    """Set torch's intra-op threads: `threads`, or the rule's default when None."""
    import torch

    chosen = default_threads(purpose) if threads is None else threads
    if chosen < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(chosen)
    log.debug("torch: %d intra-op thread(s) for %s", chosen, purpose)
    return chosen
