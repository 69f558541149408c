"""Micro-benchmarks of the ``mls`` package (run as modules; they are not tests)."""
