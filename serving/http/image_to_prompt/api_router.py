"""HTTP route of image-to-prompt."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.errors import request_id_of
from serving.http.idempotency import run_idempotent
from serving.http.image_to_prompt.protocol import ImageToPromptRequest, ImageToPromptResponse

router = APIRouter(tags=["image-to-prompt"])


@router.post("/v1/image-to-prompt", response_model=ImageToPromptResponse)
async def image_to_prompt(
    body: ImageToPromptRequest, request: Request, core: CoreDep, tenant: TenantDep
) -> Response:
    """Attributes of an image (``extract``) as prompt text in a ``method`` wording, with the
    scored terms of every vocabulary list it drew from. Charges the catalog's
    ``image_to_prompt`` price; an ``Idempotency-Key`` header makes retries safe."""
    order = body.to_order()

    async def answer() -> ImageToPromptResponse:
        result = await core.image_to_prompt.create(tenant.id, order, request_id_of(request))
        return ImageToPromptResponse.of(order, result)

    return await run_idempotent(core, tenant, request, answer)
