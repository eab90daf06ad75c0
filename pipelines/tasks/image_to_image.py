"""Image-to-image (img2img): from an init image at a denoising strength. Reference images
in ``img2img`` mode, recreate without a mask, OpenAI variations and the agentic structure
step run it; a base model derives its pipeline with ``from_pipe`` (weights shared)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pipelines.loaded_model import LoadedModel
from pipelines.params import ImageData
from pipelines.task import Task
from pipelines.tasks.runner import FromImage, TaskRunner, check_image, check_strength, per_image


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
    def batch_key(self) -> tuple:
        return (self.strength, self.image.digest)

    def recorded(self) -> dict[str, Any]:
        return {"strength": self.strength}


def call(tasks: Sequence[ImageToImage], counts: Sequence[int], width: int, height: int) -> dict:
    """The call's arguments: one init image per generated image, the shared strength (the
    size is the images')."""
    return {"image": per_image([t.image for t in tasks], counts), "strength": tasks[0].strength}


def derive(model: LoadedModel, base: Any, variant: str | None) -> Any:
    """The family's img2img pipeline on the base model's modules."""
    return model.family.pipeline_class(Task.IMAGE_TO_IMAGE).from_pipe(base)


RUNNER = TaskRunner(Task.IMAGE_TO_IMAGE, call, derive)
