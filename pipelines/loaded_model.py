"""A loaded base model as the code that works on its shared modules sees it.

``pipelines.engine.Engine`` is one: it runs calls and derives sibling pipelines. The
IP-Adapter code (``pipelines.ip_adapter``) loads adapters onto the same modules and is
called by the engine, so it takes a ``LoadedModel``, not an ``Engine``: neither module
imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipelines.families import family_of
from weights.catalog import ComponentKind, ComponentSpec, ModelSpec


class LoadedModel:
    """A model's loaded pipeline, its catalog entry, and the components that fit it."""

    def __init__(self, spec: ModelSpec, pipe: Any, components: Sequence[ComponentSpec] = ()):
        self.spec = spec
        # What the model's family is: its pipelines, prompt encoding, schedulers, ...
        self.family = family_of(spec.family)
        self.pipe = pipe
        self.device = pipe.device
        # Catalog components that fit this model's family (ControlNets, IP-Adapters), by id.
        self.components = {c.id: c for c in components if c.fits(spec.family)}
        # The IP-Adapter component loaded on the shared UNet, if any (pipelines.ip_adapter).
        self.ip_adapter_loaded: str | None = None

    def components_of(self, kind: ComponentKind) -> list[ComponentSpec]:
        """The fitting components of one kind (``controlnet``, ``ip_adapter``)."""
        return [c for c in self.components.values() if c.kind == kind]
