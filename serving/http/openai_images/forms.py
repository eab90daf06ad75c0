"""The multipart forms of OpenAI's ``POST /v1/images/edits`` and
``POST /v1/images/variations``, converted once into the core's orders.

Wire rules are OpenAI's: files under ``image`` (or repeated ``image[]``) and ``mask``,
every other field a form string (``n=2`` arrives as ``"2"``), the mask's alpha 0 marks
what to edit and must have the image's size. What Kiln does with them is the core's
(``serving.core.edits.openai``); the uploads go to the core as they are (their size is
checked before a byte is read, their bytes decoded there).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from pipelines.params import MAX_IMAGES, ParamError
from serving.core.edits.openai import MAX_EDIT_IMAGES
from serving.core.edits.orders import OpenAIEditOrder, VariationOrder
from serving.http.errors import validation_error
from serving.http.generations.protocol import SamplingFields
from serving.http.openai_images.protocol import MAX_PARTIAL_IMAGES, streamed
from serving.http.openai_images.responses import ResponseOptions

FILE_FIELDS = ("image", "image[]", "mask")
Files = dict[str, list[UploadFile]]


class ImageFormFields(SamplingFields):
    """The text fields both routes share; numbers arrive as strings (lax parsing)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    n: int = Field(1, ge=1, le=MAX_IMAGES)
    size: str | None = "auto"
    response_format: Literal["b64_json", "url"] = "b64_json"
    output_format: Literal["png", "jpeg", "webp"] = "png"
    output_compression: int | None = Field(None, ge=0, le=100)
    strength: float | None = Field(None, gt=0, le=1)
    # Edits stream (``streaming.py``); variations refuse ``stream``.
    stream: bool | None = None
    partial_images: int | None = Field(None, ge=0, le=MAX_PARTIAL_IMAGES)
    # OpenAI fields without meaning here: accepted, ignored.
    user: str | None = None
    quality: str | None = None
    background: str | None = None
    input_fidelity: str | None = None
    moderation: str | None = None

    def response_options(self, base_url: str) -> ResponseOptions:
        """How the answer carries its images."""
        return ResponseOptions(
            self.response_format, self.output_format, self.output_compression, base_url
        )

    def to_variation(self, files: Files) -> VariationOrder:
        """A variation's form as the core takes it (400 unless exactly one image)."""
        if self.stream:
            raise ParamError("stream", "variations do not stream; leave stream out")
        uploads = files.get("image", [])
        if len(uploads) != 1 or files.get("image[]") or files.get("mask"):
            raise ParamError("image", "a variation takes exactly one image and no mask")
        return VariationOrder(
            image=uploads[0],
            model=self.model,
            n=self.n,
            size=self.size,
            strength=self.strength,
            sampling=self.sampling(),
        )


class ImageEditFields(ImageFormFields):
    prompt: str
    # Kiln's extension (extra_body): which edit tool; default replace with a mask,
    # recreate without. With erase, the prompt names what is removed; with instruct (a
    # base model whose family edits by instruction, FLUX.2 [klein]) it is the instruction.
    tool: Literal["replace", "recreate", "erase", "instruct"] | None = None

    def to_order(self, files: Files) -> OpenAIEditOrder:
        """An edit's form as the core takes it (400 for no image, too many, two masks)."""
        uploads = files.get("image", []) + files.get("image[]", [])
        if not uploads:
            raise ParamError("image", "give the image to edit as image (or image[])")
        if len(uploads) > MAX_EDIT_IMAGES:
            raise ParamError("image", f"at most {MAX_EDIT_IMAGES} images")
        masks = files.get("mask", [])
        if len(masks) > 1:
            raise ParamError("mask", "give one mask")
        return OpenAIEditOrder(
            images=tuple(uploads),
            prompt=self.prompt,
            mask=masks[0] if masks else None,
            model=self.model,
            n=self.n,
            size=self.size,
            strength=self.strength,
            tool=self.tool,
            sampling=streamed(self.sampling(), self.stream, self.partial_images),
        )


async def read_form(request: Request, fields: type[BaseModel]) -> tuple[Any, Files]:
    """The form's text fields validated as ``fields`` and its files by field name."""
    form = await request.form(max_files=MAX_EDIT_IMAGES + 1)
    texts: dict[str, str] = {}
    files: Files = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name not in FILE_FIELDS:
                raise ParamError(name, f"unexpected file field {name!r}")
            files.setdefault(name, []).append(value)
        elif name in FILE_FIELDS:
            raise ParamError(name, f"{name} must be a file upload")
        else:
            texts[name] = value
    try:
        return fields.model_validate(texts), files
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None
