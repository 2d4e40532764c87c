"""Benchmarks; each script prints its figures (see the docstring of each)."""
