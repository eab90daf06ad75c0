"""The caller's balance and ledger entries."""

from __future__ import annotations

import asyncio

from serving.core.app import KilnCore
from serving.http.auth import Tenant
from serving.http.credits.protocol import CreditsResponse, LedgerEntry


class ServingCredits:
    """``GET /v1/credits``."""

    def __init__(self, state: KilnCore):
        self.state = state

    async def get(self, tenant: Tenant, limit: int, before: int | None) -> CreditsResponse:
        """Balance and the newest ``limit`` entries (``before``: an entry id, to page back).
        Holds whose lease ran out (their request's process died) are released first, so
        the balance shown is what the tenant can spend; finding none costs one lock-free
        read."""
        ledger = self.state.ledger

        def read() -> CreditsResponse:
            ledger.sweep_expired(tenant_id=tenant.id)
            balance = ledger.balance(tenant.id)
            entries = ledger.entries(tenant.id, limit=limit, before=before)
            return CreditsResponse(
                balance=balance.available,
                held=balance.held,
                entries=[LedgerEntry.model_validate(e, from_attributes=True) for e in entries],
            )

        return await asyncio.to_thread(read)
