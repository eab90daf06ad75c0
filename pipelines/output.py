"""What a pipeline call returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class GenerationOutput:
    """Images of one request, in order, with the seed that made each.

    ``images`` are ``uint8`` arrays of shape (height, width, 3): cheap to send between
    processes and encoded to PNG/JPEG/WebP only at the edge. ``timings`` are seconds of
    the shared pipeline call (``encode``, ``denoise``, ``decode``, ``total``).
    ``cancelled``: the request was cancelled (``pipelines.progress``); ``images`` then
    holds only those its calls finished before, maybe none.
    """

    images: list[np.ndarray]
    seeds: tuple[int, ...]
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False
