"""Benchmarks and the cost simulation behind docs/BENCHMARKS.md (`make bench`); not collected by pytest."""
