"""Instruct: an instruction edit (InstructPix2Pix) on an ``instruct`` model, which loads
the pipeline itself (no base model derives it). ``POST /v1/edits`` with ``tool:
"instruct"`` and OpenAI edits on an instruct model run it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pipelines.params import ImageData, ParamError
from pipelines.task import Task
from pipelines.tasks.runner import FromImage, TaskRunner, check_image, per_image

# The image guidance (how closely to keep the input) when the request leaves it out:
# InstructPix2Pix's own default.
DEFAULT_IMAGE_GUIDANCE = 1.5


@dataclass(frozen=True)
class Instruct(FromImage):
    """The image to edit (at the call's size) and the image guidance; None: the
    default."""

    image: ImageData
    image_guidance: float | None = None

    name: ClassVar[Task] = Task.INSTRUCT
    prompt_required: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_image(self.image, self.name)
        if self.image_guidance is not None and self.image_guidance < 0:
            raise ParamError("image_guidance", "image_guidance must not be negative")

    @property
    def batch_key(self) -> tuple:
        return (self.image_guidance, self.image.digest)

    def recorded(self) -> dict[str, Any]:
        # An asset of an instruct call has always recorded strength 1 (nothing is cut).
        recorded: dict[str, Any] = {"strength": 1.0}
        if self.image_guidance is not None:
            recorded["image_guidance"] = self.image_guidance
        return recorded


def call(tasks: Sequence[Instruct], counts: Sequence[int], width: int, height: int) -> dict:
    """The call's arguments: one image per generated image and the image guidance (the
    size is the images')."""
    guidance = tasks[0].image_guidance
    return {
        "image": per_image([t.image for t in tasks], counts),
        "image_guidance_scale": DEFAULT_IMAGE_GUIDANCE if guidance is None else guidance,
    }


RUNNER = TaskRunner(Task.INSTRUCT, call)
