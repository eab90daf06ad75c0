"""HTTP route of native generation: the wire request converted once, the core's
``generations`` use case, the answer encoded as base64 PNG."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.errors import request_id_of
from serving.http.generations.protocol import GenerationRequest, GenerationResponse
from serving.http.idempotency import run_idempotent

router = APIRouter(tags=["generations"])


@router.post("/v1/generations", response_model=GenerationResponse)
async def create_generation(
    body: GenerationRequest,
    request: Request,
    core: CoreDep,
    tenant: TenantDep,
) -> Response:
    """Text-to-image with Kiln's parameters; images come back as base64 PNG.

    Charges the model's price per delivered image (``credits_charged``); an
    ``Idempotency-Key`` header makes retries safe. ``Prefer: respond-async`` answers 202
    with a ``generation`` job whose result is this body.
    """
    order = body.to_order()
    body.use_priority()

    async def answer() -> GenerationResponse:
        result = await core.generations.create(tenant.id, order, request_id_of(request))
        return GenerationResponse.of(result)

    return await run_idempotent(core, tenant, request, answer, kind="generation")
