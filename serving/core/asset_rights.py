"""Whether an asset's pixels may enter another image, and what kind that image is.

One decision, ``admit(asset, use, param)``, for every place where one of the caller's
assets becomes the input of a new image. It is called by
``serving.core.image_inputs.ImageInputs.load``, which requires a ``use``, and that is the
only way serving code reads an asset's pixels for a new image
(``tests/serving/test_asset_rights.py`` checks that nothing else but exports calls
``Assets.source``). The rule (DESIGN.md §1):

- ``Use.DERIVE``: the asset itself is changed. No license is needed: the result takes
  the asset's style kind (a watermarked preview, a license-gated original), so the
  unmarked original never leaves the server this way. An edit of a *licensed* style
  image is still a style image with its own license, as today: DESIGN.md §1 says a
  derived image keeps its origin's rights, and it is a new image.
- ``Use.REFERENCE``: the asset's pixels guide a new image that is not the asset (its
  look, its subject, its words, its composition). An artist- or private-style image
  must be licensed first (403 ``license_required``): the new image is the generating
  model's kind (base, free and unwatermarked; agentic), so an unlicensed style image
  would come out of it laundered. Decision: with a *licensed* style image the new image
  is the generating model's kind (or the request's own style's), not the reference's:
  the studio bought that image's rights, and what it guides is a new image.
- Base and agentic assets are free for any use, and impose nothing.

Entry points, each with its use (the field that names the asset), each tested in
``tests/serving/test_asset_rights.py``:

- derive: ``POST /v1/edits`` (instruct, replace, recreate, erase; ``asset_id``);
- reference: ``POST /v1/generations`` img2img and IP-Adapter references
  (``reference.asset_id``); image-to-prompt inside generations and edits
  (``image_to_prompt.asset_id``); ``POST /v1/image-to-prompt`` (``asset_id``);
  ``POST /v1/pins`` (``asset_ids.<i>``); ``POST /v1/agentic/extract`` and
  ``/v1/agentic/generations`` (``references.<i>.asset_id``);
- batch lines (``kiln batch``, ``POST /v1/batches``): as their route.

Batch lines run the routes' own services (``serving.ray.batch.worker``), so they decide the
same; ``tests/batch/test_batch_rights.py`` runs one. OpenAI edits and variations take
uploads only, no asset. Exports of an asset (upscale, background removal, downloads,
``serving/exports``) are not inputs of a new request's image: they need the license
outright (``check_exportable``), a stricter rule of their own.
"""

from __future__ import annotations

from enum import Enum

from serving.core.assets.service import Asset, LicenseRequired


class Use(Enum):
    """How an asset's pixels enter another image."""

    DERIVE = "derive"  # the asset itself is changed: an edit
    REFERENCE = "reference"  # it guides a new image: reference, pin, extract, agentic


class ReferenceLicenseRequired(LicenseRequired):
    """An unlicensed style image used as a reference (403 ``license_required``), naming
    the request's field."""

    def __init__(self, asset: Asset, param: str) -> None:
        kind = asset.kind.replace("_", "-")
        message = (
            f"{param}: asset {asset.id!r} is an unlicensed {kind} image; buy its "
            f"license (POST /v1/assets/{asset.id}/license) to use it as a reference, "
            "pin, image-to-prompt or agentic source"
        )
        super().__init__(asset.id, message, param=param)
        self.kind = asset.kind


def admit(asset: Asset, use: Use, param: str) -> str | None:
    """Admit ``asset`` as an input used as ``use``: the asset kind it imposes on the
    result (its style kind for an edit of a style image), or None where the generating
    model's kind stands. ``ReferenceLicenseRequired`` (403) for an unlicensed style
    image used as a reference; ``param`` names the request's field."""
    if not asset.license_required:
        return None
    if use is Use.DERIVE:
        return asset.kind
    if asset.license_state == "required":
        raise ReferenceLicenseRequired(asset, param)
    return None
