"""HTTP route of native generation."""

from __future__ import annotations

from fastapi import APIRouter

from serving.auth import TenantDep
from serving.generations.protocol import GenerationRequest, GenerationResponse
from serving.generations.serving import ServingGenerations
from serving.state import StateDep

router = APIRouter(tags=["generations"])


@router.post("/v1/generations", response_model=GenerationResponse)
async def create_generation(
    request: GenerationRequest,
    state: StateDep,
    tenant: TenantDep,
) -> GenerationResponse:
    """Text-to-image with Kiln's parameters; images come back as base64 PNG."""
    return await ServingGenerations(state).create(request, tenant)
