"""What a process knows about jobs besides the database: change signals, open streams.

``JobSignals``: every write of a job's state or events (``serving.core.jobs.service.Jobs``)
signals the job's id after its commit, and the progress streams of this process wait on
that signal instead of asking the database over and over. A write made by another
process (a Ray task's worker, another ingress replica) raises no signal here: streams
also poll the database, slowly (``serving.core.jobs.follow.POLL_S``), which bounds how
late they see it.

``StreamSlots``: the per-tenant cap on open progress streams
(``KILN_EVENT_STREAMS_PER_TENANT``), counted per process, as each process holds its own
connections. ``KeyChecks``: open streams re-check their API key, sharing the answers.

All are process-wide (``SIGNALS``, ``STREAMS``, ``KEYS``): a job's writer and its streams
use different ``Jobs`` objects, and only the process is common to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# How often a stream's API key is looked up again: a revoked key's streams end this late.
KEY_RECHECK_S = 2.0
MAX_CHECKED_KEYS = 10_000


class JobSignals:
    """Wakes this process's waiters of a job when the job changes. Thread-safe: writers
    are worker threads, waiters are coroutines on one or several event loops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def changed(self, job_id: str) -> None:
        """Wake everyone waiting on ``job_id`` (call after the change has committed)."""
        with self._lock:
            waiters = list(self._waiters.get(job_id, ()))
        for loop, event in waiters:
            # A closed loop raises: its waiter went with it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    @contextmanager
    def watching(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set at each change of ``job_id`` (clear it before reading the job)."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(waiter)
        try:
            yield waiter[1]
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[job_id]


class StreamSlots:
    """Open streams per tenant in this process, against a cap."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: Counter[str] = Counter()

    def acquire(self, tenant_id: str, cap: int) -> bool:
        """Count one more open stream of the tenant; ``False`` (nothing counted) at the cap."""
        with self._lock:
            if self._open[tenant_id] >= cap:
                return False
            self._open[tenant_id] += 1
            return True

    def release(self, tenant_id: str) -> None:
        """One stream of the tenant closed."""
        with self._lock:
            self._open[tenant_id] -= 1
            if self._open[tenant_id] <= 0:
                del self._open[tenant_id]

    def open(self, tenant_id: str) -> int:
        """How many streams the tenant holds open in this process."""
        with self._lock:
            return self._open[tenant_id]


class KeyChecks:
    """Whether the API keys behind open streams are still live, asked of the database at
    most once per ``every_s`` per key in this process: fifty streams on one key cost one
    lookup, not fifty."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._checked: dict[str, tuple[float, bool]] = {}

    async def alive(self, key_id: str, check: Callable[[], bool]) -> bool:
        """The last answer about ``key_id`` if fresh, else ``check()`` (run in a thread)."""
        now = time.monotonic()
        checked_at, alive = self._checked.get(key_id, (float("-inf"), True))
        if now - checked_at < self.every_s:
            return alive
        alive = await asyncio.to_thread(check)
        self._checked[key_id] = (time.monotonic(), alive)
        if len(self._checked) > MAX_CHECKED_KEYS:  # forget keys no stream asked about lately
            old = now - self.every_s
            self._checked = {k: v for k, v in self._checked.items() if v[0] >= old}
        return alive


SIGNALS = JobSignals()
STREAMS = StreamSlots()
KEYS = KeyChecks(KEY_RECHECK_S)
