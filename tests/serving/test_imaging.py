"""Encoding numpy images at the edge."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from serving.core.imaging import encode_image


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8)


def test_png_is_lossless(image):
    decoded = Image.open(io.BytesIO(encode_image(image, "png")))
    assert decoded.format == "PNG" and decoded.size == (40, 24)
    assert np.array_equal(np.asarray(decoded), image)


@pytest.mark.parametrize("fmt, name", [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_lossy_formats_and_compression(image, fmt, name):
    small = encode_image(image, fmt, compression=10)
    large = encode_image(image, fmt, compression=95)
    assert Image.open(io.BytesIO(small)).format == name
    assert len(small) < len(large)


def test_refuses_what_is_not_an_rgb_uint8_image(image):
    with pytest.raises(ValueError):
        encode_image(image.astype(np.float32))
    with pytest.raises(ValueError):
        encode_image(image[..., 0])
    with pytest.raises(ValueError):
        encode_image(image, "gif")  # type: ignore[arg-type]
