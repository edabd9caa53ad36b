"""Running scenarios: the runner, sweeps, capacity search, benchmarks and plots."""
