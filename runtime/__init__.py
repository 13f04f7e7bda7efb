"""warmloop runtime: the real-time loop, the CLI, benchmarks harness and small shared interfaces."""
