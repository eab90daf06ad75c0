"""Results kept per image size: what depends on an image's size (and a few settings)
alone, such as the visible mark's layer or the invisible mark's dither, is made once for
each of the last few sizes a server delivers, up to a size past which keeping one would
hold too much memory."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


class KeptPerSize:
    """``make(first, second, *rest)``, whose result depends on its arguments alone (and
    is not changed by its callers), with the results of the last ``maxsize`` argument
    sets kept while ``first * second`` (an image's pixels) is at most ``max_pixels``;
    larger images' are made each time."""

    def __init__(self, make: Callable[..., Any], max_pixels: int, maxsize: int = 4) -> None:
        self.make = make
        self.max_pixels = max_pixels
        self.kept = functools.lru_cache(maxsize=maxsize)(make)

    def __call__(self, first: int, second: int, *rest: Any) -> Any:
        if first * second > self.max_pixels:
            return self.make(first, second, *rest)
        return self.kept(first, second, *rest)
