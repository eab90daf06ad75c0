"""HTTP routes of the OpenAI Images API: each converts its wire request once, calls the
core's use case (``generations.create_openai``, ``edits.create_openai``,
``edits.variation``) and answers OpenAI's ``ImagesResponse`` (base64 or signed URLs);
with ``stream: true``, generations and edits answer OpenAI's image stream (``streaming.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.errors import request_id_of
from serving.http.idempotency import run_idempotent
from serving.http.openai_images.forms import ImageEditFields, ImageFormFields, read_form
from serving.http.openai_images.protocol import ImageGenerationRequest, ImagesResponse
from serving.http.openai_images.responses import ResponseOptions, images_response
from serving.http.openai_images.streaming import StreamShape, check_stream, stream_images

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
    body.use_priority()
    options = ResponseOptions(
        body.response_format or "b64_json",
        body.output_format or "png",
        body.output_compression,
        str(request.base_url),
    )
    if body.stream:
        check_stream(request, options.response_format)
        shape = StreamShape("image_generation", body.partial_images or 0, options)
        return await stream_images(
            core,
            lambda: core.generations.create_openai(tenant.id, order, request_id_of(request)),
            shape,
        )

    async def answer() -> ImagesResponse:
        result = await core.generations.create_openai(tenant.id, order, request_id_of(request))
        return await images_response(core, result.images, options)

    return await run_idempotent(
        core, tenant, request, answer, exclude_none=True, kind="openai_image"
    )


@router.post("/v1/images/edits", response_model=ImagesResponse, response_model_exclude_none=True)
async def edit_image(request: Request, core: CoreDep, tenant: TenantDep) -> Response:
    """OpenAI's image edit (multipart: ``image`` or repeated ``image[]``, optional ``mask``
    whose alpha 0 marks the edit, ``prompt``, ``n``, ``size``, ``response_format``). Charged
    the catalog's price of its tool per image. ``stream: true`` answers OpenAI's stream."""
    await request.body()  # kept: the form is read here and again by the idempotent answer
    fields, files = await read_form(request, ImageEditFields)
    fields.use_priority()
    if fields.stream:
        options = fields.response_options(str(request.base_url))
        check_stream(request, options.response_format)
        order = fields.to_order(files)
        shape = StreamShape("image_edit", fields.partial_images or 0, options)
        return await stream_images(
            core, lambda: core.edits.create_openai(tenant.id, order, request_id_of(request)), shape
        )

    async def answer() -> ImagesResponse:
        fields, files = await read_form(request, ImageEditFields)
        order = fields.to_order(files)
        result = await core.edits.create_openai(tenant.id, order, request_id_of(request))
        return await images_response(
            core, result.images, fields.response_options(str(request.base_url))
        )

    return await run_idempotent(
        core, tenant, request, answer, exclude_none=True, kind="openai_image"
    )


@router.post(
    "/v1/images/variations", response_model=ImagesResponse, response_model_exclude_none=True
)
async def create_variation(request: Request, core: CoreDep, tenant: TenantDep) -> Response:
    """OpenAI's image variation (multipart ``image``, ``n``, ``size``, ``response_format``):
    an img2img of the image with no prompt. Charged the catalog's price of its tool per image."""

    async def answer() -> ImagesResponse:
        fields, files = await read_form(request, ImageFormFields)
        fields.use_priority()
        order = fields.to_variation(files)
        result = await core.edits.variation(tenant.id, order, request_id_of(request))
        return await images_response(
            core, result.images, fields.response_options(str(request.base_url))
        )

    return await run_idempotent(
        core, tenant, request, answer, exclude_none=True, kind="openai_image"
    )
