"""HTTP route of the caller's credits."""

from __future__ import annotations

from fastapi import APIRouter, Query

from serving.http.auth import TenantDep
from serving.http.credits.protocol import CreditsResponse
from serving.http.credits.serving import ServingCredits
from serving.http.deps import CoreDep

router = APIRouter(tags=["credits"])


@router.get("/v1/credits", response_model=CreditsResponse)
async def get_credits(
    state: CoreDep,
    tenant: TenantDep,
    limit: int = Query(50, ge=1, le=1000),
    before: int | None = None,
) -> CreditsResponse:
    """The caller's balance and ledger entries, newest first."""
    return await ServingCredits(state).get(tenant, limit, before)
