"""HTTP routes of the model listing: the catalog as a client may see it."""

from __future__ import annotations

from fastapi import APIRouter

from serving.core.app import KilnCore
from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.models.protocol import ModelCard, ModelList
from weights.catalog import ModelSpec

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList)
async def list_models(core: CoreDep, tenant: TenantDep) -> ModelList:
    """The catalog as a prompt bar shows it: sizes, features, prices, defaults."""
    # Every model: all of them are the caller's to use (styles are listed on their own).
    return ModelList(data=[_card(core, spec) for spec in core.catalog])


@router.get("/v1/models/{model_id}", response_model=ModelCard)
async def get_model(
    model_id: str,
    core: CoreDep,
    tenant: TenantDep,
) -> ModelCard:
    """One model of the catalog."""
    return _card(core, core.catalog.get(model_id))  # 404 naming the known ones


def _card(core: KilnCore, spec: ModelSpec) -> ModelCard:
    """The model's card, with the defaults a request would get and the features that
    what is installed allows."""
    defaults = core.settings.generation_defaults
    return ModelCard.from_spec(spec, defaults, core.catalog.features_of(spec))
