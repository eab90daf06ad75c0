"""Making a pin, the use case: ``POST /v1/pins``, built once by ``build_core``.

    record = await core.pinning.create(tenant_id, PinOrder("character", "Mira", images=(b64,)))

The order is checked and its pictures decoded first (400, 413 for an image over the
limits, 404 for an asset that is not the caller's, 403 for an unlicensed style image), so
a refused pin embeds and stores nothing; then the model replicas compute the embeddings
(the ingress imports no torch), then the file and the row (``Pins.create``).

Decisions: a pin costs nothing to create (it runs the vision encoder once per
IP-Adapter, a sliver of one generation; the generations that use it are charged as
usual). Its embeddings are computed at creation for every installed IP-Adapter, by the
replica of the first base model of that adapter's family; an adapter installed later
needs the pin made again (its pictures are not kept).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from pipelines.params import ParamError
from serving.core.asset_rights import Use
from serving.core.errors import KilnError
from serving.core.image_inputs import ImageInputs, ImageSource
from serving.core.model_client import ModelClient
from serving.core.pins.conditioning import embed_input
from serving.core.pins.record import MAX_PIN_IMAGES, PinRecord
from serving.core.pins.service import Pins, check_pin_fields
from weights.catalog import Catalog, ComponentKind, ModelKind

logger = logging.getLogger(__name__)


class NoPinAdapter(KilnError):
    """No IP-Adapter is installed, so there is nothing to embed a pin for (400)."""

    def __init__(self) -> None:
        super().__init__(
            400,
            "no IP-Adapter is installed: pins need one (see /v1/models)",
            param="kind",
            code="feature_unavailable",
        )


@dataclass(frozen=True)
class PinOrder:
    """A pin to make: its ``kind`` (character, product), ``name``, and 1-4 pictures in
    all, as base64 ``images`` (a ``data:`` URL works) and/or the caller's ``asset_ids``."""

    kind: str
    name: str
    images: tuple[str, ...] = ()
    asset_ids: tuple[str, ...] = ()


@dataclass(kw_only=True, eq=False)
class Pinning:
    """Makes the caller's pins: pictures in, embeddings per installed IP-Adapter out."""

    catalog: Catalog
    models: ModelClient
    inputs: ImageInputs
    pins: Pins

    async def create(self, tenant_id: str, order: PinOrder) -> PinRecord:
        """The stored pin of ``tenant_id``."""
        name = check_pin_fields(order.kind, order.name)
        count = len(order.images) + len(order.asset_ids)
        if not 1 <= count <= MAX_PIN_IMAGES:
            raise ParamError(
                "images", f"a pin takes 1-{MAX_PIN_IMAGES} images (images + asset_ids), got {count}"
            )
        # A pin steers new images: its assets are references (asset_rights), so an
        # unlicensed style image is refused before anything is embedded or stored.
        given = [(text, None, f"images.{i}") for i, text in enumerate(order.images)]
        given += [(None, asset, f"asset_ids.{i}") for i, asset in enumerate(order.asset_ids)]
        inputs = [
            await self.inputs.load(
                tenant_id,
                ImageSource(image, asset_id),
                use=Use.REFERENCE,
                param=param,
                asset_param=param,
            )
            for image, asset_id, param in given
        ]
        pixels = [await asyncio.to_thread(embed_input, i.pixels) for i in inputs]
        embeddings = await self._embed(pixels)
        return await asyncio.to_thread(self.pins.create, tenant_id, order.kind, name, embeddings)

    async def _embed(self, pixels: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The pictures' embeddings by IP-Adapter component; ``NoPinAdapter`` if none."""
        embeddings: dict[str, np.ndarray] = {}
        for component in self.catalog.components_of(ComponentKind.IP_ADAPTER):
            model = next(
                (m for m in self.catalog if m.kind == ModelKind.BASE and component.fits(m.family)),
                None,
            )
            if model is None:
                logger.warning("IP-Adapter %s fits no installed model; skipped", component.id)
                continue
            embeddings[component.id] = await self.models.embed_images(
                model.id, component.id, pixels
            )
        if not embeddings:
            raise NoPinAdapter()
        return embeddings
