"""HTTP route of the caller's credits."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query

from serving.core.credits.balances import statement
from serving.http.auth import TenantDep
from serving.http.credits.protocol import CreditsResponse, LedgerEntry
from serving.http.deps import CoreDep

router = APIRouter(tags=["credits"])


@router.get("/v1/credits", response_model=CreditsResponse)
async def get_credits(
    core: CoreDep,
    tenant: TenantDep,
    limit: int = Query(50, ge=1, le=1000),
    before: int | None = None,
) -> CreditsResponse:
    """The caller's balance and ledger entries, newest first."""
    read = await asyncio.to_thread(statement, core.ledger, tenant.id, limit, before)
    return CreditsResponse(
        balance=read.balance.available,
        held=read.balance.held,
        entries=[LedgerEntry.model_validate(e, from_attributes=True) for e in read.entries],
    )
