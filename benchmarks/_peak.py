"""Peak resident memory a piece of work adds to this process (Linux ``/proc``), or to
other processes (``peak_growth``, psutil), for the benchmarks that print memory. A
helper, not a benchmark: the leading underscore keeps it out of the smoke run's discovery
(tests/benchmarks/test_benchmark_scripts_smoke.py).

    with PeakMemory() as peak:
        work()
    print(peak.added_mib)
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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


def private_rss(process: Any) -> int:
    """Bytes of ``process``'s (a ``psutil.Process``) own resident memory: RSS less its
    shared pages (files mapped, and Ray's object store, the shared-memory arena through
    which Serve's proxy hands a body to the replica: its pages count in both processes'
    RSS and are Ray's pool, reused)."""
    info = process.memory_info()
    return info.rss - info.shared


@contextmanager
def peak_growth(processes: dict[str, Any], settle_s: float = 0.5) -> Iterator[dict[str, int]]:
    """Growth of each process's ``private_rss`` over the block, in bytes (peak sampled
    every 10 ms, minus the start); filled in when the block ends, ``settle_s`` later."""
    start = {name: private_rss(p) for name, p in processes.items()}
    peak = dict(start)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for name, process in processes.items():
                peak[name] = max(peak[name], private_rss(process))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    growth: dict[str, int] = {}
    try:
        yield growth
    finally:
        time.sleep(settle_s)  # let the last forwarded bytes land
        done.set()
        sampler.join()
        growth.update({name: peak[name] - start[name] for name in processes})
