"""Pins' pictures composed into the one reference image a single-image model takes
(FLUX.1 Kontext conditions on exactly one image).

    reference = tile_pictures(pictures, width=1024, height=1024, param="pins")

Decided where the issue is silent: every kept picture of every pin the request names is
a tile, in the order the pins and their pictures are given; at most ``MAX_TILES`` (4),
laid out as one picture alone, two side by side (the long way of the frame), or a 2x2
grid. Each picture keeps its proportions, scaled to fit its cell and centred on mid grey
(the colour that biases a flow model's reading of the frame the least). Four tiles at
1024 px leave each picture a 512 px cell, about what Kontext still reads a subject from;
past four the request is a 400 naming ``param`` (``TooManyPictures``), not a smaller
grid that would lose the subjects.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipelines.params import ParamError

MAX_TILES = 4
BACKGROUND = (128, 128, 128)


class TooManyPictures(ParamError):
    """More pictures than one reference image can hold legibly (400 naming the field)."""

    def __init__(self, param: str, count: int) -> None:
        super().__init__(
            param,
            f"this model takes one reference image: Kiln tiles up to {MAX_TILES} pin "
            f"pictures into it, and these {param} have {count}; name fewer pins, or pins "
            "made from fewer pictures",
        )


def grid_of(count: int, width: int, height: int) -> tuple[int, int]:
    """(columns, rows) of the tiling of ``count`` pictures in a ``width`` x ``height`` frame."""
    if count == 1:
        return 1, 1
    if count == 2:
        return (2, 1) if width >= height else (1, 2)
    return 2, 2


def tile_pictures(
    pictures: list[np.ndarray], width: int, height: int, param: str = "pins"
) -> np.ndarray:
    """One uint8 ``height`` x ``width`` x 3 image holding every picture of ``pictures``
    (uint8 HxWx3), tiled as the module docstring says."""
    if not pictures:
        raise ValueError("no pictures to tile")
    if len(pictures) > MAX_TILES:
        raise TooManyPictures(param, len(pictures))
    columns, rows = grid_of(len(pictures), width, height)
    frame = Image.new("RGB", (width, height), BACKGROUND)
    cell_w, cell_h = width // columns, height // rows
    for index, pixels in enumerate(pictures):
        picture = Image.fromarray(pixels)
        scale = min(cell_w / picture.width, cell_h / picture.height)
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        fitted = picture.resize(size, Image.Resampling.LANCZOS)
        column, row = index % columns, index // columns
        left = column * cell_w + (cell_w - size[0]) // 2
        top = row * cell_h + (cell_h - size[1]) // 2
        frame.paste(fitted, (left, top))
    return np.asarray(frame)
