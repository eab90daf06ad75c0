"""What an edit asks, as the core takes it: the native edit (``EditOrder``), OpenAI's edit
and variation (``OpenAIEditOrder``, ``VariationOrder``, whose images are uploads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pipelines.params import ParamError
from serving.core.generations.params import Sampling
from serving.core.image_inputs import ImageSource
from serving.core.image_to_prompt.orders import ExtractOrder

EDIT_TOOLS = ("instruct", "replace", "recreate", "erase")
# Tools that need a mask; recreate takes one optionally (the whole image without).
MASK_REQUIRED = ("replace", "erase")


@dataclass(frozen=True)
class EditOrder:
    """A native edit of ``source`` (base64 or one of the caller's assets) with ``tool``;
    ``mask`` is base64 (white = edit), the image's size."""

    tool: str
    source: ImageSource
    model: str | None = None
    mask: str | None = None
    prompt: str | None = None
    instruction: str | None = None
    objects: str | None = None
    strength: float | None = None
    image_guidance: float | None = None
    n: int = 1
    sampling: Sampling = field(default_factory=Sampling)
    image_to_prompt: ExtractOrder | None = None

    def check_tool(self) -> None:
        """The fields each tool needs and refuses, checked before anything runs or is
        charged; ``ParamError`` names the field."""
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


class ImageUpload(Protocol):
    """An uploaded image file (a multipart upload): its size where known, its bytes."""

    size: int | None

    async def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class OpenAIEditOrder:
    """OpenAI's edit: the first of ``images`` is edited, the rest steer it (IP-Adapter);
    ``mask``'s alpha 0 marks the edit. ``tool`` is Kiln's extension (replace, recreate,
    erase; by the mask when None)."""

    images: tuple[ImageUpload, ...]
    prompt: str
    mask: ImageUpload | None = None
    model: str | None = None
    n: int = 1
    size: str | None = "auto"
    strength: float | None = None
    tool: str | None = None
    sampling: Sampling = field(default_factory=Sampling)


@dataclass(frozen=True)
class VariationOrder:
    """OpenAI's variation of ``image``: an img2img with no prompt."""

    image: ImageUpload
    model: str | None = None
    n: int = 1
    size: str | None = "auto"
    strength: float | None = None
    sampling: Sampling = field(default_factory=Sampling)
