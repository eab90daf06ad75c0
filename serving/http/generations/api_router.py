"""HTTP route of native generation."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.errors import request_id_of
from serving.http.generations.protocol import GenerationRequest, GenerationResponse
from serving.http.generations.serving import ServingGenerations
from serving.http.idempotency import run_idempotent

router = APIRouter(tags=["generations"])


@router.post("/v1/generations", response_model=GenerationResponse)
async def create_generation(
    body: GenerationRequest,
    request: Request,
    state: CoreDep,
    tenant: TenantDep,
) -> Response:
    """Text-to-image with Kiln's parameters; images come back as base64 PNG.

    Charges the model's price per delivered image (``credits_charged``); an
    ``Idempotency-Key`` header makes retries safe.
    """
    service = ServingGenerations(state)
    return await run_idempotent(
        state, tenant, request, lambda: service.create(body, tenant, request_id_of(request))
    )
