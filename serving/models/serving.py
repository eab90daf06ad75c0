"""The model listing: the catalog as a client may see it."""

from __future__ import annotations

from serving.auth import Tenant
from serving.models.protocol import ModelCard, ModelList
from serving.state import AppState


class ServingModels:
    """Answers model listing and lookup from the catalog and server defaults."""

    def __init__(self, state: AppState):
        self.state = state

    def list(self, tenant: Tenant | None) -> ModelList:
        """Every model the caller may use (all of them, until styles are tenant-scoped)."""
        defaults = self.state.settings.generation_defaults
        return ModelList(data=[ModelCard.from_spec(s, defaults) for s in self.state.catalog])

    def get(self, model_id: str, tenant: Tenant | None) -> ModelCard:
        """One model; ``UnknownModelError`` (404) names the known ones."""
        spec = self.state.catalog.get(model_id)
        return ModelCard.from_spec(spec, self.state.settings.generation_defaults)
