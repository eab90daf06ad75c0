"""A second's memory of authenticated keys, so a request does not read the database to
learn who sent it (every request authenticates, twice under Serve: proxy and app).

Only live keys are remembered (an unknown key is looked up every time: a flood of made-up
keys cannot fill the cache, and a key issued a moment ago works at once), at most
``KEY_CACHE_SIZE`` of them, each for ``KEY_CACHE_S``. A revocation takes effect at once in
the process that revokes (it forgets the key) and within ``KEY_CACHE_S`` in every other
process (their entries expire): the window a studio accepts for one database read less per
request.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

KEY_CACHE_S = 1.0
KEY_CACHE_SIZE = 4096

P = TypeVar("P")


class KeyCache(Generic[P]):
    """Principals by key hash, each kept ``ttl_s``; safe across threads (the lookups run in
    worker threads)."""

    def __init__(
        self,
        ttl_s: float = KEY_CACHE_S,
        capacity: int = KEY_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, P]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> P | None:
        """The principal remembered for ``key_hash``, if it is younger than ``ttl_s``."""
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is None:
                return None
            expires, principal = entry
            if self.clock() >= expires:
                del self._entries[key_hash]
                return None
            return principal

    def put(self, key_hash: str, principal: P) -> None:
        """Remember a live key's principal; the oldest entry goes past ``capacity``."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._entries[key_hash] = (self.clock() + self.ttl_s, principal)
            self._entries.move_to_end(key_hash)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def forget(self, matches: Callable[[P], bool]) -> None:
        """Drop every entry whose principal ``matches`` (a key revoked here)."""
        with self._lock:
            for key_hash in [h for h, (_, p) in self._entries.items() if matches(p)]:
                del self._entries[key_hash]
