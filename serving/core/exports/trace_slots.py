"""The per-process cap on SVG traces running at once (``KILN_SVG_MAX_CONCURRENT``).

A trace holds a few hundred MiB of vtracer's working set for seconds; two or three at
once is what an ingress process can carry beside its other requests. A download that
finds every slot taken answers 429 ``svg_concurrency_limit`` with ``retry-after`` at
once, before credits are reserved, rather than queueing memory up.

A slot is taken on the event loop and given back by the thread that ran the trace, so it
stays held as long as the trace really runs: a client that hangs up cancels the request's
task, not the thread. If the work never started (cancelled while queued for a thread, or
refused before it, say 402), the request gives the slot back itself.

Per process, deliberately: memory is per process, and Ray Serve runs one counter per
ingress replica.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from serving.core.errors import too_many_requests

T = TypeVar("T")

# A trace at the working resolution takes a second or a few: try again after that.
RETRY_AFTER_S = 2


class TraceSlot:
    """One held slot: ``run`` the trace in a thread; ``abandon`` if it never ran."""

    def __init__(self, slots: TraceSlots) -> None:
        self._slots = slots
        self._lock = threading.Lock()
        self._started = False
        self._released = False

    def run(self, work: Callable[..., T], *args: object) -> T:
        """``work(*args)``, the slot given back when it ends (call it in the thread)."""
        with self._lock:
            if self._released:
                raise RuntimeError("the trace slot was given back before the work started")
            self._started = True
        try:
            return work(*args)
        finally:
            with self._lock:
                self._released = True
            self._slots._give_back()

    def abandon(self) -> None:
        """Give the slot back unless ``run`` has started (then ``run`` gives it back)."""
        with self._lock:
            if self._started or self._released:
                return
            self._released = True  # under the lock: ``run`` can no longer start
        self._slots._give_back()


class TraceSlots:
    """A counter of traces running in this process, taken without waiting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0

    @property
    def running(self) -> int:
        """Traces holding a slot now."""
        return self._running

    def take(self, limit: int) -> TraceSlot:
        """A slot, or ``KilnError`` 429 with ``retry-after`` when ``limit`` are taken."""
        with self._lock:
            if self._running >= limit:
                raise too_many_requests(
                    f"too many SVG exports at once: this server traces {limit} at a time; "
                    "try again shortly",
                    "svg_concurrency_limit",
                    RETRY_AFTER_S,
                )
            self._running += 1
        return TraceSlot(self)

    def _give_back(self) -> None:
        with self._lock:
            self._running -= 1


# The process's counter: every app in this process shares it, as they share its memory.
TRACES = TraceSlots()
