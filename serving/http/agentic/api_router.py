"""HTTP routes of agentic generation."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.http.agentic.protocol import (
    AgenticExtractRequest,
    AgenticExtractResponse,
    AgenticGenerationRequest,
    AgenticGenerationResponse,
)
from serving.http.agentic.serving import ServingAgentic
from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.errors import request_id_of
from serving.http.idempotency import run_idempotent

router = APIRouter(tags=["agentic"])


@router.post("/v1/agentic/extract", response_model=AgenticExtractResponse)
async def extract(
    body: AgenticExtractRequest, state: CoreDep, tenant: TenantDep
) -> AgenticExtractResponse:
    """A recipe (palette, grading, lighting, composition) from 1-10 references. Free."""
    return await ServingAgentic(state).extract(body, tenant)


@router.post("/v1/agentic/generations", response_model=AgenticGenerationResponse)
async def create_generation(
    body: AgenticGenerationRequest, request: Request, state: CoreDep, tenant: TenantDep
) -> Response:
    """Images carrying a recipe's components, with their scores and the agent's trace.

    A flat ``catalog.price_of("agentic")`` credits a generation, whatever ``n``; an
    ``Idempotency-Key`` header makes retries safe.
    """
    service = ServingAgentic(state)
    return await run_idempotent(
        state, tenant, request, lambda: service.create(body, tenant, request_id_of(request))
    )
