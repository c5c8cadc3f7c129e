"""Benchmarks for tuner; run them with ``python -m bench <name>`` (see bench/README.md)."""
