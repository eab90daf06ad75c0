"""HTTP route of the OpenAI Images API."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.errors import request_id_of
from serving.http.idempotency import run_idempotent
from serving.http.openai_images.edits import ServingOpenAIEdits
from serving.http.openai_images.protocol import ImageGenerationRequest, ImagesResponse
from serving.http.openai_images.responses import ResponseOptions, images_response

router = APIRouter(tags=["openai"])


@router.post(
    "/v1/images/generations", response_model=ImagesResponse, response_model_exclude_none=True
)
async def create_image(
    body: ImageGenerationRequest,
    request: Request,
    core: CoreDep,
    tenant: TenantDep,
) -> Response:
    """OpenAI's image generation, on Kiln's models and sizes (charged per image; an
    ``Idempotency-Key`` header makes retries safe)."""
    order = body.to_order()
    options = ResponseOptions(
        body.response_format or "b64_json",
        body.output_format or "png",
        body.output_compression,
        str(request.base_url),
    )

    async def answer() -> ImagesResponse:
        result = await core.generations.create_openai(tenant.id, order, request_id_of(request))
        return await images_response(core, result.images, options)

    return await run_idempotent(core, tenant, request, answer, exclude_none=True)


@router.post("/v1/images/edits", response_model=ImagesResponse, response_model_exclude_none=True)
async def edit_image(request: Request, state: CoreDep, tenant: TenantDep) -> Response:
    """OpenAI's image edit (multipart: ``image`` or repeated ``image[]``, optional ``mask``
    whose alpha 0 marks the edit, ``prompt``, ``n``, ``size``, ``response_format``). Charged
    the catalog's price of its tool per image."""
    service = ServingOpenAIEdits(state)
    return await run_idempotent(
        state,
        tenant,
        request,
        lambda: service.edit(request, tenant, request_id_of(request)),
        exclude_none=True,
    )


@router.post(
    "/v1/images/variations", response_model=ImagesResponse, response_model_exclude_none=True
)
async def create_variation(request: Request, state: CoreDep, tenant: TenantDep) -> Response:
    """OpenAI's image variation (multipart ``image``, ``n``, ``size``, ``response_format``):
    an img2img of the image with no prompt. Charged the catalog's price of its tool per image."""
    service = ServingOpenAIEdits(state)
    return await run_idempotent(
        state,
        tenant,
        request,
        lambda: service.variation(request, tenant, request_id_of(request)),
        exclude_none=True,
    )
