"""The serving path's structural floor, for benchmarks only (``KILN_BENCH=1``)."""
