"""Replace, Recreate and Erase (and the sizing every image task shares).

An edit runs in three steps, the middle one on the model's replica:

1. ``prepare_edit``: the input image is resized to a *work size* the model can run
   (each side a multiple of the family's grid, the long side at most the model's largest
   tier) and the user's mask (white = edit) is dilated and feathered into a blend weight;
   the pipeline gets the binary mask of everything the weight touches.
2. the engine's ``inpaint`` (or ``image_to_image`` for a whole-image recreate) call.
3. ``composite``: the result is resized back to the input's size and blended in by the
   weight. Where the weight is 0 — everything outside the feathered mask — the output
   keeps the input's pixels exactly.

Erase takes no prompt from the user: it is an inpaint steered toward background by a
fixed fill prompt, with the words of the removed objects (where the caller names them)
in the negative prompt, and a mask dilated more than for replace so that edges and
contact shadows go too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.params import ImageData
from pipelines.task import Task
from pipelines.tasks import ImageToImage, Inpaint, Instruct

# Erase's fixed prompts: describe what should be there (more of the surroundings) and
# push away what usually sits in a mask (an object, a person, text).
ERASE_PROMPT = (
    "empty background, seamless continuation of the surrounding scene, same lighting and "
    "texture, nothing in the way"
)
ERASE_NEGATIVE = "object, person, animal, text, logo, watermark, subject, foreground item"

# Dilation and feather radii as fractions of the image's long side (with floors in px).
EDIT_DILATE = (0.01, 2)
EDIT_FEATHER = (0.01, 2)
ERASE_DILATE = (0.03, 6)
ERASE_FEATHER = (0.015, 3)


@dataclass(frozen=True)
class PreparedEdit:
    """An edit's pipeline inputs at the work size, and the blend weight at the input size."""

    image: np.ndarray  # uint8 (h, w, 3) at the work size
    mask: np.ndarray | None  # uint8 (h, w), 255 = regenerate, at the work size
    weight: np.ndarray | None  # float32 (H, W) in [0, 1] at the input size; None: whole image
    size: tuple[int, int]  # the input's (width, height)
    work_size: tuple[int, int]

    def task_inputs(
        self, task: Task, strength: float, image_guidance: float | None = None
    ) -> Instruct | ImageToImage | Inpaint:
        """The inputs of the edit's pipeline ``task`` at the work size (an inpaint without
        a mask is a ``ParamError`` naming ``mask``)."""
        image = ImageData(self.image)
        if task == Task.INSTRUCT:
            return Instruct(image, image_guidance)
        if task == Task.IMAGE_TO_IMAGE:
            return ImageToImage(image, strength)
        mask = ImageData(self.mask) if self.mask is not None else None
        return Inpaint(image, mask, strength)  # type: ignore[arg-type]  # None: a ParamError


def work_size(width: int, height: int, multiple: int, max_side: int) -> tuple[int, int]:
    """The size a model runs an image of ``width`` x ``height`` at: scaled down so the long
    side is at most ``max_side``, each side rounded to ``multiple`` (at least one)."""
    scale = min(1.0, max_side / max(width, height))

    def snap(x: float) -> int:
        return max(multiple, int(round(x * scale / multiple)) * multiple)

    return snap(width), snap(height)


def resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 pixels (HxW or HxWx3) resized to ``size`` = (width, height) with Lanczos."""
    from PIL import Image

    if (pixels.shape[1], pixels.shape[0]) == size:
        return pixels
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def cover(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``pixels`` to fill ``size`` and crop the centre (a reference image that must
    match a generation's size without being distorted)."""
    from PIL import Image, ImageOps

    if (pixels.shape[1], pixels.shape[0]) == size:
        return pixels
    fitted = ImageOps.fit(Image.fromarray(pixels), size, Image.Resampling.LANCZOS)
    return np.asarray(fitted)


def _radius(long_side: int, rule: tuple[float, int]) -> int:
    fraction, floor = rule
    return max(floor, int(round(long_side * fraction)))


def blend_weight(mask: np.ndarray, dilate_px: int, feather_px: int) -> np.ndarray:
    """A binary mask (HxW, >= 128 = edit) dilated by ``dilate_px`` and feathered by
    ``feather_px`` into a float weight: 1 on the mask, falling to exactly 0 beyond the
    feather, so pixels there are the input's own."""
    import cv2

    binary = (mask >= 128).astype(np.uint8)
    if dilate_px > 0:
        kernel = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1)
        )
        binary = cv2.dilate(binary, kernel)
    weight = binary.astype(np.float32)
    if feather_px > 0:
        size = 2 * feather_px + 1
        # A finite box-like Gaussian: exactly zero beyond ``feather_px`` of the dilated mask.
        weight = cv2.GaussianBlur(weight, (size, size), sigmaX=feather_px / 2.0)
        weight[weight < 1e-3] = 0.0
    weight[mask >= 128] = 1.0
    return np.clip(weight, 0.0, 1.0)


def prepare_edit(
    image: np.ndarray,
    mask: np.ndarray | None,
    *,
    multiple: int,
    max_side: int,
    erase: bool = False,
) -> PreparedEdit:
    """Work-size inputs of an edit of ``image`` (uint8 HxWx3) inside ``mask`` (uint8 HxW,
    white = edit, same size; None: the whole image)."""
    height, width = image.shape[:2]
    size = (width, height)
    target = work_size(width, height, multiple, max_side)
    work_image = resize(image, target)
    if mask is None:
        return PreparedEdit(work_image, None, None, size, target)
    if mask.shape != (height, width):
        raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]}, the image {width}x{height}")
    long_side = max(width, height)
    dilate = _radius(long_side, ERASE_DILATE if erase else EDIT_DILATE)
    feather = _radius(long_side, ERASE_FEATHER if erase else EDIT_FEATHER)
    weight = blend_weight(mask, dilate, feather)
    # The pipeline regenerates everything the weight touches, at the work size.
    touched = np.where(weight > 0, 255, 0).astype(np.uint8)
    work_mask = np.where(resize(touched, target) > 0, 255, 0).astype(np.uint8)
    return PreparedEdit(work_image, work_mask, weight, size, target)


def composite(original: np.ndarray, generated: np.ndarray, edit: PreparedEdit) -> np.ndarray:
    """The edit's result at the input's size: ``generated`` (work size) resized back and
    blended into ``original`` by the weight; outside the weight the original's pixels,
    exactly."""
    result = resize(generated, edit.size)
    if edit.weight is None:
        return result
    weight = edit.weight[..., None]
    blended = original.astype(np.float32) * (1.0 - weight) + result.astype(np.float32) * weight
    out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    outside = edit.weight == 0
    out[outside] = original[outside]
    return out


def mask_from_alpha(alpha: np.ndarray) -> np.ndarray:
    """OpenAI's mask convention (alpha 0 = edit) as Kiln's (white = edit)."""
    return np.where(alpha == 0, 255, 0).astype(np.uint8)


def erase_prompts(objects: str | None, negative: str | None = None) -> tuple[str, str]:
    """Erase's prompt and negative prompt: the caller's ``negative`` words, then the
    removed objects' words, then the fixed fill negative."""
    words = [part for part in (negative, objects) if part] + [ERASE_NEGATIVE]
    return ERASE_PROMPT, ", ".join(words)
