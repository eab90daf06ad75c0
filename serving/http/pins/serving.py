"""The pin routes' work: inputs decoded and checked first, embeddings computed by the
model replicas (the ingress imports no torch), then the file and the row.

Decisions: a pin costs nothing to create (it runs the vision encoder once per
IP-Adapter, a sliver of one generation; the generations that use it are charged as
usual). Its embeddings are computed at creation for every installed IP-Adapter, by the
replica of the first base model of that adapter's family; an adapter installed later
needs the pin made again (its pictures are not kept).
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from pipelines.params import ParamError
from serving.core.app import KilnCore
from serving.core.asset_rights import Use
from serving.core.image_inputs import ImageSource
from serving.core.pins.conditioning import embed_input, models_for
from serving.core.pins.record import MAX_PIN_IMAGES, PinRecord
from serving.core.pins.service import check_pin_fields
from serving.http.auth import Tenant
from serving.http.errors import KilnError
from serving.http.pins.protocol import DeletedPin, PinCreate, PinList, PinObject

logger = logging.getLogger(__name__)


class ServingPins:
    """``/v1/pins`` and ``/v1/pins/{id}``."""

    def __init__(self, state: KilnCore):
        self.state = state
        self.pins = state.pins

    async def create(self, tenant: Tenant, request: PinCreate) -> PinObject:
        name = check_pin_fields(request.kind, request.name)
        count = len(request.images) + len(request.asset_ids)
        if not 1 <= count <= MAX_PIN_IMAGES:
            raise ParamError(
                "images", f"a pin takes 1-{MAX_PIN_IMAGES} images (images + asset_ids), got {count}"
            )
        # A pin steers new images: its assets are references (asset_rights), so an
        # unlicensed style image is refused before anything is embedded or stored.
        given = [(text, None, f"images.{i}") for i, text in enumerate(request.images)]
        given += [(None, asset, f"asset_ids.{i}") for i, asset in enumerate(request.asset_ids)]
        inputs = [
            await self.state.inputs.load(
                tenant.id,
                ImageSource(image, asset_id),
                use=Use.REFERENCE,
                param=param,
                asset_param=param,
            )
            for image, asset_id, param in given
        ]
        pixels = [await asyncio.to_thread(embed_input, i.pixels) for i in inputs]
        embeddings = await self._embed(pixels)
        record = await asyncio.to_thread(
            self.pins.create, tenant.id, request.kind, name, embeddings
        )
        return self._object(record)

    async def _embed(self, pixels: list[np.ndarray]) -> dict[str, np.ndarray]:
        catalog = self.state.catalog
        embeddings: dict[str, np.ndarray] = {}
        for component in catalog.components_of("ip_adapter"):
            model = next(
                (m for m in catalog if m.kind == "base" and component.fits(m.family)), None
            )
            if model is None:
                logger.warning("IP-Adapter %s fits no installed model; skipped", component.id)
                continue
            embeddings[component.id] = await self.state.models.embed_images(
                model.id, component.id, pixels
            )
        if not embeddings:
            raise KilnError(
                400,
                "no IP-Adapter is installed: pins need one (see /v1/models)",
                param="kind",
                code="feature_unavailable",
            )
        return embeddings

    async def list(self, tenant: Tenant) -> PinList:
        records = await asyncio.to_thread(self.pins.list, tenant.id)
        return PinList(data=[self._object(r) for r in records])

    async def get(self, tenant: Tenant, pin_id: str) -> PinObject:
        return self._object(await asyncio.to_thread(self.pins.get, tenant.id, pin_id))

    async def delete(self, tenant: Tenant, pin_id: str) -> DeletedPin:
        await asyncio.to_thread(self.pins.delete, tenant.id, pin_id)
        return DeletedPin(id=pin_id)

    def _object(self, record: PinRecord) -> PinObject:
        return PinObject.of(record, models_for(self.state.catalog, record.components))
