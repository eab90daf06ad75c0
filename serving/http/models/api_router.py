"""HTTP routes of the model listing."""

from __future__ import annotations

from fastapi import APIRouter

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.models.protocol import ModelCard, ModelList
from serving.http.models.serving import ServingModels

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList)
async def list_models(state: CoreDep, tenant: TenantDep) -> ModelList:
    """The catalog as a prompt bar shows it: sizes, features, prices, defaults."""
    return ServingModels(state).list(tenant)


@router.get("/v1/models/{model_id}", response_model=ModelCard)
async def get_model(
    model_id: str,
    state: CoreDep,
    tenant: TenantDep,
) -> ModelCard:
    """One model of the catalog."""
    return ServingModels(state).get(model_id, tenant)
