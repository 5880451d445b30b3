"""Benchmarks (docs/performance.md), run as modules from the working tree: ``python3 -m benchmarks.bench_local``."""
