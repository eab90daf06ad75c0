"""HTTP route of the OpenAI Images API."""

from __future__ import annotations

from fastapi import APIRouter, Request

from serving.auth import TenantDep
from serving.openai_images.protocol import ImageGenerationRequest, ImagesResponse
from serving.openai_images.serving import ServingOpenAIImages
from serving.state import StateDep

router = APIRouter(tags=["openai"])


@router.post(
    "/v1/images/generations", response_model=ImagesResponse, response_model_exclude_none=True
)
async def create_image(
    body: ImageGenerationRequest,
    request: Request,
    state: StateDep,
    tenant: TenantDep,
) -> ImagesResponse:
    """OpenAI's image generation, on Kiln's models and sizes."""
    return await ServingOpenAIImages(state).create(body, tenant, str(request.base_url))
