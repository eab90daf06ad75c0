"""Images that requests bring: uploads, base64 in JSON, or one of the caller's assets.

Every image a client sends (edits and their masks, references, pins, image-to-prompt,
agentic references and recipe thumbnails, batch lines, OpenAI edits, variations and
masks, style-training uploads) and every asset read as an input is decoded here, so the
same rules hold everywhere (DESIGN.md §5), in this order:

1. the byte size, before anything is decoded (413);
2. the format, from the header: PNG, JPEG (MPO, the multi-picture JPEG that phones
   write, is JPEG: its first picture is the photo) and WebP only; GIF, BMP, TIFF, AVIF,
   HEIC/HEIF, ICO, EPS and every other format are a 400 ``unsupported_image_format``.
   Decision: an animated PNG (APNG) or WebP is refused the same way, not cut to its
   first frame: an animation's first frame is often a blank or a fade-in, and a
   reference or a mask should be the picture the user looked at;
3. the pixel count, read from the header, before decompressing (413, also for a small
   file that declares a huge size);
4. the decode (a truncated or corrupt file is a 400), then the EXIF orientation applied
   (a phone's portrait photo is upright before anything uses its pixels), then the
   colour mode made RGB (or RGBA where the caller keeps alpha): CMYK, 16-bit grey
   (scaled to 8 bits, not clipped), LAB, palette (its transparency kept as alpha), grey
   with alpha, 1-bit. A file whose pixels cannot be converted is a 400, never a 500.

Every refusal is a 400 or 413 naming the request's field (``param``).

An ``asset_id`` input is the caller's own asset (another tenant's answers 404, as an
unknown one); whether its pixels may enter the new image, and what kind of asset that
image is, is decided by ``serving.core.asset_rights`` for the input's ``Use``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageOps

from pipelines.params import ParamError
from serving.core.asset_rights import Use, admit
from serving.core.assets.service import Asset, Assets
from serving.core.errors import KilnError
from serving.core.settings import Settings


@dataclass(frozen=True)
class InputImage:
    """A decoded input image and, for an ``asset_id`` input, the asset it came from."""

    image: Image.Image  # loaded; RGB, or RGBA where the caller kept alpha
    source: Asset | None = None
    # The asset kind the input's rights impose on what is made from it (a style kind for
    # an edit of a style image); None where the generating model's kind stands.
    kind: str | None = None

    @cached_property
    def pixels(self) -> np.ndarray:
        """uint8 HxWx3 RGB (alpha dropped), converted once."""
        return np.asarray(self.image.convert("RGB"))

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


# Formats Kiln decodes, by PIL's name for them, as the error messages spell them.
ACCEPTED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WebP"}
# ISO media (``ftyp`` box) brands of formats PIL cannot even open, to name them.
_ISO_MEDIA_BRANDS = {
    **dict.fromkeys((b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"),
                    "HEIC/HEIF"),
    **dict.fromkeys((b"avif", b"avis"), "AVIF"),
}  # fmt: skip
# 16-bit grey modes (PNG); PIL's own convert clips them at 255 instead of scaling.
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class UnsupportedImageFormat(KilnError, ParamError):
    """An image in a format Kiln does not take (400 ``unsupported_image_format``); a
    ``ParamError`` too, as every other refusal of a request's field."""

    def __init__(self, param: str, what: str) -> None:
        message = f"{param} is {what}: Kiln takes still PNG, JPEG and WebP images"
        KilnError.__init__(self, 400, message, param=param, code="unsupported_image_format")


