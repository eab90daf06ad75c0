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
needs the pin made again. Where no IP-Adapter is installed but a model takes pins'
pictures (FLUX), a pin is its pictures alone (no embeddings); with neither, making one is
a 400 (``NoPinAdapter``).

A pin also keeps its pictures (``Pins.picture_files``), which multi-reference models take
as images (``Pinning.pictures``). Their rights are checked again at every use through
``serving.core.asset_rights.admit``, as when the pin was made: a picture from an asset
the caller still has is admitted as a reference again; one whose asset the caller has
since deleted stands on the copy the pin kept (it was admitted when the pin was made,
and deleting a gallery image should not break the pins made from it). A pin made before
Kiln kept pictures has embeddings only: it works on IP-Adapter models, and a use that
needs its pictures is a 400 (``PinWithoutPictures``) saying to make it again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from pipelines.params import ParamError
from serving.core.asset_rights import Use, admit
from serving.core.assets.service import UnknownAsset
from serving.core.errors import KilnError
from serving.core.image_inputs import ImageInputs, ImageSource
from serving.core.model_client import ModelClient
from serving.core.pins.conditioning import embed_input
from serving.core.pins.record import MAX_PIN_IMAGES, PinRecord
from serving.core.pins.service import Pins, check_pin_fields
from weights.catalog import Catalog, ComponentKind, ModelKind

logger = logging.getLogger(__name__)


class PinWithoutPictures(KilnError):
    """A pin made before Kiln kept pin pictures, used where the pictures are needed (a
    multi-reference model): 400 naming ``param``, saying to make the pin again."""

    def __init__(self, pin_id: str, param: str) -> None:
        super().__init__(
            400,
            f"pin {pin_id!r} was made before Kiln kept pin pictures, and this model takes "
            "the pictures themselves: create the pin again (POST /v1/pins) to use it here",
            param=param,
            code="pin_without_pictures",
        )


class NoPinAdapter(KilnError):
    """No IP-Adapter is installed and no model takes pins' pictures, so no model could
    use a pin (400)."""

    def __init__(self) -> None:
        super().__init__(
            400,
            "no model takes pins: they need an IP-Adapter, or a model that takes their "
            "pictures (see /v1/models)",
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
        kept = [(i.pixels, None if i.source is None else i.source.id) for i in inputs]
        return await asyncio.to_thread(
            self.pins.create, tenant_id, order.kind, name, embeddings, kept
        )

    async def pictures(
        self, tenant_id: str, record: PinRecord, param: str = "pins"
    ) -> list[np.ndarray]:
        """The pin's pictures as uint8 HxWx3 pixels, for a model that takes images, each
        from an asset admitted again as a reference (403 for an image that needs a
        license it lacks); ``PinWithoutPictures`` for a pin that kept none."""
        if not record.pictures:
            raise PinWithoutPictures(record.id, param)
        for picture in record.pictures:
            if picture.asset_id is None:
                continue
            try:
                asset = await asyncio.to_thread(self.inputs.assets.get, tenant_id, picture.asset_id)
            except UnknownAsset:
                continue  # deleted since: the copy the pin kept stands (module docstring)
            admit(asset, Use.REFERENCE, param)
        files = await asyncio.to_thread(self.pins.picture_files, record)
        return [await asyncio.to_thread(_decode_png, data) for data in files]

    async def _embed(self, pixels: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The pictures' embeddings by IP-Adapter component (none where only models that
        take pictures are installed); ``NoPinAdapter`` where no model takes pins."""
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
        if not embeddings and not self.catalog.models_with("pins"):
            raise NoPinAdapter()
        return embeddings


def _decode_png(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))
