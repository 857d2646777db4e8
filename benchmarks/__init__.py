"""Benchmarks of crmkit (``make bench`` = ``python -m benchmarks``); not run in CI."""
