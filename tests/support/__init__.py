"""Test support shared by the suite, the drills and the benchmarks: waiting on conditions."""
