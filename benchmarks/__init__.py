"""Benchmarks run by ``make bench``; each prints a ratio against a raw baseline of the same run."""
