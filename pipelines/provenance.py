"""Provenance carried by the image file: PNG text metadata (model, seed, asset id, ...).

    data = encode_png(pixels, {"kiln:model": "tiny-sdxl", "kiln:seed": "7"})
    read_png_metadata(data)  # -> {"kiln:model": "tiny-sdxl", "kiln:seed": "7"}

Values that Latin-1 cannot spell (a prompt in Japanese) go into iTXt chunks (UTF-8), the
rest into plain tEXt; readers see one dictionary either way. Pixels are written as given:
watermarking (pipelines.watermark) happens before encoding.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pipelines.watermark import as_rgb_array

# Compression level when the caller names none (zlib's scale, 0-9): level 1 encodes about
# twice as fast as PIL's default 6 for files ~40% larger with zlib (serving/core/imaging.py
# measured it); encode time counts more.
DEFAULT_PNG_LEVEL = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UP_FILTER = 2
# The PNG specification's limit on a text chunk keyword.
MAX_KEY_LENGTH = 79


def _isal_deflate() -> Callable[[bytes, int], bytes] | None:
    """ISA-L's zlib-format compressor (the ``isal`` package, a dependency), or None where
    it is not installed (the GPU machine runs ``pipelines/`` without the package's
    dependencies): zlib then."""
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib.compress


_ISAL = _isal_deflate()
# Which compressor ``deflate`` uses, for logs and tests: "isal" or "zlib".
DEFLATER = "zlib" if _ISAL is None else "isal"


def deflate(data: bytes, level: int = DEFAULT_PNG_LEVEL) -> bytes:
    """``data`` as a zlib stream (a PNG's IDAT), at zlib's ``level`` (0-9).

    With ISA-L (Intel's storage acceleration library: SIMD deflate, GIL released like
    zlib's), levels 1-9 map onto its 1-3 (1 -> 1, 2-5 -> 2, 6-9 -> 3). At level 1 it is
    6x zlib's level 1 on textured images and 16-22x on noise, and its files are smaller
    (a 1024 px textured image 59.9 -> 9.2 ms, 0.705 -> 0.652 of its raw rows; 128 px
    0.87 -> 0.15 ms; benchmarks/delivery_cost.py, RESULTS.md, issue 19); any PNG decoder
    reads them. Level 0 stays zlib's stored blocks: no compression, as asked."""
    if _ISAL is None or level == 0:
        return zlib.compress(data, level)
    return _ISAL(data, 1 if level == 1 else 2 if level <= 5 else 3)


def encode_png(
    image: Any,
    metadata: Mapping[str, str],
    compress_level: int = DEFAULT_PNG_LEVEL,
    *,
    alpha: Any = None,
) -> bytes:
    """PNG bytes of ``image`` (uint8 HxWx3 or RGB PIL image) with ``metadata`` as text
    chunks, in the mapping's order; ``alpha`` (uint8 HxW) makes it an RGBA PNG (a cut-out).

    Written here rather than by Pillow: IHDR, the text chunks, one IDAT of "Up"-filtered
    rows (``_filtered_rows`` says why), IEND."""
    pixels = as_rgb_array(image)
    if alpha is not None:
        if alpha.dtype != np.uint8 or alpha.shape != pixels.shape[:2]:
            raise ValueError(
                f"alpha must be uint8 {pixels.shape[:2]}, got {alpha.dtype} {alpha.shape}"
            )
        pixels = np.dstack([pixels, alpha])
    return _encode_rgb_or_rgba(pixels, metadata, compress_level)


def encode_png_pixels(
    pixels: np.ndarray, metadata: Mapping[str, str], compress_level: int = DEFAULT_PNG_LEVEL
) -> bytes:
    """``encode_png`` of uint8 HxWx3 or HxWx4 pixels, the fourth channel as alpha (a
    cut-out's export or batch file), written as they are: an 8K cut-out is not split into
    colour and alpha and stacked again."""
    if pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 4:
        return _encode_rgb_or_rgba(pixels, metadata, compress_level)
    return encode_png(pixels, metadata, compress_level)


def _encode_rgb_or_rgba(
    pixels: np.ndarray, metadata: Mapping[str, str], compress_level: int
) -> bytes:
    """The PNG of checked uint8 HxWx3 or HxWx4 ``pixels``."""
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be 0-9, got {compress_level}")
    chunks = [_chunk(b"IHDR", _header(pixels))]
    for key, value in metadata.items():
        _check_key(key)
        if not isinstance(value, str):
            raise ValueError(f"metadata value of {key!r} must be a str, got {type(value).__name__}")
        if "\0" in value:
            raise ValueError(f"metadata value of {key!r} contains a NUL character")
        chunks.append(_text_chunk(key, value))
    chunks.append(_chunk(b"IDAT", deflate(_filtered_rows(pixels), compress_level)))
    chunks.append(_chunk(b"IEND", b""))
    return PNG_SIGNATURE + b"".join(chunks)


def _header(pixels: np.ndarray) -> bytes:
    """IHDR: width, height, 8 bits a sample, RGB (2) or RGBA (6), no interlace."""
    height, width, channels = pixels.shape
    return struct.pack(">IIBBBBB", width, height, 8, 2 if channels == 3 else 6, 0, 0, 0)


def _filtered_rows(pixels: np.ndarray) -> bytes:
    """The image data before compression: each row as its difference from the row above
    (PNG filter type 2, "Up"; the first row's "above" is zeros), led by its filter byte.
    One vectorised filter for the whole image, where Pillow's encoder tries five filters
    on every row in turn: 2.4x faster at the same size on generated images and
    photographs (benchmarks/RESULTS.md, issue 19), and pixel-for-pixel the same image."""
    height, width, channels = pixels.shape
    flat = np.ascontiguousarray(pixels).reshape(height, width * channels)
    rows = np.empty((height, width * channels + 1), np.uint8)
    rows[:, 0] = UP_FILTER
    rows[0, 1:] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])  # uint8: wraps modulo 256, as PNG's
    return rows.tobytes()


def _text_chunk(key: str, value: str) -> bytes:
    """tEXt where Latin-1 spells the value, else iTXt (uncompressed UTF-8), as Pillow."""
    try:
        return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        data = key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")
        return _chunk(b"iTXt", data)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


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
