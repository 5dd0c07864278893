"""Benchmarks: run as scripts (python -m bench.NAME), see bench/README.md."""
