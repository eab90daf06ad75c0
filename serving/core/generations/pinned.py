"""A generation's pins on a model that takes their pictures (issue 21, "Pins on
multi-reference models"), resolved before anything is held:

    pinned = await pinned_call(pinning, catalog, tenant_id, spec, order)
    # pinned.spec: the model the call runs on; pinned.call: its task (and size) fields

Where the pictures go is the catalog's ``Catalog.pins_model``:

- FLUX.2 [klein] takes them itself, as more reference images of its own pipeline
  (``pipelines.tasks.References``): at most 4 pictures, each at most the image's area.
- FLUX.1 takes them on the Kontext checkpoint its base entry names as ``pins_model``
  (``pins_model = "tiny-flux1-kontext"`` on ``tiny-flux1``): Kontext conditions on one
  image, so the pictures are tiled into one reference image at the generation's size
  (``serving.core.pins.composition``: up to 4, else a 400 naming ``pins``) and the call is
  Kontext's instruction call (``pipelines.tasks.Instruct``) with the prompt as its text.

Decided where the issue is silent, as a studio would expect: the artist picks the base
model in the prompt bar and adds a pin; the base model's card lists ``pins`` where its
entry names a Kontext sibling (installing Kontext beside [dev] and naming it is what
turns pins on), the request names the base model, and Kiln routes the call. The
generation is charged at the base model's price per image at the resolution asked (what
the card shows), and its assets record the model that made them (the Kontext checkpoint,
with its terms), as the edit tools record FLUX.1 Fill. Pins cannot be offered on the
Kontext model itself: a Kontext checkpoint is an instruct model, with no text-to-image
card of its own. A style with pins routed to another checkpoint is a 400 naming
``style`` (a style is made for its base model), and a reference image together with
pins on a picture-taking model a 400 naming ``reference`` (one image input per call).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.params import ImageData, ParamError, resolve_size
from pipelines.tasks import Instruct, References
from serving.core.generations.orders import GenerationOrder
from serving.core.pins.composition import tile_pictures
from serving.core.pins.conditioning import check_pin_ids
from serving.core.pins.pinning import Pinning
from weights.catalog import Catalog, ModelSpec


@dataclass(frozen=True)
class PinnedCall:
    """The model a generation with pins runs on and the call fields its pins resolve to."""

    spec: ModelSpec
    call: dict[str, Any] = field(default_factory=dict)


def check_pinned(catalog: Catalog, spec: ModelSpec, order: GenerationOrder) -> None:
    """Refuse what cannot go with pins on a model that takes their pictures (the module
    docstring), before anything is read: 400 naming ``reference`` or ``style``; and pins
    on a model of a family that takes pictures but has no model for them (a FLUX.1 entry
    that names no ``pins_model``), a 400 naming ``pins`` and the models that take them.
    Pins through an IP-Adapter are checked where it is looked up (``Conditioning.pins``)."""
    target = catalog.pins_model(spec)
    if not order.pins:
        return
    if target is None:
        if not spec.family.has_feature("reference_ip_adapter"):
            having = ", ".join(catalog.models_with("pins")) or "none installed"
            raise ParamError(
                "pins", f"model {spec.id!r} has no pins; models that have them: {having}"
            )
        return
    if order.reference is not None:
        raise ParamError(
            "reference",
            f"model {spec.id!r} takes pins as its image input: give a reference image or "
            "pins, not both",
        )
    if order.style is not None and target.id != spec.id:
        raise ParamError(
            "style",
            f"pins on model {spec.id!r} run on {target.id!r}, which a style made for "
            f"{spec.id!r} does not fit: generate with the style or the pins",
        )


async def pinned_call(
    pinning: Pinning, catalog: Catalog, tenant_id: str, spec: ModelSpec, order: GenerationOrder
) -> PinnedCall | None:
    """The call of ``order``'s pins on ``spec`` where it takes their pictures; None where
    it has no pins, or takes them through an IP-Adapter (``Conditioning.pins``). 404 for
    a pin that is not the caller's, 400 for one made before Kiln kept pictures
    (``PinWithoutPictures``) or more pictures than the model takes, 403 for a picture
    whose asset needs a license."""
    target = catalog.pins_model(spec)
    if not order.pins or target is None:
        return None
    check_pinned(catalog, spec, order)
    check_pin_ids(order.pins)
    pictures: list[np.ndarray] = []
    for pin_id in order.pins:
        record = await asyncio.to_thread(pinning.pins.get, tenant_id, pin_id)
        pictures += await pinning.pictures(tenant_id, record)
    if target.id == spec.id:
        return PinnedCall(spec, {"task": References(tuple(ImageData(p) for p in pictures))})
    # One reference image at the generation's size, asked of the base model's card.
    tier, width, height = resolve_size(spec, order.resolution, order.aspect_ratio, order.size)
    tiled = await asyncio.to_thread(tile_pictures, pictures, width, height, "pins")
    call = {
        "task": Instruct(ImageData(tiled)),
        "resolution": tier,
        "aspect_ratio": None,
        "size": None,
        "width": width,
        "height": height,
    }
    return PinnedCall(target, call)
