"""Every warmloop benchmark, one module each; `warmloop bench NAME` runs one.

A benchmark module has one entry, `run(quick: bool) -> BenchResult`
(`benchmarks/harness.py`). It imports the capability it measures; no capability
imports a benchmark. This registry imports nothing: a module is imported when its
benchmark runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    name: str
    summary: str
    module: str  # benchmarks.NAME, imported when the benchmark runs


BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark(
            "streams", "ZeroMQ transport: warmloop streams vs bare pyzmq", "benchmarks.streams"
        ),
        Benchmark(
            "sim", "MuJoCo physics and headless rendering speed, expert success", "benchmarks.sim"
        ),
        Benchmark("policy", "success against latency: DDPM-100, DDIM-10, RTI", "benchmarks.policy"),
        Benchmark(
            "runtime", "loop jitter, deadline misses, end-to-end latency", "benchmarks.runtime"
        ),
        Benchmark(
            "reconstruction",
            "tri-plane 4D fit of the Explore room: held-out PSNR",
            "benchmarks.reconstruction",
        ),
        Benchmark(
            "world", "generate -> reconstruct -> guide: FPS, revisit, drift", "benchmarks.world"
        ),
        Benchmark(
            "onnx", "RTI update latency: torch eager vs onnxruntime, and parity", "benchmarks.onnx"
        ),
    )
}
