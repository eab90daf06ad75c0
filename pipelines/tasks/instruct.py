"""Instruct: an instruction edit. ``POST /v1/edits`` with ``tool: "instruct"`` and OpenAI
edits on an instruct model run it.

Where it runs is the family's (``Family.instruct_input``): InstructPix2Pix on an SD
``instruct`` checkpoint and FLUX.1 Kontext on a FLUX.1 one load their own pipeline (no base
model derives it: their denoisers differ); FLUX.2 [klein]'s base model derives it
(``Flux2KleinPipeline`` with the input as its reference image, weights shared)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pipelines.families import Family, InstructInput
from pipelines.loaded_model import LoadedModel
from pipelines.params import ImageData, ParamError
from pipelines.task import Task
from pipelines.tasks.runner import FromImage, TaskRunner, check_image, per_image, pil

# The image guidance (how closely to keep the input) when the request leaves it out:
# InstructPix2Pix's own default.
DEFAULT_IMAGE_GUIDANCE = 1.5
# The shortest side FLUX.2's image processor takes in a reference image (diffusers 0.42.1
# refuses less): a smaller input is scaled up to it, aspect kept.
MIN_REFERENCE_SIDE = 64
# The longest side over the shortest it takes (diffusers 0.42.1 refuses more): a 400.
MAX_REFERENCE_ASPECT = 8


@dataclass(frozen=True)
class Instruct(FromImage):
    """The image to edit (at the call's size) and the image guidance; None: the
    default (InstructPix2Pix's; the families that take none refuse a value)."""

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


def check_instruct(
    family: Family, image_guidance: float | None, size: tuple[int, int] | None = None
) -> None:
    """Refuse what the family's instruction edit cannot take (``ParamError`` naming the
    field), before anything is held: an ``image_guidance`` where it takes none (only
    InstructPix2Pix has one), and, for [klein]'s reference image, an image of ``size``
    (width, height) longer than ``MAX_REFERENCE_ASPECT`` times its short side."""
    if image_guidance is not None and family.instruct_input != InstructInput.IMAGE_GUIDANCE:
        raise ParamError(
            "image_guidance",
            f"image_guidance is InstructPix2Pix's; {family.name} instruction edits take none",
        )
    if size is not None and family.instruct_input == InstructInput.REFERENCE_IMAGES:
        aspect = max(size) / min(size)
        if aspect > MAX_REFERENCE_ASPECT:
            raise ParamError(
                "image",
                f"a {family.name} instruction edit takes images up to "
                f"{MAX_REFERENCE_ASPECT}:1; this one is {aspect:.1f}:1",
            )


def call(
    tasks: Sequence[Instruct], counts: Sequence[int], width: int, height: int, family: Family
) -> dict:
    """The call's arguments as the family's instruct pipeline takes them: InstructPix2Pix
    one image per generated image and the image guidance (the size is the images');
    Kontext one image per generated image, at the call's size (``max_area`` is the size's
    area, so Kontext keeps it, and its resize to its preferred sizes is off); [klein] the
    one input as the call's reference image (a batch shares its image: it is in the
    batch key; at least ``MIN_REFERENCE_SIDE`` a side) and the size."""
    guidance = tasks[0].image_guidance
    check_instruct(family, guidance, (width, height))
    images = [t.image for t in tasks]
    kind = family.instruct_input
    if kind == InstructInput.IMAGE_GUIDANCE:
        return {
            "image": per_image(images, counts),
            "image_guidance_scale": DEFAULT_IMAGE_GUIDANCE if guidance is None else guidance,
        }
    if kind == InstructInput.CONTEXT_IMAGE:
        return {
            "image": per_image(images, counts),
            "height": height,
            "width": width,
            "max_area": width * height,
            "_auto_resize": False,
        }
    if kind == InstructInput.REFERENCE_IMAGES:
        return {"image": [reference_image(images[0])], "height": height, "width": width}
    raise KeyError(f"no instruct call for {kind!r}; known: {', '.join(InstructInput)}")


def reference_image(image: ImageData) -> Any:
    """``image`` as a [klein] reference image: scaled up (Lanczos, aspect kept) where a side
    is under ``MIN_REFERENCE_SIDE``, which its image processor refuses."""
    from PIL import Image

    picture = pil(image)
    short = min(image.width, image.height)
    if short >= MIN_REFERENCE_SIDE:
        return picture
    scale = MIN_REFERENCE_SIDE / short
    size = (max(MIN_REFERENCE_SIDE, round(image.width * scale)),
            max(MIN_REFERENCE_SIDE, round(image.height * scale)))  # fmt: skip
    return picture.resize(size, Image.Resampling.LANCZOS)


def derive(model: LoadedModel, base: Any, variant: str | None) -> Any:
    """The family's instruct pipeline on a base model's modules (FLUX.2 [klein]: only a
    family whose ``pipelines`` list ``instruct`` derives it)."""
    return model.family.pipeline_class(Task.INSTRUCT).from_pipe(base)


RUNNER = TaskRunner(Task.INSTRUCT, call, derive)
