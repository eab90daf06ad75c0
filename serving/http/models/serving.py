"""The model listing: the catalog as a client may see it."""

from __future__ import annotations

from serving.core.app import KilnCore
from serving.http.auth import Tenant
from serving.http.models.protocol import ModelCard, ModelList
from weights.catalog import ModelSpec


class ServingModels:
    """Answers model listing and lookup from the catalog and server defaults."""

    def __init__(self, state: KilnCore):
        self.state = state

    def list(self, tenant: Tenant | None) -> ModelList:
        """Every model the caller may use (all of them, until styles are tenant-scoped)."""
        return ModelList(data=[self._card(spec) for spec in self.state.catalog])

    def get(self, model_id: str, tenant: Tenant | None) -> ModelCard:
        """One model; ``UnknownModelError`` (404) names the known ones."""
        return self._card(self.state.catalog.get(model_id))

    def _card(self, spec: ModelSpec) -> ModelCard:
        catalog = self.state.catalog
        defaults = self.state.settings.generation_defaults
        return ModelCard.from_spec(spec, defaults, catalog.features_of(spec))
