"""HTTP route of image-to-prompt."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.errors import request_id_of
from serving.http.idempotency import run_idempotent
from serving.http.image_to_prompt.protocol import ImageToPromptRequest, ImageToPromptResponse
from serving.http.image_to_prompt.serving import ServingImageToPrompt

router = APIRouter(tags=["image-to-prompt"])


@router.post("/v1/image-to-prompt", response_model=ImageToPromptResponse)
async def image_to_prompt(
    body: ImageToPromptRequest, request: Request, state: CoreDep, tenant: TenantDep
) -> Response:
    """Attributes of an image (``extract``) as prompt text in a ``method`` wording, with the
    scored terms of every vocabulary list it drew from. Charges the catalog's
    ``image_to_prompt`` price; an ``Idempotency-Key`` header makes retries safe."""
    service = ServingImageToPrompt(state)
    return await run_idempotent(
        state, tenant, request, lambda: service.create(body, tenant, request_id_of(request))
    )
