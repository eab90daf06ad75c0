"""Pins and IP-Adapter references as a generation's ``AdapterConditioning``.

What the generation use cases call (in the ingress; embeddings of references come from
the model's replica, pins' from their files):

    adapter = combine(
        await conditioning.pins(tenant.id, spec, order.pins),
        await conditioning.reference(spec, pixels, scale),   # mode "ip_adapter"
    )
    GenerationParams.build(..., adapter=adapter)

Each pin applies at its kind's scale (``KILN_PIN_SCALE_CHARACTER``/``_PRODUCT``) and keeps
it beside other pins and a reference (``pipelines.ip_adapter``: one slot per source).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from pipelines.params import AdapterConditioning, AdapterImage, ParamError
from serving.core.model_client import ModelClient
from serving.core.pins.service import Pins
from serving.core.settings import Settings
from weights.catalog import Catalog, ComponentKind, ComponentSpec, ModelKind, ModelSpec

# Pins one generation may name (each one more attention per cross-attention layer).
MAX_PINS_PER_GENERATION = 4
# Images travel to the replica at most this short side: CLIP encoders see 224 px crops.
EMBED_SHORT_SIDE = 448


def check_pin_ids(pin_ids: Sequence[str]) -> None:
    """At most ``MAX_PINS_PER_GENERATION`` pins, none named twice (400 naming ``pins``)."""
    if len(pin_ids) > MAX_PINS_PER_GENERATION:
        raise ParamError("pins", f"at most {MAX_PINS_PER_GENERATION} pins per generation")
    if len(set(pin_ids)) != len(pin_ids):
        raise ParamError("pins", "a pin is named more than once")


def pin_scale(settings: Settings, kind: str) -> float:
    return {"character": settings.pin_scale_character, "product": settings.pin_scale_product}[kind]


def ip_adapter_for(catalog: Catalog, spec: ModelSpec, param: str) -> ComponentSpec:
    """The IP-Adapter installed for ``spec``'s family; a 400 naming the models that have
    one otherwise."""
    component = (
        catalog.first_component(ComponentKind.IP_ADAPTER, spec.family)
        if spec.kind == ModelKind.BASE
        else None
    )
    if component is None:
        having = [m.id for m in catalog if m.kind == ModelKind.BASE and _has_adapter(catalog, m)]
        raise ParamError(
            param,
            f"model {spec.id!r} has no IP-Adapter installed; models with one: "
            f"{', '.join(having) or 'none'}",
        )
    return component


def _has_adapter(catalog: Catalog, spec: ModelSpec) -> bool:
    return catalog.first_component(ComponentKind.IP_ADAPTER, spec.family) is not None


def models_for(catalog: Catalog, components: tuple[str, ...], pictures: bool = False) -> list[str]:
    """Base models a pin embedded for ``components`` applies to, and, where it keeps its
    ``pictures``, those that take pins' pictures (FLUX: ``Catalog.pins_model``)."""
    return [
        m.id
        for m in catalog
        if m.kind == ModelKind.BASE
        and (
            (pictures and catalog.pins_model(m) is not None)
            or (
                (c := catalog.first_component(ComponentKind.IP_ADAPTER, m.family)) is not None
                and c.id in components
            )
        )
    ]


def embed_input(pixels: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 shrunk to a short side of at most ``EMBED_SHORT_SIDE`` (what crosses
    to the replica; the encoder's own processor resizes further)."""
    from PIL import Image

    height, width = pixels.shape[:2]
    short = min(height, width)
    if short <= EMBED_SHORT_SIDE:
        return np.ascontiguousarray(pixels)
    ratio = EMBED_SHORT_SIDE / short
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


class Conditioning:
    """IP-Adapter conditioning of a generation: its pins and its reference image."""

    def __init__(
        self, catalog: Catalog, settings: Settings, models: ModelClient, pins: Pins
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.models = models
        self.pins_service = pins

    async def pins(
        self, tenant_id: str, spec: ModelSpec, pin_ids: Sequence[str]
    ) -> AdapterConditioning | None:
        """The conditioning of a generation's ``pins`` on ``spec`` (None for no pins).

        404 (``UnknownPin``) for a pin that is not the caller's; 400 for a model without
        an IP-Adapter, more than ``MAX_PINS_PER_GENERATION`` pins, a pin named twice, or a
        pin made before the model's IP-Adapter was installed.
        """
        if not pin_ids:
            return None
        check_pin_ids(pin_ids)
        pins = self.pins_service
        records = [await asyncio.to_thread(pins.get, tenant_id, pin_id) for pin_id in pin_ids]
        component = ip_adapter_for(self.catalog, spec, "pins")
        sources = []
        for record in records:
            if component.id not in record.components:
                raise ParamError(
                    "pins",
                    f"pin {record.id} was made before IP-Adapter {component.id!r} was "
                    "installed; create it again to use it with this model",
                )
            embeds = (await asyncio.to_thread(pins.embeddings, record))[component.id]
            scale = pin_scale(self.settings, record.kind)
            sources.append(AdapterImage(record.id, embeds, scale))
        return AdapterConditioning(component.id, tuple(sources))

    async def reference(
        self, spec: ModelSpec, image: np.ndarray, scale: float
    ) -> AdapterConditioning:
        """A reference image in mode ``ip_adapter``: embedded by ``spec``'s replica,
        applied at ``scale`` (0-2; 400 otherwise, or for a model without an IP-Adapter)."""
        component = ip_adapter_for(self.catalog, spec, "reference.mode")
        if not 0.0 <= scale <= 2.0:
            raise ParamError("reference.scale", f"scale must be 0-2, got {scale}")
        pixels = await asyncio.to_thread(embed_input, image)
        embeds = await self.models.embed_images(spec.id, component.id, [pixels])
        return AdapterConditioning(component.id, (AdapterImage("reference", embeds, scale),))


def combine(*conditionings: AdapterConditioning | None) -> AdapterConditioning | None:
    """One conditioning of every source of ``conditionings`` (Nones skipped), in order."""
    present = [c for c in conditionings if c is not None]
    if not present:
        return None
    components = {c.component for c in present}
    if len(components) != 1:
        raise ValueError(f"sources of different IP-Adapters: {sorted(components)}")
    return AdapterConditioning(present[0].component, tuple(s for c in present for s in c.sources))
