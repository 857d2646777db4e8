"""crmkit benchmarks (``make bench``); not tests, and not run in CI.

Every benchmark reports a ratio against a raw baseline measured in the same run on the same
data, because absolute times on shared machines drift.
"""
