"""What the engine looks up per task (``pipelines.tasks.RUNNERS``): how a batch's inputs
become the pipeline call's arguments, and how the task's pipeline is derived from a loaded
base model. Each task module (``image_to_image.py``, ``inpaint.py``, ...) defines one, and
the tasks that start from an image share ``FromImage`` and the input checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.families import Family
from pipelines.loaded_model import LoadedModel
from pipelines.params import ImageData, ParamError
from pipelines.task import Task
from weights.catalog import ComponentKind

# (the batch's task inputs, images per request, width, height, the model's family) -> the
# call's arguments (the family says how its pipelines take an image: ``InstructInput``,
# ``img2img_by_mask``).
CallBuilder = Callable[[Sequence[Any], Sequence[int], int, int, Family], dict[str, Any]]
# (the loaded model, its text-to-image pipeline, the variant) -> the task's pipeline.
Deriver = Callable[[LoadedModel, Any, str | None], Any]


@dataclass(frozen=True)
class TaskRunner:
    """One task as the engine runs it.

    ``derive`` is None for a task no base model derives (instruct: its own checkpoint);
    ``needs``: a component kind the model must have for the task (ControlNet)."""

    task: Task
    call: CallBuilder
    derive: Deriver | None = None
    needs: ComponentKind | None = None


def check_image(image: ImageData | None, task: Task) -> None:
    """An image task's input is given (``ParamError`` naming ``image`` otherwise)."""
    if image is None:
        raise ParamError("image", f"task {task} needs an image")


def check_strength(strength: float) -> None:
    """A denoising strength is in (0, 1]: 1 ignores the input, near 0 keeps it."""
    if not 0.0 < strength <= 1.0:
        raise ParamError("strength", f"strength must be in (0, 1], got {strength}")


def check_call_size(image: ImageData, width: int, height: int) -> None:
    """An input image has the call's size (the caller resized it; a mismatch is a bug)."""
    if (image.width, image.height) != (width, height):
        raise ValueError(f"init image is {image.width}x{image.height}, the call {width}x{height}")


class FromImage:
    """What the tasks that start from an image share: ``image`` (at the call's size) sets
    the call's size when the request names none, and there is one pipeline of the task."""

    image: ImageData

    @property
    def input_size(self) -> tuple[int, int]:
        return self.image.width, self.image.height

    @property
    def variant(self) -> None:
        return None

    @property
    def denoise_strength(self) -> float | None:
        return None  # the whole schedule, unless the task has a strength

    def check_size(self, width: int, height: int) -> None:
        check_call_size(self.image, width, height)


def per_image(images: Sequence[ImageData], counts: Sequence[int]) -> list[Any]:
    """One PIL image per generated image: each request's input converted once and
    repeated for its ``n`` images."""
    return [image for data, n in zip(images, counts, strict=True) for image in [pil(data)] * n]


def pil(image: ImageData) -> Any:
    """An ``ImageData`` as the PIL image diffusers' image processors take (RGB, or L for
    a mask)."""
    from PIL import Image

    return Image.fromarray(image.pixels)


def whole_image_masks(images: Sequence[ImageData], counts: Sequence[int]) -> list[Any]:
    """One all-white mask (everything regenerated) per generated image: img2img on a
    family that runs it as inpainting (``Family.img2img_by_mask``)."""
    from PIL import Image

    masks = [Image.new("L", (data.width, data.height), 255) for data in images]
    return [mask for mask, n in zip(masks, counts, strict=True) for _ in range(n)]
