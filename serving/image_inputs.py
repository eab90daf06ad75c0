"""Images that requests bring: uploads, base64 in JSON, or one of the caller's assets.

Every route that takes an image (edits, references, pins, image-to-prompt, agentic,
OpenAI edits and variations) reads it through here, so the limits hold everywhere
(DESIGN.md §5): the byte size is checked before anything is decoded (413), the pixel
count is read from the header and checked before decompressing (413, also for a small
file that declares a huge size), and bytes that are not an image, or a truncated one,
are a 400 naming the field.

An ``asset_id`` input is the caller's own asset (another tenant's answers 404, as an
unknown one). Its original pixels are used without a license check: what is derived
inherits the asset's kind (``InputImage.source``), so a style image stays watermarked and
license-gated (DESIGN.md §1).
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipelines.params import ParamError
from serving.assets.service import Asset
from serving.settings import Settings

if TYPE_CHECKING:
    from serving.auth import Tenant
    from serving.state import AppState


@dataclass(frozen=True)
class InputImage:
    """A decoded input image and, for an ``asset_id`` input, the asset it came from."""

    image: Image.Image  # loaded; RGB, or RGBA where the caller kept alpha
    source: Asset | None = None

    @cached_property
    def pixels(self) -> np.ndarray:
        """uint8 HxWx3 RGB (alpha dropped), converted once."""
        return np.asarray(self.image.convert("RGB"))

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


class UploadTooLarge(ValueError):
    """An upload over a byte or pixel limit, refused before decoding (HTTP 413)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ImageLimits:
    """Byte and pixel limits of an uploaded image, and the settings that set them."""

    max_bytes: int
    max_pixels: int
    bytes_setting: str = "KILN_IMAGE_MAX_BYTES"
    pixels_setting: str = "KILN_IMAGE_MAX_PIXELS"

    @classmethod
    def of(cls, settings: Settings) -> ImageLimits:
        """The limits of input images (edits, references, pins, image-to-prompt, agentic)."""
        return cls(settings.image_max_bytes, settings.image_max_pixels)

    @classmethod
    def training(cls, settings: Settings) -> ImageLimits:
        """The limits of style-training images."""
        return cls(
            settings.training_image_max_bytes,
            settings.training_image_max_pixels,
            "KILN_TRAINING_IMAGE_MAX_BYTES",
            "KILN_TRAINING_IMAGE_MAX_PIXELS",
        )

    def check_bytes(self, size: int, param: str) -> None:
        """413 for an upload of ``size`` bytes over the limit, before anything is decoded."""
        if size > self.max_bytes:
            raise UploadTooLarge(
                param,
                f"{param} is {size} bytes, over the limit of {self.max_bytes} "
                f"({self.bytes_setting})",
            )

    def too_many_pixels(self, param: str, size: str = "") -> UploadTooLarge:
        return UploadTooLarge(
            param,
            f"{param}{size} has more than {self.max_pixels} pixels ({self.pixels_setting})",
        )


def decode_image(
    data: bytes,
    param: str,
    settings: Settings,
    *,
    keep_alpha: bool = False,
    limits: ImageLimits | None = None,
) -> Image.Image:
    """Bytes -> a loaded PIL image (RGB, or RGBA with ``keep_alpha``), limits first
    (``limits``: the input-image limits of ``settings`` unless given)."""
    limits = limits or ImageLimits.of(settings)
    limits.check_bytes(len(data), param)
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError:
        raise limits.too_many_pixels(param) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise ParamError(
            param, f"{param} is not an image Kiln can read (PNG, JPEG, WebP)"
        ) from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ParamError(param, f"{param} has no pixels")
    if width * height > limits.max_pixels:
        raise limits.too_many_pixels(param, f" ({width}x{height})")
    try:
        image.load()
    except Image.DecompressionBombError:
        raise limits.too_many_pixels(param) from None
    except (OSError, ValueError, SyntaxError):
        raise ParamError(param, f"{param} is truncated or corrupt") from None
    if keep_alpha and ("A" in image.getbands() or image.mode == "P"):
        return image.convert("RGBA")
    return image.convert("RGB")


def decode_b64_image(
    text: str, param: str, settings: Settings, *, keep_alpha: bool = False
) -> Image.Image:
    """Base64 text (optionally a ``data:image/...;base64,`` URL) -> a loaded image."""
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    # Base64 carries 3 bytes per 4 characters: refuse by the encoded size before decoding.
    check_image_bytes(len(text) * 3 // 4, param, settings)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ParamError(param, f"{param} is not valid base64") from None
    return decode_image(data, param, settings, keep_alpha=keep_alpha)


def check_image_bytes(size: int, param: str, settings: Settings) -> None:
    """Refuse an input image of ``size`` bytes over ``KILN_IMAGE_MAX_BYTES`` (413)."""
    ImageLimits.of(settings).check_bytes(size, param)


def check_mask_size(mask_size: tuple[int, int], image_size: tuple[int, int], param: str) -> None:
    """A mask must have its image's size (400 naming the mask's field)."""
    if mask_size != image_size:
        raise ParamError(
            param,
            f"{param} is {mask_size[0]}x{mask_size[1]}, the image "
            f"{image_size[0]}x{image_size[1]}: they must match",
        )


async def load_image_input(
    state: AppState,
    tenant: Tenant,
    *,
    image: str | None,
    asset_id: str | None,
    param: str = "image",
    keep_alpha: bool = False,
) -> InputImage:
    """Exactly one of base64 ``image`` or the caller's ``asset_id``, decoded off the loop."""
    import asyncio

    if (image is None) == (asset_id is None):
        raise ParamError(param, f"give exactly one of {param} (base64) and asset_id")
    settings = state.settings
    if image is not None:
        decoded = await asyncio.to_thread(
            decode_b64_image, image, param, settings, keep_alpha=keep_alpha
        )
        return InputImage(decoded)
    asset, data = await asyncio.to_thread(state.assets.source, tenant.id, asset_id)
    decoded = await asyncio.to_thread(
        decode_image, data, "asset_id", settings, keep_alpha=keep_alpha
    )
    return InputImage(decoded, asset)


def derived_kind(sources: list[InputImage], default: str) -> str:
    """The asset kind of an image derived from ``sources``: a style kind wins (its rights
    travel with everything made from it), else ``default`` (the generating model's kind)."""
    for source in sources:
        if source.source is not None and source.source.license_required:
            return source.source.kind
    return default
