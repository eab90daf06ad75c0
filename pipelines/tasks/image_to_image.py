"""Image-to-image (img2img): from an init image at a denoising strength. Reference images
in ``img2img`` mode, recreate without a mask, OpenAI variations and the agentic structure
step run it; a base model derives its pipeline with ``from_pipe`` (weights shared). A
family without an img2img pipeline (FLUX.2) runs its inpaint pipeline under a mask that
covers the whole image (``Family.img2img_by_mask``): nothing is kept, so the noised input
at the strength is all there is, as in img2img."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pipelines.families import Family
from pipelines.loaded_model import LoadedModel
from pipelines.params import ImageData
from pipelines.task import Task
from pipelines.tasks.runner import (
    FromImage,
    TaskRunner,
    check_image,
    check_strength,
    per_image,
    whole_image_masks,
)


@dataclass(frozen=True)
class ImageToImage(FromImage):
    """The init image (at the call's size) and the strength (1 ignores the image)."""

    image: ImageData
    strength: float = 1.0

    name: ClassVar[Task] = Task.IMAGE_TO_IMAGE
    # A variation runs without words.
    prompt_required: ClassVar[bool] = False

    def __post_init__(self) -> None:
        check_image(self.image, self.name)
        check_strength(self.strength)

    @property
    def denoise_strength(self) -> float:
        return self.strength

    @property
    def batch_key(self) -> tuple:
        return (self.strength, self.image.digest)

    def recorded(self) -> dict[str, Any]:
        return {"strength": self.strength}


def call(
    tasks: Sequence[ImageToImage], counts: Sequence[int], width: int, height: int, family: Family
) -> dict:
    """The call's arguments: one init image per generated image, the shared strength (the
    size is the images'); where the family runs img2img as inpainting, a mask covering
    each whole image and the size."""
    images = [t.image for t in tasks]
    kwargs = {"image": per_image(images, counts), "strength": tasks[0].strength}
    if family.img2img_by_mask:
        kwargs |= {
            "mask_image": whole_image_masks(images, counts),
            "height": height,
            "width": width,
        }
    return kwargs


def derive(model: LoadedModel, base: Any, variant: str | None) -> Any:
    """The family's img2img pipeline on the base model's modules."""
    return model.family.pipeline_class(Task.IMAGE_TO_IMAGE).from_pipe(base)


RUNNER = TaskRunner(Task.IMAGE_TO_IMAGE, call, derive)
