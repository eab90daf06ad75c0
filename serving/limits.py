"""The per-tenant cap on concurrent generation requests (``KILN_TENANT_MAX_CONCURRENT``).

Counted per ingress process, in memory: with several ingress replicas a tenant may run
up to cap × replicas at once. The cap protects the GPUs from one tenant's burst; the
credits ledger, not this counter, is what guarantees nobody spends past their balance.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from serving.errors import ApiError

RETRY_AFTER_S = 1


class ConcurrencyLimiter:
    """Slots per tenant; ``limit=None`` is no cap. Used from the event loop only."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.running: dict[str, int] = defaultdict(int)

    @contextmanager
    def slot(self, tenant_id: str) -> Iterator[None]:
        """Hold one of the tenant's slots for the block; 429 with ``retry-after`` if none."""
        if self.limit is None:
            yield
            return
        if self.running[tenant_id] >= self.limit:
            raise ApiError(
                429,
                f"too many concurrent requests: this tenant may run {self.limit} at once",
                code="tenant_concurrency_limit",
                headers={"retry-after": str(RETRY_AFTER_S)},
            )
        self.running[tenant_id] += 1
        try:
            yield
        finally:
            self.running[tenant_id] -= 1
            if not self.running[tenant_id]:
                del self.running[tenant_id]
