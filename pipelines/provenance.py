"""Provenance carried by the image file: PNG text metadata (model, seed, asset id, ...).

    data = encode_png(pixels, {"kiln:model": "tiny-sdxl", "kiln:seed": "7"})
    read_png_metadata(data)  # -> {"kiln:model": "tiny-sdxl", "kiln:seed": "7"}

Values that Latin-1 cannot spell (a prompt in Japanese) go into iTXt chunks (UTF-8), the
rest into plain tEXt; readers see one dictionary either way. Pixels are written as given:
watermarking (pipelines.watermark) happens before encoding.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.watermark import as_rgb_array

# zlib level when the caller names none: level 1 encodes about twice as fast as PIL's
# default 6 for files ~40% larger (serving/core/imaging.py measured it); encode time counts more.
DEFAULT_PNG_LEVEL = 1
# The PNG specification's limit on a text chunk keyword.
MAX_KEY_LENGTH = 79


def encode_png(
    image: Any,
    metadata: Mapping[str, str],
    compress_level: int = DEFAULT_PNG_LEVEL,
    *,
    alpha: Any = None,
) -> bytes:
    """PNG bytes of ``image`` (uint8 HxWx3 or RGB PIL image) with ``metadata`` as text
    chunks, in the mapping's order; ``alpha`` (uint8 HxW) makes it an RGBA PNG (a cut-out)."""
    from PIL import Image, PngImagePlugin

    pixels = as_rgb_array(image)
    if alpha is not None:
        if alpha.dtype != np.uint8 or alpha.shape != pixels.shape[:2]:
            raise ValueError(
                f"alpha must be uint8 {pixels.shape[:2]}, got {alpha.dtype} {alpha.shape}"
            )
        pixels = np.dstack([pixels, alpha])
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be 0-9, got {compress_level}")
    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        _check_key(key)
        if not isinstance(value, str):
            raise ValueError(f"metadata value of {key!r} must be a str, got {type(value).__name__}")
        if "\0" in value:
            raise ValueError(f"metadata value of {key!r} contains a NUL character")
        info.add_text(key, value)  # iTXt where Latin-1 cannot encode the value
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", pnginfo=info, compress_level=compress_level)
    return buf.getvalue()


def read_png_metadata(data: bytes) -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of PNG ``data``; ValueError if it is not a PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise ValueError(f"expected PNG data, got {image.format}")
            image.load()  # text chunks after the image data are read only by load()
            return {str(key): str(value) for key, value in image.text.items()}
    except UnidentifiedImageError as exc:
        raise ValueError("expected PNG data, got bytes no image decoder recognises") from exc


def _check_key(key: str) -> None:
    """A PNG keyword: 1-79 printable Latin-1 characters, no leading, trailing or double
    spaces (PNG specification, section 11.3.4.2)."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ValueError(f"metadata key must be 1-{MAX_KEY_LENGTH} characters, got {key!r}")
    if not all(32 <= ord(c) <= 126 or 161 <= ord(c) <= 255 for c in key):
        raise ValueError(f"metadata key {key!r} must be printable Latin-1")
    if key != key.strip(" ") or "  " in key:
        raise ValueError(f"metadata key {key!r} has leading, trailing or double spaces")
