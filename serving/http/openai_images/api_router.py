"""HTTP routes of the OpenAI Images API: each converts its wire request once, calls the
core's use case (``generations.create_openai``, ``edits.create_openai``,
``edits.variation``) and answers OpenAI's ``ImagesResponse`` (base64 or signed URLs)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.errors import request_id_of
from serving.http.idempotency import run_idempotent
from serving.http.openai_images.forms import ImageEditFields, ImageFormFields, read_form
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
async def edit_image(request: Request, core: CoreDep, tenant: TenantDep) -> Response:
    """OpenAI's image edit (multipart: ``image`` or repeated ``image[]``, optional ``mask``
    whose alpha 0 marks the edit, ``prompt``, ``n``, ``size``, ``response_format``). Charged
    the catalog's price of its tool per image."""

    async def answer() -> ImagesResponse:
        fields, files = await read_form(request, ImageEditFields)
        order = fields.to_order(files)
        result = await core.edits.create_openai(tenant.id, order, request_id_of(request))
        return await images_response(
            core, result.images, fields.response_options(str(request.base_url))
        )

    return await run_idempotent(core, tenant, request, answer, exclude_none=True)


@router.post(
    "/v1/images/variations", response_model=ImagesResponse, response_model_exclude_none=True
)
async def create_variation(request: Request, core: CoreDep, tenant: TenantDep) -> Response:
    """OpenAI's image variation (multipart ``image``, ``n``, ``size``, ``response_format``):
    an img2img of the image with no prompt. Charged the catalog's price of its tool per image."""

    async def answer() -> ImagesResponse:
        fields, files = await read_form(request, ImageFormFields)
        order = fields.to_variation(files)
        result = await core.edits.variation(tenant.id, order, request_id_of(request))
        return await images_response(
            core, result.images, fields.response_options(str(request.base_url))
        )

    return await run_idempotent(core, tenant, request, answer, exclude_none=True)
