"""``POST /v1/image-to-prompt``: validate, read the image, charge the catalog's
``image_to_prompt`` price once per call (only when an answer is delivered), rank on the
CLIP deployment.

Everything a request can get wrong (extract type, method, the image: not an image, over
``KILN_IMAGE_MAX_BYTES``/``KILN_IMAGE_MAX_PIXELS``, someone else's asset) is refused
before credits are reserved, so a bad request charges nothing.
"""

from __future__ import annotations

from pipelines.image_to_prompt.pipeline import (
    DEFAULT_TOP_K,
    ImageToPromptOutput,
    ImageToPromptParams,
)
from pipelines.image_to_prompt.vocabulary import check_extract, check_method
from serving.core.app import KilnCore
from serving.core.asset_rights import Use
from serving.core.credits.charging import reserve
from serving.core.image_inputs import load_image_input
from serving.http.auth import Tenant
from serving.http.image_to_prompt.protocol import (
    ImageToPromptField,
    ImageToPromptRequest,
    ImageToPromptResponse,
    ScoredTermObject,
)

OPERATION = "image_to_prompt"


def check_field(field: ImageToPromptField, prefix: str = "") -> None:
    """400 naming ``<prefix>extract`` / ``<prefix>method`` for an unknown one."""
    check_extract(field.extract, f"{prefix}extract")
    check_method(field.method, f"{prefix}method")


async def extract(
    state: KilnCore,
    tenant: Tenant,
    field: ImageToPromptField,
    *,
    prompt: str | None = None,
    top_k: int = DEFAULT_TOP_K,
    prefix: str = "",
) -> ImageToPromptOutput:
    """Validate ``field``, read its image (the caller's asset or base64) and rank it on the
    CLIP; ``prompt`` is the user's prompt to mix the extract into. Charges nothing."""
    check_field(field, prefix)
    params = ImageToPromptParams(field.extract, field.method, top_k, prompt)
    image = await load_image_input(
        state,
        tenant,
        image=field.image,
        asset_id=field.asset_id,
        use=Use.REFERENCE,
        param=f"{prefix}image",
        asset_param=f"{prefix}asset_id",
    )
    return await state.image_to_prompt.extract(image.pixels, params)


class ServingImageToPrompt:
    """``POST /v1/image-to-prompt`` against the CLIP client."""

    def __init__(self, state: KilnCore):
        self.state = state

    async def create(
        self, request: ImageToPromptRequest, tenant: Tenant, request_id: str | None = None
    ) -> ImageToPromptResponse:
        """The prompt and scored terms of ``request``'s image, charged at the catalog price."""
        state = self.state
        price = state.catalog.price_of(OPERATION)
        check_field(request)
        params = ImageToPromptParams(request.extract, request.method, request.top_k)
        image = await load_image_input(
            state, tenant, image=request.image, asset_id=request.asset_id, use=Use.REFERENCE
        )
        async with (
            state.limiter.slot(tenant.id),
            reserve(state.ledger, tenant.id, price, 1, request_id) as charge,
        ):
            out = await state.image_to_prompt.extract(image.pixels, params)
            await charge.capture(1)
        return ImageToPromptResponse(
            prompt=out.prompt,
            extract=request.extract,
            method=request.method,
            terms={
                name: [ScoredTermObject(term=t.text, score=t.score) for t in terms]
                for name, terms in out.extract.terms.items()
            },
            model=state.image_to_prompt.component_id or "",
            credits_charged=charge.charged,
            timings=out.timings,
        )
