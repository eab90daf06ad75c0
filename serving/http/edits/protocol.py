"""Wire shapes of the native ``POST /v1/edits``.

One request shape for the four tools, converted once into the core's ``EditOrder``
(``to_order``); which fields a tool needs is checked by the core
(``EditOrder.check_tool``: 400 naming the field) before anything runs or is charged.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.params import MAX_IMAGES
from serving.core.edits.orders import EditOrder
from serving.core.edits.service import Edit
from serving.core.image_inputs import ImageSource
from serving.http.generations.protocol import GeneratedImage, SamplingFields
from serving.http.image_to_prompt.protocol import ImageToPromptField

EditTool = Literal["instruct", "replace", "recreate", "erase"]


class EditRequest(SamplingFields):
    """An edit of ``image`` (base64 PNG/JPEG/WebP) or of one of the caller's assets."""

    model_config = ConfigDict(extra="forbid", strict=True)

    tool: EditTool
    model: str | None = Field(
        None,
        description="default: the source asset's model when it has the tool, else the "
        "first catalog model that has it",
    )
    image: str | None = Field(None, description="base64 image to edit (or asset_id)")
    asset_id: str | None = Field(None, description="one of your assets to edit (or image)")
    mask: str | None = Field(
        None, description="base64 mask, white = edit, the image's size (replace, erase, recreate)"
    )
    prompt: str | None = Field(None, description="replace: the new content; recreate: optional")
    instruction: str | None = Field(None, description="instruct: what to change, in words")
    objects: str | None = Field(
        None, description="erase: words naming what is removed (kept out of the fill)"
    )
    strength: float | None = Field(
        None, gt=0, le=1, description="recreate: how much may change (default 0.6); replace: 1"
    )
    image_guidance: float | None = Field(
        None, ge=0, description="instruct: how closely to keep the input image (default 1.5)"
    )
    n: int = Field(1, ge=1, le=MAX_IMAGES)
    image_to_prompt: ImageToPromptField | None = Field(
        None,
        description="replace/recreate: an image's extract mixed into the prompt (the "
        "prompt's own words win); the extract alone when there is no prompt",
    )

    def to_order(self) -> EditOrder:
        """The request as the core takes it."""
        return EditOrder(
            tool=self.tool,
            source=ImageSource(self.image, self.asset_id),
            model=self.model,
            mask=self.mask,
            prompt=self.prompt,
            instruction=self.instruction,
            objects=self.objects,
            strength=self.strength,
            image_guidance=self.image_guidance,
            n=self.n,
            sampling=self.sampling(),
            image_to_prompt=self.image_to_prompt.to_extract() if self.image_to_prompt else None,
        )


class EditResponse(BaseModel):
    """The edited images (at the input's size), what they cost, and the timings."""

    id: str
    object: str = "edit"
    created: int
    model: str
    tool: str
    data: list[GeneratedImage]
    credits_charged: int
    timings: dict[str, float]

    @classmethod
    def of(cls, result: Edit, tool: str) -> EditResponse:
        return cls(
            id=result.id,
            created=int(time.time()),
            model=result.model,
            tool=tool,
            data=[GeneratedImage.of(d) for d in result.images],
            credits_charged=result.credits_charged,
            timings=result.timings,
        )
