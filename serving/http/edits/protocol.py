"""Wire shapes of the native ``POST /v1/edits``.

One request shape for the four tools; which fields a tool needs is checked once, in
``EditRequest.check_tool`` (400 naming the field), before anything runs or is charged.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.params import MAX_IMAGES, ParamError
from serving.http.generations.protocol import GeneratedImage, SamplingFields
from serving.http.image_to_prompt.protocol import ImageToPromptField

EditTool = Literal["instruct", "replace", "recreate", "erase"]
# Tools that need a mask, and the one for which a mask is optional (whole image without).
MASK_REQUIRED = ("replace", "erase")


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

    def check_tool(self) -> None:
        """The fields each tool needs and refuses; ``ParamError`` names the field."""
        tool = self.tool
        if tool == "instruct":
            if not (self.instruction or "").strip():
                raise ParamError("instruction", "instruct needs an instruction")
            if self.mask is not None:
                raise ParamError("mask", "instruct edits the whole image: it takes no mask")
            if self.prompt is not None:
                raise ParamError("prompt", "instruct takes an instruction, not a prompt")
        else:
            if self.instruction is not None:
                raise ParamError("instruction", f"{tool} takes no instruction")
            if self.image_guidance is not None:
                raise ParamError("image_guidance", "image_guidance is for instruct only")
        if tool in MASK_REQUIRED and self.mask is None:
            raise ParamError("mask", f"{tool} needs a mask (white = edit)")
        if tool == "replace" and not (self.prompt or "").strip() and self.image_to_prompt is None:
            raise ParamError("prompt", "replace needs a prompt: what goes in the masked region")
        if tool in ("instruct", "erase") and self.image_to_prompt is not None:
            raise ParamError("image_to_prompt", f"{tool} takes no image_to_prompt")
        if tool == "erase" and self.prompt is not None:
            raise ParamError("prompt", "erase takes no prompt: it fills with the background")
        if tool != "erase" and self.objects is not None:
            raise ParamError("objects", "objects is for erase only")


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
