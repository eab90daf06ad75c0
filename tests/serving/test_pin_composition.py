"""Pins' pictures tiled into the one reference image of a single-image model (Kontext):
one alone, two along the frame's long side, up to four in a 2x2 grid, proportions kept,
centred on grey; five or more a 400 naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.params import ParamError
from serving.core.pins.composition import BACKGROUND, MAX_TILES, grid_of, tile_pictures


def solid(colour: tuple[int, int, int], width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), colour, dtype=np.uint8)


RED, GREEN, BLUE, WHITE = (220, 30, 30), (30, 200, 40), (20, 40, 230), (255, 255, 255)


def test_the_grid_follows_the_count_and_the_frame():
    assert grid_of(1, 64, 64) == (1, 1)
    assert grid_of(2, 128, 64) == (2, 1) and grid_of(2, 64, 128) == (1, 2)
    assert grid_of(3, 64, 64) == grid_of(4, 64, 64) == (2, 2)


def test_one_picture_fills_the_frame_keeping_its_proportions():
    frame = tile_pictures([solid(RED, 100, 50)], 64, 64)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert tuple(frame[32, 32]) == RED  # the middle band is the picture
    assert tuple(frame[2, 32]) == BACKGROUND == tuple(frame[61, 32])  # letterboxed


def test_four_pictures_take_a_cell_each_in_order():
    colours = [RED, GREEN, BLUE, WHITE]
    frame = tile_pictures([solid(c, 40, 40) for c in colours], 128, 128)
    centres = [(32, 32), (32, 96), (96, 32), (96, 96)]  # (row, column) of each cell
    assert [tuple(frame[r, c]) for r, c in centres] == colours


def test_three_pictures_leave_the_last_cell_grey_and_two_go_side_by_side():
    frame = tile_pictures([solid(c, 40, 40) for c in (RED, GREEN, BLUE)], 128, 128)
    assert tuple(frame[96, 96]) == BACKGROUND
    wide = tile_pictures([solid(RED, 40, 40), solid(BLUE, 40, 40)], 128, 64)
    assert tuple(wide[32, 32]) == RED and tuple(wide[32, 96]) == BLUE


def test_more_pictures_than_tiles_is_a_400_naming_the_field():
    with pytest.raises(ParamError) as refused:
        tile_pictures([solid(RED, 8, 8)] * (MAX_TILES + 1), 64, 64, param="pins")
    assert refused.value.param == "pins" and "up to 4" in str(refused.value)
