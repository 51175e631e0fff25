"""RevBridge benchmarks (``make bench``): webhook ingest, end-to-end dunning throughput and peak RSS,
each reported as a ratio to a Temporal floor measured in the same run (see
../shared/docs/perf-floor.md for why ratios, not absolute numbers)."""
