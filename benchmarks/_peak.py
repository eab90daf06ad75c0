"""Peak resident memory a piece of work adds to this process (Linux ``/proc``), for the
benchmarks that print memory. A helper, not a benchmark: the leading underscore keeps it
out of the smoke run's discovery (tests/benchmarks/test_benchmark_scripts_smoke.py).

    with PeakMemory() as peak:
        work()
    print(peak.added_mib)
"""

from __future__ import annotations

import ctypes
from pathlib import Path


def status_mib(field: str) -> float:
    """A ``/proc/self/status`` figure (``VmRSS``, ``VmHWM``) in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


class PeakMemory:
    """The resident high-water mark reached inside the block, minus the resident size at
    its start (freed heap handed back first, so earlier garbage does not hide a peak)."""

    def __enter__(self) -> PeakMemory:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        self.before = status_mib("VmRSS")
        self.added_mib = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.added_mib = status_mib("VmHWM") - self.before
