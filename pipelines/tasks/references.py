"""References: text-to-image conditioned on reference pictures, the way FLUX.2 [klein]
takes a generation's pins (``Flux2KleinPipeline``'s ``image`` list: each picture's
latents beside the generated ones, told apart by their position ids). A base model whose
family lists the task derives its pipeline with ``from_pipe`` (weights shared).

Decided where the issue is silent: at most ``MAX_REFERENCES`` (4) pictures a call, as
many as FLUX.1 Kontext's tiling holds (``serving/core/pins/composition.py``), so a set of
pins that fits one FLUX model fits the other; each picture is scaled down (aspect kept,
Lanczos) to at most the call's pixel area, so a reference never costs more transformer
tokens than the image made (the pipeline alone would take up to 1024x1024 each).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pipelines.families import Family, InstructInput
from pipelines.loaded_model import LoadedModel
from pipelines.params import ImageData, ParamError, TextToImage
from pipelines.task import Task
from pipelines.tasks.instruct import MAX_REFERENCE_ASPECT, reference_image
from pipelines.tasks.runner import TaskRunner

MAX_REFERENCES = 4


def check_references(sizes: Sequence[tuple[int, int]], param: str = "pins") -> None:
    """Refuse what the family's reference input cannot take (``ParamError`` naming
    ``param``): none, more than ``MAX_REFERENCES``, or a picture (width, height) longer
    than ``MAX_REFERENCE_ASPECT`` times its short side (diffusers 0.42.1 refuses it)."""
    if not sizes:
        raise ParamError(param, "no reference pictures")
    if len(sizes) > MAX_REFERENCES:
        raise ParamError(
            param,
            f"this model takes up to {MAX_REFERENCES} reference pictures a generation, and "
            f"these {param} have {len(sizes)}; name fewer pins, or pins made from fewer pictures",
        )
    for index, (width, height) in enumerate(sizes):
        aspect = max(width, height) / min(width, height)
        if aspect > MAX_REFERENCE_ASPECT:
            raise ParamError(
                param,
                f"reference picture {index} is {aspect:.1f}:1; this model takes pictures up "
                f"to {MAX_REFERENCE_ASPECT}:1",
            )


@dataclass(frozen=True)
class References(TextToImage):
    """The reference pictures of a text-to-image call (any sizes; scaled at the call)."""

    images: tuple[ImageData, ...]

    name: ClassVar[Task] = Task.REFERENCES

    def __post_init__(self) -> None:
        check_references([(image.width, image.height) for image in self.images])

    # The call's size is the model's list, not the pictures' (TextToImage's input_size).
    @property
    def batch_key(self) -> tuple:
        return tuple(image.digest for image in self.images)

    def recorded(self) -> dict[str, Any]:
        return {"references": len(self.images)}


def fitted(image: ImageData, area: int) -> Any:
    """``image`` as a reference picture of a call of ``area`` pixels: scaled down (aspect
    kept) to at most that area, and up to the pipeline's shortest side."""
    from PIL import Image

    scale = (area / (image.width * image.height)) ** 0.5
    if scale >= 1:
        return reference_image(image)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = Image.fromarray(image.pixels).resize(size, Image.Resampling.LANCZOS)
    return reference_image(ImageData(np.asarray(small)))


def call(
    tasks: Sequence[References], counts: Sequence[int], width: int, height: int, family: Family
) -> dict:
    """The call's arguments: one list of reference pictures for the whole call (requests
    share a call only with equal pictures: they are in the batch key) and the size."""
    if family.instruct_input != InstructInput.REFERENCE_IMAGES:
        raise KeyError(f"family {family.name} takes no reference pictures")
    images = [fitted(image, width * height) for image in tasks[0].images]
    return {"image": images, "height": height, "width": width}


def derive(model: LoadedModel, base: Any, variant: str | None) -> Any:
    """The family's reference-picture pipeline on the base model's modules."""
    return model.family.pipeline_class(Task.REFERENCES).from_pipe(base)


RUNNER = TaskRunner(Task.REFERENCES, call, derive)
