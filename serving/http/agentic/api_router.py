"""HTTP routes of agentic generation: the wire request converted once, the core's
``agentic`` use case, the answer encoded (the recipe's JSON, base64 PNG)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.http.agentic.protocol import (
    AgenticExtractRequest,
    AgenticExtractResponse,
    AgenticGenerationRequest,
    AgenticGenerationResponse,
)
from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.errors import request_id_of
from serving.http.idempotency import run_idempotent

router = APIRouter(tags=["agentic"])


@router.post("/v1/agentic/extract", response_model=AgenticExtractResponse)
async def extract(
    body: AgenticExtractRequest, core: CoreDep, tenant: TenantDep
) -> AgenticExtractResponse:
    """A recipe (palette, grading, lighting, composition) from 1-10 references. Free."""
    return AgenticExtractResponse.of(await core.agentic.extract(tenant.id, body.to_order()))


@router.post("/v1/agentic/generations", response_model=AgenticGenerationResponse)
async def create_generation(
    body: AgenticGenerationRequest, request: Request, core: CoreDep, tenant: TenantDep
) -> Response:
    """Images carrying a recipe's components, with their scores and the agent's trace.

    A flat ``catalog.price_of("agentic")`` credits a generation, whatever ``n``; an
    ``Idempotency-Key`` header makes retries safe. ``Prefer: respond-async`` answers 202
    with an ``agentic`` job whose result is this body.
    """
    order = body.to_order()
    body.use_priority()

    async def answer() -> AgenticGenerationResponse:
        result = await core.agentic.create(tenant.id, order, request_id_of(request))
        return AgenticGenerationResponse.of(result)

    return await run_idempotent(core, tenant, request, answer, kind="agentic")
