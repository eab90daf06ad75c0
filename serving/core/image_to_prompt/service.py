"""Image-to-prompt, the use case: ``POST /v1/image-to-prompt`` (paid, per extract) and
the free extract that generations and edits mix into their prompt
(``serving.core.image_to_prompt.mixing``).

Everything a request can get wrong (extract type, method, the image: not an image, over
``KILN_IMAGE_MAX_BYTES``/``KILN_IMAGE_MAX_PIXELS``, someone else's asset, an unlicensed
style image) is refused before credits are reserved, so a bad request charges nothing.

The paid call shares the paid path's skeleton (``PaidImages.text``: the tenant's slot,
the reservation of the catalog's ``image_to_prompt`` price, the CLIP call, the capture
of one extract once it answered); it makes words, not pixels, so nothing is finished or
stored and the result is the text and its scored terms.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.image_to_prompt.pipeline import (
    DEFAULT_TOP_K,
    ImageToPromptOutput,
    ImageToPromptParams,
)
from pipelines.image_to_prompt.vocabulary import check_extract, check_method
from serving.core.asset_rights import Use
from serving.core.image_inputs import ImageInputs
from serving.core.image_to_prompt.client import ImageToPromptClient
from serving.core.image_to_prompt.orders import ExtractOrder, ImageToPromptOrder
from serving.core.paid_images import PaidImages, Price
from weights.catalog import Catalog

OPERATION = "image_to_prompt"


@dataclass(frozen=True)
class ImageToPromptResult:
    """A paid extract: the prompt text and scored terms, the CLIP component that ranked
    them, what it cost."""

    output: ImageToPromptOutput
    component_id: str
    credits_charged: int


def check_extract_order(order: ExtractOrder, prefix: str = "") -> None:
    """400 naming ``<prefix>extract`` / ``<prefix>method`` for an unknown one."""
    check_extract(order.extract, f"{prefix}extract")
    check_method(order.method, f"{prefix}method")


@dataclass(kw_only=True, eq=False)
class ImageToPrompt:
    """Image-to-prompt on the CLIP client port, built once by ``build_core``."""

    catalog: Catalog
    clip: ImageToPromptClient
    inputs: ImageInputs
    paid: PaidImages

    async def extract(
        self,
        tenant_id: str,
        order: ExtractOrder,
        *,
        prompt: str | None = None,
        top_k: int = DEFAULT_TOP_K,
        prefix: str = "",
    ) -> ImageToPromptOutput:
        """Validate ``order``, read its image (the caller's asset or base64) and rank it
        on the CLIP; ``prompt`` is the user's prompt to mix the extract into; errors name
        fields under ``prefix``. Charges nothing."""
        check_extract_order(order, prefix)
        params = ImageToPromptParams(order.extract, order.method, top_k, prompt)
        image = await self.inputs.load(
            tenant_id,
            order.source,
            use=Use.REFERENCE,
            param=f"{prefix}image",
            asset_param=f"{prefix}asset_id",
        )
        return await self.clip.extract(image.pixels, params)

    async def create(
        self, tenant_id: str, order: ImageToPromptOrder, request_id: str | None = None
    ) -> ImageToPromptResult:
        """The prompt and scored terms of ``order``'s image, charged at the catalog's
        price (see the module docstring)."""
        price = self.catalog.price_of(OPERATION)
        extract = order.extract
        check_extract_order(extract)
        params = ImageToPromptParams(extract.extract, extract.method, order.top_k)
        image = await self.inputs.load(tenant_id, extract.source, use=Use.REFERENCE)
        paid = await self.paid.text(
            tenant_id,
            Price(price, 1, per_image=False),
            request_id,
            lambda: self.clip.extract(image.pixels, params),
        )
        return ImageToPromptResult(paid.made, self.clip.component_id or "", paid.credits_charged)
