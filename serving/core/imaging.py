"""Encoding generated images (``uint8`` HxWx3 arrays) to PNG, JPEG or WebP bytes.

This runs in the ingress, off the event loop (callers use ``asyncio.to_thread``): a 1K
image's PNG takes about 10 ms with Kiln's own writer (``pipelines.provenance``, ISA-L's
deflate), a JPEG or WebP tens of milliseconds, long enough to stall other requests.
"""

from __future__ import annotations

import base64
import io
from typing import Literal

import numpy as np
from PIL import Image

from pipelines.provenance import encode_png

ImageFormat = Literal["png", "jpeg", "webp"]

MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

# Quality when a lossy format is asked for without output_compression.
DEFAULT_QUALITY = 90


def encode_image(
    image: np.ndarray, fmt: ImageFormat = "png", compression: int | None = None
) -> bytes:
    """Encode one image. ``compression`` (0-100) is OpenAI's ``output_compression``:
    the quality of JPEG/WebP, and the zlib level (scaled to 0-9) of PNG.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 array, got {image.dtype} {image.shape}")
    if fmt == "png":  # Kiln's own writer (ISA-L's deflate), as every stored PNG
        if compression is None:  # provenance's default: the fastest level
            return encode_png(image, {})
        return encode_png(image, {}, compress_level=round(compression * 9 / 100))
    buf = io.BytesIO()
    pil = Image.fromarray(image)  # uint8 HxWx3 is RGB
    if fmt == "jpeg":
        pil.save(
            buf, format="JPEG", quality=DEFAULT_QUALITY if compression is None else compression
        )
    elif fmt == "webp":
        pil.save(
            buf, format="WEBP", quality=DEFAULT_QUALITY if compression is None else compression
        )
    else:
        raise ValueError(f"unknown image format {fmt!r}; known: {', '.join(MEDIA_TYPES)}")
    return buf.getvalue()


def b64(data: bytes) -> str:
    """Base64 text for ``b64_json``."""
    return base64.b64encode(data).decode("ascii")
