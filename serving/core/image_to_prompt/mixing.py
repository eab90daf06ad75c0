"""Mixing an image's extract into the prompt of a generation or an edit.

    prompt = await prompt_with_extract(extracts, tenant_id, order.prompt, order.image_to_prompt)

Call it before the request's params are built: it validates the field (400 on
``image_to_prompt.extract`` / ``.method``, 400/413 on the image, 404 for another tenant's
asset) before any credit is reserved.

Charging: the extract inside a generation or an edit is part of that request's price and
is not charged on its own. A generation charges only for delivered images (DESIGN.md §1),
so a separately charged extract would cost the caller something for a generation that
delivered nothing; and a CLIP pass is negligible beside a diffusion call. Only ``POST
/v1/image-to-prompt`` charges the catalog's ``image_to_prompt`` price.
"""

from __future__ import annotations

from pipelines.params import ParamError
from serving.core.image_to_prompt.orders import ExtractOrder
from serving.core.image_to_prompt.service import ImageToPrompt

FIELD = "image_to_prompt"


async def prompt_with_extract(
    image_to_prompt: ImageToPrompt, tenant_id: str, prompt: str | None, field: ExtractOrder | None
) -> str:
    """The prompt a generation or edit runs with.

    - no ``field``: ``prompt`` as given (a 400 on ``prompt`` when it is missing too);
    - ``field`` and no (or a blank) ``prompt``: the extract is the prompt;
    - both: ``prompt`` then the extract, without the extract's terms from any vocabulary
      list in which ``prompt`` already names a term (the user's words win).

    Charges nothing (see the module docstring).
    """
    if field is None:
        if prompt is None:
            raise ParamError("prompt", f"give a prompt, {FIELD}, or both")
        return prompt
    out = await image_to_prompt.extract(tenant_id, field, prompt=prompt, prefix=f"{FIELD}.")
    return out.prompt
