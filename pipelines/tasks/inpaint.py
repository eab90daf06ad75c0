"""Inpainting: regenerate inside a mask. Replace, recreate with a mask and erase run it
(``pipelines.edit_tools`` prepares the mask and composites the result). A base model
derives its pipeline with ``from_pipe`` (diffusers' inpaint pipelines also run on an
ordinary denoiser, blending the unmasked latents back each step: SD's 4-channel UNet,
``FluxInpaintPipeline``, ``Flux2KleinInpaintPipeline``); a dedicated ``inpaint`` model
loads its own (SD's 9-channel UNet, FLUX.1 Fill's 384-channel transformer). Every one of
them takes the image, the mask, the strength and the size alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pipelines.families import Family
from pipelines.loaded_model import LoadedModel
from pipelines.params import ImageData, ParamError
from pipelines.task import Task
from pipelines.tasks.runner import FromImage, TaskRunner, check_image, check_strength, per_image


@dataclass(frozen=True)
class Inpaint(FromImage):
    """The image, the mask (HxW, 255 = edit), both at the call's size, and the strength."""

    image: ImageData
    mask: ImageData
    strength: float = 1.0

    name: ClassVar[Task] = Task.INPAINT
    prompt_required: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_image(self.image, self.name)
        if self.mask is None:
            raise ParamError("mask", "inpainting needs a mask")
        check_strength(self.strength)

    @property
    def denoise_strength(self) -> float:
        return self.strength

    @property
    def batch_key(self) -> tuple:
        return (self.strength, self.image.digest, self.mask.digest)

    def check_size(self, width: int, height: int) -> None:
        super().check_size(width, height)
        mask = self.mask
        if mask.pixels.ndim != 2 or (mask.width, mask.height) != (width, height):
            raise ValueError("the mask must be HxW at the call's size")

    def recorded(self) -> dict[str, Any]:
        return {"strength": self.strength}


def call(
    tasks: Sequence[Inpaint], counts: Sequence[int], width: int, height: int, family: Family
) -> dict:
    """The call's arguments: an image and a mask per generated image, the shared strength
    and the size."""
    return {
        "image": per_image([t.image for t in tasks], counts),
        "mask_image": per_image([t.mask for t in tasks], counts),
        "strength": tasks[0].strength,
        "height": height,
        "width": width,
    }


def derive(model: LoadedModel, base: Any, variant: str | None) -> Any:
    """The family's inpaint pipeline on the base model's modules."""
    return model.family.pipeline_class(Task.INPAINT).from_pipe(base)


RUNNER = TaskRunner(Task.INPAINT, call, derive)