class UploadTooLarge(KilnError):
    """An upload over a byte or pixel limit, refused before decoding (413)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(413, message, param=param, code="upload_too_large")


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
    """Bytes -> a loaded, upright PIL image (RGB, or RGBA with ``keep_alpha``), checked
    in the module docstring's order (``limits``: the input-image limits of ``settings``
    unless given)."""
    limits = limits or ImageLimits.of(settings)
    limits.check_bytes(len(data), param)
    if not data:
        raise ParamError(param, f"{param} is empty")
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError:
        raise limits.too_many_pixels(param) from None
    except MemoryError:
        raise
    except Exception:  # UnidentifiedImageError, or a header parser tripping on junk
        brand = _ISO_MEDIA_BRANDS.get(data[8:12]) if data[4:8] == b"ftyp" else None
        if brand is not None:
            raise UnsupportedImageFormat(param, brand) from None
        raise ParamError(
            param, f"{param} is not an image Kiln can read (PNG, JPEG, WebP)"
        ) from None
    check_format(image, param)
    width, height = image.size
    if width < 1 or height < 1:
        raise ParamError(param, f"{param} has no pixels")
    if width * height > limits.max_pixels:
        raise limits.too_many_pixels(param, f" ({width}x{height})")
    try:
        image.load()
    except Image.DecompressionBombError:
        raise limits.too_many_pixels(param) from None
    except MemoryError:
        raise
    except Exception:  # a broken file can make a decoder raise nearly anything
        raise ParamError(param, f"{param} is truncated or corrupt") from None
    return finish_pixels(image, param, keep_alpha)


def check_format(image: Image.Image, param: str) -> None:
    """``UnsupportedImageFormat`` for an opened image that is not a still PNG, JPEG or
    WebP (see the module docstring)."""
    name = ACCEPTED_FORMATS.get(image.format or "")
    if name is None:
        raise UnsupportedImageFormat(param, f"a {image.format or 'unknown'} image")
    # An MPO's further pictures are previews or depth maps, never frames of a motion.
    if name != "JPEG" and getattr(image, "is_animated", False):
        raise UnsupportedImageFormat(
            param, f"an animated {name} ({image.n_frames} frames); send one frame"
        )


def finish_pixels(image: Image.Image, param: str, keep_alpha: bool = False) -> Image.Image:
    """A loaded image made upright (EXIF orientation) and RGB, or RGBA with
    ``keep_alpha`` where it has alpha or palette transparency. 400 naming ``param`` when
    the pixels cannot be converted: a file's colour data is the client's, not a fault of
    the server."""
    mode = image.mode
    try:
        ImageOps.exif_transpose(image, in_place=True)
        if image.mode in _SIXTEEN_BIT_MODES:
            high_byte = np.clip(np.asarray(image, np.int64), 0, 65535) >> 8
            image = Image.fromarray(high_byte.astype(np.uint8), "L")
        if image.mode in ("P", "PA"):
            image = image.convert("RGBA")  # the palette's transparency becomes alpha
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        if keep_alpha and has_alpha:
            return image.convert("RGBA")
        if has_alpha and image.mode != "RGBA":
            image = image.convert("RGBA")  # transparency resolved before it is dropped
        return image.convert("RGB")
    except MemoryError:
        raise
    except Exception:  # PIL raises ValueError, OSError, KeyError... for odd colour data
        raise ParamError(param, f"{param}: its {mode} pixels cannot be made RGB") from None


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


@dataclass(frozen=True)
class ImageSource:
    """An input image as a request names it: exactly one of base64 ``image`` (a
    ``data:`` URL works) and one of the caller's assets (``asset_id``)."""

    image: str | None = None
    asset_id: str | None = None


class ImageInputs:
    """The caller's input images: ``load`` is the one way serving code reads an asset's
    pixels for a new image (exports aside), so every input is admitted by
    ``serving.core.asset_rights.admit`` for its ``Use``."""

    def __init__(self, settings: Settings, assets: Assets) -> None:
        self.settings = settings
        self.assets = assets

    async def load(
        self,
        tenant_id: str,
        source: ImageSource,
        *,
        use: Use,
        param: str = "image",
        asset_param: str = "asset_id",
        keep_alpha: bool = False,
    ) -> InputImage:
        """``source``'s image (exactly one of base64 ``image`` and the caller's
        ``asset_id``), decoded off the loop.

        An asset is admitted for ``use`` (403 for an unlicensed style image used as a
        reference) before its pixels are decoded; errors about it name ``asset_param``."""
        if (source.image is None) == (source.asset_id is None):
            raise ParamError(param, f"give exactly one of {param} (base64) and asset_id")
        settings = self.settings
        if source.image is not None:
            decoded = await asyncio.to_thread(
                decode_b64_image, source.image, param, settings, keep_alpha=keep_alpha
            )
            return InputImage(decoded)
        asset, data = await asyncio.to_thread(self.assets.source, tenant_id, source.asset_id)
        kind = admit(asset, use, asset_param)
        decoded = await asyncio.to_thread(
            decode_image, data, asset_param, settings, keep_alpha=keep_alpha
        )
        return InputImage(decoded, asset, kind)


def derived_kind(sources: list[InputImage], default: str) -> str:
    """The asset kind of an image made from ``sources``: the first kind an input imposes
    (an edited style image's), else ``default`` (the generating model's or style's)."""
    for source in sources:
        if source.kind is not None:
            return source.kind
    return default
