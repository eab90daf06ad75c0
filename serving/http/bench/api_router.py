"""``POST /v1/bench/noop``: the serving path with no work at its end, mounted only when
``KILN_BENCH=1`` (``benchmarks/serving_overhead.py`` starts its server so) and never in the
OpenAPI document.

It goes the way a generation goes, minus the work: the Serve proxy and its body guard,
the app's middleware and body guard, authentication (``TenantDep``), the JSON body
validated, one call to the model's replica that does nothing (``ModelClient.ping``) and
back. Its latency is the floor a generation's time outside the pipeline call is compared
with: what is left above it is Kiln's own work (ledger, marks, PNG, base64).

``hold_ms`` makes the model's side answer after that wait, as a pipeline call answers
after its work; ``timings.held`` is the wait as measured there, for the caller to take
off. A generation whose pipeline call took ``total`` seconds compares with the no-op held
``total``: the processes on the way sleep through the same wait and wake the same way,
so whatever a wait adds to a round trip is in the floor too.
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from pydantic import BaseModel, Field

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep

router = APIRouter(tags=["bench"], include_in_schema=False)


# The longest hold a no-op may ask: past any tiny-model pipeline call it stands for.
MAX_HOLD_MS = 10_000


class NoopRequest(BaseModel):
    model: str = Field(max_length=200, description="the model whose replica is called")
    hold_ms: float = Field(
        0.0, ge=0, le=MAX_HOLD_MS, description="how long the replica waits before answering"
    )


class NoopResponse(BaseModel):
    model: str
    timings: dict[str, float]


@router.post("/v1/bench/noop", response_model=NoopResponse)
async def noop(body: NoopRequest, core: CoreDep, tenant: TenantDep) -> NoopResponse:
    """One authenticated round trip to ``body.model``'s replica that does no work."""
    started = time.perf_counter()
    held = await core.models.ping(body.model, body.hold_ms / 1000)
    timings = {"server_total": time.perf_counter() - started, "held": held}
    return NoopResponse(model=body.model, timings=timings)
