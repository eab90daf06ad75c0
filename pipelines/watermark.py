"""Watermarks on generated pixels: a visible tiled mark for previews, an invisible one for
provenance (DESIGN.md §1: artist- and private-style previews are marked visibly; every
original carries the invisible mark).

    preview = apply_visible_watermark(original)                  # style-kind previews
    marked = embed_invisible_watermark(original, provenance_payload(asset_id))
    decode_invisible_watermark(marked)                           # -> the 6 payload bytes

Both are pure and deterministic: the same pixels and arguments give the same output bytes,
so the same request still gives the same image. Images are ``uint8`` HxWx3 RGB arrays (a
PIL ``RGB`` image is accepted too); the result is a new array.

The invisible mark is in invisible-watermark's ``dwtDct`` format, the one SDXL's
reference code uses (the library's decoder reads it), embedded by an encoder of Kiln's
that moves colours far less than the library's (``pipelines.dwt_dct_mark``; issue 17). It
survives lossless storage (PNG), not resizing, cropping or JPEG (not even at quality 95,
nor did the library's). It is skipped below ``INVISIBLE_MIN_SIDE`` px on the shorter side,
as SDXL's own watermarker skips small images: there are too few blocks to repeat the
payload reliably (and the library refuses under 256x256). Each bit is voted on by the
blocks that carry it, so reliability grows with size. Embedding checks itself: when the
mark does not read back from the rounded uint8 image, a second pass may also move
luminance where chroma alone had no room. Measured (benchmarks/RESULTS.md, issue 17):
each of 15 graded images, 22 photograph crops at 256 and 512 px, 60 noisy gradients and
flat black, grey and white images read back, and all but one (a 256 px crop) after
Gaussian noise of sigma 2. Treat a decode at 256-511 px after any re-encoding as a hint,
at SDXL and SD 1.5 sizes as evidence. diffusers' own SDXL watermarker must stay off
(``add_watermarker=False``) so this is the only invisible mark.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

import numpy as np

from pipelines.dwt_dct_mark import decode_bits, embed_pass, float_bgr
from pipelines.kept_per_size import KeptPerSize

logger = logging.getLogger(__name__)

# Text of the visible mark when the caller does not name one.
DEFAULT_VISIBLE_TEXT = "KILN PREVIEW"
# Opacity of the visible mark: light enough to judge the image, heavy enough to spoil it.
DEFAULT_VISIBLE_OPACITY = 0.35
# Slant of the visible mark's rows, degrees counter-clockwise.
VISIBLE_ANGLE = 30.0
# Font height as a fraction of the image's shorter side, never under MIN_FONT_PX, so the
# mark reads the same at 512 px and at 8K.
_FONT_FRACTION = 1 / 14
_MIN_FONT_PX = 10

# The invisible mark: below this shorter side no mark is embedded (see module docstring).
INVISIBLE_MIN_SIDE = 256
# Payload length of provenance_payload: 48 bits, as SDXL's own mark.
PAYLOAD_BYTES = 6
# Longest payload accepted: each bit is repeated over the image's DCT blocks and decoded by
# majority; at 256x256 there are 1024 blocks, so 8 bytes still gets 16 votes a bit.
MAX_PAYLOAD_BYTES = 8


def as_rgb_array(image: Any) -> np.ndarray:
    """``image`` as a ``uint8`` HxWx3 array; ValueError for anything else."""
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {image.mode!r}")
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a uint8 HxWx3 array or RGB image, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 array, got {image.dtype} {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got shape {image.shape}")
    return image


# --- visible -------------------------------------------------------------------------


def apply_visible_watermark(
    image: Any,
    text: str = DEFAULT_VISIBLE_TEXT,
    opacity: float = DEFAULT_VISIBLE_OPACITY,
) -> np.ndarray:
    """``image`` under a repeated diagonal ``text`` mark, alpha-blended over all of it.

    White letters with a dark outline, so the mark shows on light and dark images alike;
    the letters scale with the image's shorter side.
    """
    from PIL import Image

    pixels = as_rgb_array(image)
    if not text.strip():
        raise ValueError("watermark text must not be empty")
    if not 0.0 < opacity <= 1.0:
        raise ValueError(f"opacity must be in (0, 1], got {opacity}")
    height, width = pixels.shape[:2]
    overlay = _overlay(width, height, text, opacity)
    base = Image.fromarray(pixels).convert("RGBA")
    return np.asarray(Image.alpha_composite(base, overlay).convert("RGB"))


def _visible_overlay(width: int, height: int, text: str, opacity: float) -> Any:
    """An RGBA layer of ``width`` x ``height``: rotated copies of one text tile on a lattice
    that is itself rotated, so rows run diagonally across the whole image.

    One tile is rendered and pasted, rather than a canvas of the image's diagonal rotated,
    so an 8K preview costs a few tile pastes and no second full-size rotation.
    """
    from PIL import Image, ImageDraw, ImageFont

    font_px = max(_MIN_FONT_PX, round(min(width, height) * _FONT_FRACTION))
    font = ImageFont.load_default(size=font_px)
    stroke = max(1, font_px // 12)
    alpha = round(255 * opacity)

    measure = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    left, top, right, bottom = measure.textbbox((0, 0), text, font=font, stroke_width=stroke)
    tile = Image.new("RGBA", (right - left + 2 * stroke, bottom - top + 2 * stroke))
    ImageDraw.Draw(tile).text(
        (stroke - left, stroke - top),
        text,
        font=font,
        fill=(255, 255, 255, alpha),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0, alpha),
    )
    tile = tile.rotate(VISIBLE_ANGLE, resample=Image.Resampling.BICUBIC, expand=True)

    # Lattice in the text's own frame: a gap of one font height between words and between
    # rows, odd rows shifted half a step (brick bond) so no column of gaps lines up.
    step_x = right - left + font_px
    step_y = bottom - top + font_px
    cos, sin = math.cos(math.radians(VISIBLE_ANGLE)), math.sin(math.radians(VISIBLE_ANGLE))
    radius = math.hypot(width, height) / 2
    cols = math.ceil(radius / step_x) + 1
    rows = math.ceil(radius / step_y) + 1

    # Pasted onto a layer with a margin of one tile, as alpha_composite wants dest >= 0.
    margin = max(tile.size)
    layer = Image.new("RGBA", (width + 2 * margin, height + 2 * margin))
    cx, cy = width / 2 + margin, height / 2 + margin
    for row in range(-rows, rows + 1):
        shift = step_x / 2 if row % 2 else 0.0
        for col in range(-cols, cols + 1):
            dx, dy = col * step_x + shift, row * step_y
            # Counter-clockwise on screen (y grows downwards).
            x = cx + dx * cos + dy * sin - tile.width / 2
            y = cy - dx * sin + dy * cos - tile.height / 2
            if -tile.width < x - margin < width and -tile.height < y - margin < height:
                layer.alpha_composite(tile, dest=(round(x), round(y)))
    return layer.crop((margin, margin, margin + width, margin + height))


# The layer depends on the size, text and opacity only, and a server delivers a few sizes
# over and over: the last few layers up to 2048x2048 are kept (16 MiB each at most), so a
# preview costs one blend (1024²: 24 -> 7 ms). Larger ones are rendered each time.
_overlay = KeptPerSize(_visible_overlay, max_pixels=2048 * 2048)


# --- invisible -----------------------------------------------------------------------


def provenance_payload(key: str | bytes) -> bytes:
    """The ``PAYLOAD_BYTES``-byte payload for ``key`` (an asset id, a request hash): the
    first bytes of its SHA-256, so equal keys give equal marks."""
    data = key.encode("utf-8") if isinstance(key, str) else key
    return hashlib.sha256(data).digest()[:PAYLOAD_BYTES]


def carries_invisible_watermark(image: Any) -> bool:
    """Whether an image of this size gets the invisible mark (shorter side ≥ 256 px)."""
    pixels = as_rgb_array(image)
    return min(pixels.shape[:2]) >= INVISIBLE_MIN_SIDE


def embed_invisible_watermark(image: Any, payload: bytes) -> np.ndarray:
    """``image`` with ``payload`` (1-8 bytes) embedded in invisible-watermark's dwtDct
    format; an unchanged copy when the shorter side is under ``INVISIBLE_MIN_SIDE`` px.

    One pass moves chroma only; when the mark does not read back from it (saturated or
    flat areas left too few carriers), a second pass on its output may move luminance
    too, where the first found no room.
    """
    pixels = as_rgb_array(image)
    _check_payload(payload)
    if min(pixels.shape[:2]) < INVISIBLE_MIN_SIDE:
        return pixels.copy()
    bits = np.unpackbits(np.frombuffer(bytes(payload), dtype=np.uint8))
    marked = embed_pass(pixels, bits, any_direction=False)
    if decode_invisible_watermark(marked, len(payload)) != bytes(payload):
        marked = embed_pass(marked, bits, any_direction=True)
        if decode_invisible_watermark(marked, len(payload)) != bytes(payload):
            logger.warning(
                "invisible mark does not read back from a %sx%s image", *pixels.shape[:2]
            )
    return marked


def decode_invisible_watermark(image: Any, num_bytes: int = PAYLOAD_BYTES) -> bytes | None:
    """The ``num_bytes`` payload read from ``image``; None when the image is too small to
    carry a mark. An image never marked still decodes to *some* bytes: compare with the
    payload expected."""
    pixels = as_rgb_array(image)
    if not 1 <= num_bytes <= MAX_PAYLOAD_BYTES:
        raise ValueError(f"num_bytes must be 1-{MAX_PAYLOAD_BYTES}, got {num_bytes}")
    if min(pixels.shape[:2]) < INVISIBLE_MIN_SIDE:
        return None
    bits = decode_bits(float_bgr(pixels), num_bytes * 8)
    return np.packbits(bits).tobytes()


def _check_payload(payload: bytes) -> None:
    if not isinstance(payload, bytes | bytearray):
        raise ValueError(f"payload must be bytes, got {type(payload).__name__}")
    if not 1 <= len(payload) <= MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"payload must be 1-{MAX_PAYLOAD_BYTES} bytes "
            f"({MAX_PAYLOAD_BYTES * 8} bits), got {len(payload)}"
        )
