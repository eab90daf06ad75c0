"""Finishing a generated image for delivery: the original file (invisible provenance mark,
PNG metadata, optionally a signed C2PA manifest) and, for watermarked kinds, the preview.

    finished = finish_image(pixels, FinishOptions(payload=..., metadata={...}, visible=True))
    finished.original  # PNG bytes to store and, after a license, to hand out
    finished.preview   # PNG bytes with the visible mark, or None when the original is free

Deterministic where it can be: the same pixels and options give the same original pixels
(the invisible payload is derived from the request, never from a clock or a random id).
The preview is made from the marked original's pixels, so it carries the invisible mark too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.content_credentials import C2paSigner, embed_c2pa_manifest
from pipelines.provenance import encode_png
from pipelines.watermark import (
    apply_visible_watermark,
    carries_invisible_watermark,
    embed_invisible_watermark,
)


@dataclass(frozen=True)
class FinishOptions:
    """How to finish one image.

    ``payload`` is the invisible mark (``watermark.provenance_payload``); ``metadata``
    becomes PNG text chunks (and the C2PA generation assertion); ``visible`` asks for a
    watermarked preview; ``signer`` embeds a C2PA manifest titled ``title``.
    """

    payload: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)
    visible: bool = False
    signer: C2paSigner | None = None
    title: str = "Kiln image"


@dataclass(frozen=True)
class FinishedImage:
    """The files of one delivered image, the mark it carries (None below 256 px), and the
    pixels handed out now (the preview's where there is one), for re-encoding without
    decoding a PNG again."""

    original: bytes
    preview: bytes | None
    invisible_payload: bytes | None
    delivered_pixels: Any = field(repr=False, default=None)

    @property
    def delivered(self) -> bytes:
        """The file handed out now: the preview where there is one, else the original."""
        return self.preview if self.preview is not None else self.original


def finish_image(image: Any, options: FinishOptions) -> FinishedImage:
    """Mark, encode and (when configured) sign ``image`` (uint8 HxWx3 RGB, or HxWx4 RGBA:
    a cut-out keeps its alpha; both marks go on the colour channels only)."""
    alpha = None
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 4:
        image, alpha = np.ascontiguousarray(image[..., :3]), image[..., 3]
    marked = embed_invisible_watermark(image, options.payload)
    carried = options.payload if carries_invisible_watermark(marked) else None
    shown = apply_visible_watermark(marked) if options.visible else marked
    original = _encode(marked, options, alpha)
    preview = _encode(shown, options, alpha) if options.visible else None
    delivered = shown if alpha is None else np.dstack([shown, alpha])
    return FinishedImage(original, preview, carried, delivered_pixels=delivered)


def _encode(pixels: Any, options: FinishOptions, alpha: Any = None) -> bytes:
    data = encode_png(pixels, options.metadata, alpha=alpha)
    if options.signer is None:
        return data
    return embed_c2pa_manifest(data, options.signer, options.title, options.metadata)
