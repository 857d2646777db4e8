"""Benchmarks of crmkit (``make bench``); each prints ratios against a raw baseline."""
