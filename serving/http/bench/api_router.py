"""``POST /v1/bench/noop``: the serving path with no work at its end, mounted only when
``KILN_BENCH=1`` (``benchmarks/serving_overhead.py`` starts its server so) and never in the
OpenAPI document.

It goes the way a generation goes, minus the work: the Serve proxy and its body guard,
the app's middleware and body guard, authentication (``TenantDep``), the JSON body
validated, one call to the model's replica that does nothing (``ModelClient.ping``) and
back. Its latency is the floor a generation's time outside the pipeline call is compared
with: what is left above it is Kiln's own work (ledger, marks, PNG, base64).
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from pydantic import BaseModel, Field

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep

router = APIRouter(tags=["bench"], include_in_schema=False)


class NoopRequest(BaseModel):
    model: str = Field(max_length=200, description="the model whose replica is called")


class NoopResponse(BaseModel):
    model: str
    timings: dict[str, float]


@router.post("/v1/bench/noop", response_model=NoopResponse)
async def noop(body: NoopRequest, core: CoreDep, tenant: TenantDep) -> NoopResponse:
    """One authenticated round trip to ``body.model``'s replica that does no work."""
    started = time.perf_counter()
    model = await core.models.ping(body.model)
    return NoopResponse(model=model, timings={"server_total": time.perf_counter() - started})
