"""Kiln's own PNG writer (pipelines/provenance.py ``encode_png``): every image decodes to
exactly its pixels in Pillow, with its text chunks, whatever its size, content or alpha."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from pipelines import provenance
from pipelines.provenance import encode_png, read_png_metadata


def _decoded(data: bytes) -> tuple[np.ndarray, str]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return np.asarray(image), image.mode


@pytest.mark.parametrize("size", [(1, 1), (1, 37), (29, 1), (64, 64), (97, 131), (300, 200)])
def test_pixels_round_trip_exactly(size):
    rng = np.random.default_rng(size[0] * 1000 + size[1])
    noise = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    y, x = np.mgrid[0 : size[0], 0 : size[1]]
    smooth = np.dstack([x % 256, y % 256, (x + y) % 256]).astype(np.uint8)
    for pixels in (noise, smooth, np.zeros_like(noise), np.full_like(noise, 255)):
        decoded, mode = _decoded(encode_png(pixels, {}))
        assert mode == "RGB"
        np.testing.assert_array_equal(decoded, pixels)


def test_alpha_makes_an_rgba_png():
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    decoded, mode = _decoded(encode_png(pixels, {"kiln:kind": "cutout"}, alpha=alpha))
    assert mode == "RGBA"
    np.testing.assert_array_equal(decoded, np.dstack([pixels, alpha]))


def test_text_chunks_keep_order_and_any_language():
    metadata = {"Software": "Kiln", "kiln:prompt": "灯台 at dusk — ü", "kiln:seed": "7"}
    data = encode_png(np.zeros((8, 8, 3), np.uint8), metadata)
    assert read_png_metadata(data) == metadata
    assert data.index(b"tEXtSoftware") < data.index(b"iTXtkiln:prompt") < data.index(b"IDAT")


def test_a_pil_image_and_every_compress_level_encode_the_same_pixels():
    pixels = np.random.default_rng(5).integers(0, 256, (33, 17, 3), dtype=np.uint8)
    for level in (0, 1, 9):
        decoded, _ = _decoded(encode_png(Image.fromarray(pixels), {}, compress_level=level))
        np.testing.assert_array_equal(decoded, pixels)
    with pytest.raises(ValueError, match="compress_level"):
        encode_png(pixels, {}, compress_level=10)


def _textured(size: int) -> np.ndarray:
    rng = np.random.default_rng(size)
    ramp = np.linspace(30, 220, size)
    base = np.stack([np.add.outer(ramp, ramp[::-1]) / 2] * 3, axis=-1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def test_every_png_is_deflated_by_isa_l_where_it_is_installed():
    pytest.importorskip("isal")  # a dependency; the GPU machine runs pipelines/ without it
    from isal import isal_zlib

    assert provenance.DEFLATER == "isal"
    rows = provenance._filtered_rows(_textured(96))
    assert provenance.deflate(rows, 1) == isal_zlib.compress(rows, 1)
    assert len(provenance.deflate(rows, 1)) < len(zlib.compress(rows, 1))  # and smaller


@pytest.mark.parametrize("isal", [True, False], ids=["isal", "zlib"])
def test_every_level_deflates_to_a_stream_any_decoder_reads(isal: bool, monkeypatch):
    if not isal:
        monkeypatch.setattr(provenance, "_ISAL", None)  # as where isal is not installed
    elif provenance._ISAL is None:
        pytest.skip("isal is not installed here")
    pixels = _textured(70)
    rows = provenance._filtered_rows(pixels)
    for level in range(10):
        assert zlib.decompress(provenance.deflate(rows, level)) == rows
    assert provenance.deflate(rows, 0) == zlib.compress(rows, 0)  # 0: stored, not squeezed
    decoded, _ = _decoded(encode_png(pixels, {"kiln:seed": "1"}))
    np.testing.assert_array_equal(decoded, pixels)


def test_four_channel_pixels_encode_with_their_alpha():
    rng = np.random.default_rng(11)
    rgba = rng.integers(0, 256, (21, 34, 4), dtype=np.uint8)
    decoded, mode = _decoded(provenance.encode_png_pixels(rgba, {"kiln:line": "1"}))
    assert mode == "RGBA"
    np.testing.assert_array_equal(decoded, rgba)
    decoded, mode = _decoded(provenance.encode_png_pixels(rgba[..., :3].copy(), {}, 6))
    assert mode == "RGB"
    np.testing.assert_array_equal(decoded, rgba[..., :3])
