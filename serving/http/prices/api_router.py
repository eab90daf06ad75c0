"""HTTP route of the operation prices: what a license or an upscale costs before buying."""

from __future__ import annotations

from fastapi import APIRouter

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.prices.protocol import PriceList

router = APIRouter(tags=["models"])


@router.get("/v1/prices", response_model=PriceList)
async def list_prices(core: CoreDep, tenant: TenantDep) -> PriceList:
    """Credits of each priced operation (the catalog's ``[prices]``, with
    ``KILN_HOME/models.toml``'s overrides), so a client shows a cost before it is paid."""
    return PriceList(operations=dict(sorted(core.catalog.prices.items())))
