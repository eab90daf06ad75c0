"""A stored PNG decoded straight to a reduced size, a strip of rows at a time.

    width, height = png_size(data)
    pixels = decode_reduced(data, factor=4)   # ceil(width / 4) x ceil(height / 4)

Why: an SVG export traces at most 2048 px on the long side (``pipelines.vectorize``), but
Pillow decodes a PNG whole before it can shrink it: 236 MiB for an 8K RGBA asset, per
request. Here the PNG's zlib stream is inflated incrementally and cut into strips of
whole rows; each strip is unfiltered by Pillow's own PNG decoder (after the previous
strip's last row, which PNG's filters refer to, sent unfiltered), box-reduced
(``Image.reduce``) and pasted into the result. Memory is the result plus one strip, not
the image: the same pixels as ``Image.open(...).reduce(factor)``, bounded.

Kiln's own assets are 8-bit RGB or RGBA, not interlaced. Any other PNG (palette, grey,
16-bit, Adam7) is decoded whole by Pillow, then reduced: correct, just not bounded.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import numpy as np
from PIL import Image

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# (bit depth, colour type) -> Pillow mode, bytes per pixel.
_STREAMED = {(8, 2): ("RGB", 3), (8, 6): ("RGBA", 4)}
# Rows per strip before reducing, rounded up to a whole multiple of the factor: a few MiB
# for an 8K row width, and few enough strips that the Python loop costs nothing.
_STRIP_ROWS = 64
# The most bytes one inflate call may return: what a strip holds, not what the file packs.
_INFLATE_CHUNK = 1 << 20


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the PNG's header; ``ValueError`` for bytes that are no PNG."""
    width, height, *_ = _header(data)
    return width, height


def decode_reduced(data: bytes, factor: int) -> np.ndarray:
    """The PNG ``data`` as uint8 HxWx3 (or HxWx4 with alpha), reduced ``factor`` times by
    box averaging (each side rounded up), with memory bounded by the result (see the
    module docstring)."""
    width, height, depth, colour, interlace = _header(data)
    streamed = _STREAMED.get((depth, colour))
    if factor == 1 or streamed is None or interlace:
        return _decode_whole(data, factor)
    mode, channels = streamed
    stride = width * channels
    out = Image.new(mode, (-(-width // factor), -(-height // factor)))
    strip_rows = -(-_STRIP_ROWS // factor) * factor
    previous = bytes(stride)  # PNG's filters see zeros above the first row
    y = 0
    for rows in _filtered_strips(data, 1 + stride, strip_rows, height):
        count = len(rows) // (1 + stride)
        # Row 0, unfiltered (filter byte 0), is the row the strip's first row refers to.
        stream = zlib.compress(b"\x00" + previous + rows, 0)
        strip = Image.frombytes(mode, (width, count + 1), stream, "zip", mode)
        previous = strip.crop((0, count, width, count + 1)).tobytes()
        out.paste(strip.crop((0, 1, width, count + 1)).reduce(factor), (0, y // factor))
        y += count
    if y != height:
        raise ValueError(f"PNG data ends after {y} of {height} rows")
    return np.asarray(out)


def _header(data: bytes) -> tuple[int, int, int, int, int]:
    if not data.startswith(_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, colour, interlace


def _idat_chunks(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    pos = len(_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", view[pos : pos + 4])
        kind = bytes(view[pos + 4 : pos + 8])
        if kind == b"IDAT":
            yield view[pos + 8 : pos + 8 + length]
        elif kind == b"IEND":
            return
        pos += 12 + length  # length, type, data, CRC


def _inflated(data: bytes) -> Iterator[bytes]:
    """The zlib stream of the IDAT chunks inflated, at most ``_INFLATE_CHUNK`` a piece."""
    inflate = zlib.decompressobj()
    for chunk in _idat_chunks(data):
        while chunk:
            yield inflate.decompress(chunk, _INFLATE_CHUNK)
            chunk = inflate.unconsumed_tail
    yield inflate.flush()  # the few bytes an output limit left inside zlib


def _filtered_strips(data: bytes, row_bytes: int, strip_rows: int, height: int) -> Iterator[bytes]:
    """The image's filtered rows (filter byte + pixels each), ``strip_rows`` at a time."""
    want = row_bytes * strip_rows
    left = row_bytes * height
    pending = bytearray()
    for piece in _inflated(data):
        pending += piece
        while left and len(pending) >= min(want, left):
            take = min(want, left)
            yield bytes(pending[:take])
            del pending[:take]
            left -= take
        if not left:
            return


def _decode_whole(data: bytes, factor: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    return np.asarray(image.reduce(factor) if factor > 1 else image)
