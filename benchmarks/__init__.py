"""Every warmloop benchmark, one module each; `warmloop bench NAME` runs one.

A benchmark module has one entry, `run(size) -> BenchResult` (`benchmarks/harness.py`),
with `size` one of SIZES: "full" (the recorded figures), "quick" (a short check) or
"smoke" (seconds, tiny models, the same code path; CI runs it). It imports the
capability it measures; no capability imports a benchmark. This registry imports
nothing: a module is imported when its benchmark runs.

`sources` and `checkpoints` name what a benchmark's figures depend on (besides its own
module): a result stays current while their hashes match (benchmarks/provenance.py).
"""

from __future__ import annotations

from dataclasses import dataclass

SIZES = ("full", "quick", "smoke")


@dataclass(frozen=True)
class Benchmark:
    name: str
    summary: str
    module: str  # benchmarks.NAME, imported when the benchmark runs
    sources: tuple[str, ...] = ()  # paths of the code measured, relative to the checkout
    checkpoints: tuple[str, ...] = ()  # checkpoints/NAME directories the figures come from


# The closed-loop evaluation: the policy, its checkpoints, the scenes, Wilson intervals.
_POLICY_CODE = ("policies", "training", "sim", "runtime/stats.py")
BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark(
            "streams",
            "ZeroMQ transport: warmloop streams vs bare pyzmq",
            "benchmarks.streams",
            ("streams", "benchmarks/streams_peer.py"),
        ),
        Benchmark(
            "sim",
            "MuJoCo physics and headless rendering speed, expert success",
            "benchmarks.sim",
            ("sim", "policies/seeds.py"),
        ),
        Benchmark(
            "policy",
            "success against latency: DDPM-100, DDIM-10, RTI",
            "benchmarks.policy",
            _POLICY_CODE,
            ("pickplace", "pusht"),
        ),
        Benchmark(
            "policy-panda",
            "bench policy on the Franka Panda tasks (arm under IK)",
            "benchmarks.policy_panda",
            (*_POLICY_CODE, "benchmarks/policy.py"),
            ("panda-pickplace", "panda-pusht"),
        ),
        Benchmark(
            "policy-image",
            "image-observation policies: success against latency, encoder share",
            "benchmarks.policy_image",
            _POLICY_CODE,
            ("pickplace-image", "pusht-image"),
        ),
        Benchmark(
            "realtime",
            "under inference delay: RTI against RTC, prefix replacement, naive, ensembling",
            "benchmarks.realtime",
            _POLICY_CODE,
            ("pickplace", "pusht"),
        ),
        Benchmark(
            "runtime",
            "loop jitter, deadline misses, end-to-end latency",
            "benchmarks.runtime",
            (
                "runtime",
                "streams",
                "policies",
                "training",
                "sim",
                "benchmarks/runtime_delay.py",
                "benchmarks/realtime.py",
            ),
            ("pickplace", "pickplace-image"),
        ),
        Benchmark(
            "reconstruction",
            "tri-plane 4D fit of the Explore room: held-out PSNR",
            "benchmarks.reconstruction",
            (
                "world/reconstruction",
                "world/metrics.py",
                "world/warp.py",
                "benchmarks/reconstruction_peers.py",
                "sim",
                "streams",
            ),
        ),
        Benchmark(
            "world",
            "generate -> reconstruct -> guide: FPS, revisit, drift",
            "benchmarks.world",
            ("world", "training", "sim", "benchmarks/world_truth.py", "benchmarks/world_table.py"),
            ("explore-teacher", "explore-student"),
        ),
        Benchmark(
            "demo",
            "the manipulation demo as a user runs it: successes, jitter, RTI latency",
            "benchmarks.demo",
            (
                "warmloop/demos",
                "runtime",
                "sim",
                "policies",
                "training",
                "streams",
                "launch/manipulation.yaml",
            ),
            ("panda-pickplace-image",),
        ),
        Benchmark(
            "hardening",
            "what long runs and hostile input cost: viewer memory, kill -9, a flood",
            "benchmarks.hardening",
            ("viz", "benchmarks/hostile.py", "streams", "runtime", "policies"),
            ("pickplace",),
        ),
        Benchmark(
            "deploy",
            "the robot's install, cold start and latency: onnxruntime vs torch; served",
            "benchmarks.deploy",
            ("policies", "streams", "runtime", "warmloop/cli.py", "pyproject.toml"),
            ("pickplace",),
        ),
        Benchmark(
            "onnx",
            "RTI update latency: torch eager vs onnxruntime, and parity",
            "benchmarks.onnx",
            _POLICY_CODE,
            ("pickplace",),
        ),
    )
}
