"""Visible and invisible watermarks and PNG provenance metadata, with the real libraries."""

from __future__ import annotations

import io
import json
from importlib import resources

import numpy as np
import pytest
from PIL import Image

from pipelines.provenance import encode_png, read_png_metadata
from pipelines.watermark import (
    DEFAULT_VISIBLE_TEXT,
    INVISIBLE_MIN_SIDE,
    MAX_PAYLOAD_BYTES,
    PAYLOAD_BYTES,
    apply_visible_watermark,
    carries_invisible_watermark,
    decode_invisible_watermark,
    embed_invisible_watermark,
    provenance_payload,
)


def textured(height: int, width: int, seed: int = 0, noise: float = 3.0) -> np.ndarray:
    """A gradient with mild pixel noise: dwtDct needs some texture, as a real image has."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [x / width * 200 + 20, y / height * 200 + 20, (x + y) / (width + height) * 180 + 40],
        axis=-1,
    )
    return np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)


def changed_cells(a: np.ndarray, b: np.ndarray, cell: int, threshold: int = 16) -> np.ndarray:
    """Per ``cell`` x ``cell`` block: does some pixel differ by more than ``threshold``?"""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > threshold
    rows, cols = a.shape[0] // cell, a.shape[1] // cell
    blocks = diff[: rows * cell, : cols * cell].reshape(rows, cell, cols, cell)
    return blocks.any(axis=(1, 3))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


# --- visible -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(64, 64), (128, 96), (512, 768), (1024, 256), (1024, 1024)], ids=str
)
def test_visible_mark_covers_every_tile(shape):
    original = textured(*shape)
    preview = apply_visible_watermark(original)
    assert preview.shape == original.shape and preview.dtype == np.uint8
    # Cells a quarter of the shorter side: the mark shows in every one of them.
    cells = changed_cells(original, preview, cell=max(16, min(shape) // 4))
    assert cells.all(), f"unmarked cells:\n{cells.astype(int)}"


@pytest.mark.parametrize("value", [0, 255], ids=["black", "white"])
def test_visible_mark_shows_on_flat_dark_and_light_images(value):
    flat = np.full((256, 256, 3), value, dtype=np.uint8)
    assert changed_cells(flat, apply_visible_watermark(flat), cell=64).all()


def test_visible_mark_scales_with_the_image():
    # The share of marked pixels stays about the same from 128 px to 1024 px: the letters
    # grow with the image instead of shrinking into a fine, unreadable texture.
    shares = []
    for side in (128, 1024):
        original = textured(side, side)
        changed = np.any(original != apply_visible_watermark(original), axis=2)
        shares.append(changed.mean())
    assert all(0.1 < s < 0.7 for s in shares), shares
    assert abs(shares[0] - shares[1]) < 0.15, shares


def test_visible_mark_is_deterministic_and_leaves_the_input_alone():
    original = textured(300, 200)
    before = original.copy()
    first = apply_visible_watermark(original)
    assert np.array_equal(first, apply_visible_watermark(original))
    assert np.array_equal(original, before)
    assert not np.array_equal(first, original)


def test_visible_mark_text_and_pil_input():
    original = textured(256, 256)
    custom = apply_visible_watermark(original, text="ACME STUDIO")
    assert not np.array_equal(custom, apply_visible_watermark(original))
    from_pil = apply_visible_watermark(Image.fromarray(original), text=DEFAULT_VISIBLE_TEXT)
    assert np.array_equal(from_pil, apply_visible_watermark(original))


def test_visible_mark_layers_are_kept_per_size_and_give_the_same_pixels(monkeypatch):
    """A size seen before reuses its rendered layer (one blend, no text drawn); the pixels
    are those of a fresh layer; other sizes, texts and opacities get their own; a size past
    the kept limit is drawn each time and not kept."""
    from pipelines import watermark

    watermark._overlay.kept.cache_clear()
    image = textured(320, 240)
    fresh = watermark._visible_overlay(240, 320, DEFAULT_VISIBLE_TEXT, 0.35)
    expected = np.asarray(
        Image.alpha_composite(Image.fromarray(image).convert("RGBA"), fresh).convert("RGB")
    )
    first = apply_visible_watermark(image)
    again = apply_visible_watermark(image[::-1].copy())  # other pixels, the same size
    info = watermark._overlay.kept.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    assert np.array_equal(first, expected)
    assert not np.array_equal(apply_visible_watermark(image, text="ACME"), first)
    assert not np.array_equal(apply_visible_watermark(image, opacity=0.6), first)
    assert not np.array_equal(again, first)
    assert watermark._overlay.kept.cache_info().misses == 3

    monkeypatch.setattr(watermark._overlay, "max_pixels", 320 * 240 - 1)
    assert np.array_equal(apply_visible_watermark(image), first)
    assert watermark._overlay.kept.cache_info().currsize == 3  # drawn, not kept


# --- invisible -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(256, 256), (512, 512), (768, 1024)], ids=str)
def test_invisible_mark_decodes_the_exact_payload(shape):
    original = textured(*shape)
    payload = provenance_payload("asset-0001")
    marked = embed_invisible_watermark(original, payload)
    assert marked.shape == original.shape and marked.dtype == np.uint8
    assert not np.array_equal(marked, original)
    assert psnr(original, marked) > 30  # invisible: a small change everywhere
    assert decode_invisible_watermark(marked) == payload


def test_invisible_mark_survives_png_round_trip():
    payload = provenance_payload(b"request-hash")
    marked = embed_invisible_watermark(textured(512, 512, seed=3), payload)
    data = encode_png(marked, {"kiln:asset": "asset-0002"})
    with Image.open(io.BytesIO(data)) as reopened:
        pixels = np.asarray(reopened.convert("RGB"))
    assert np.array_equal(pixels, marked)
    assert decode_invisible_watermark(pixels) == payload


def test_invisible_mark_is_deterministic():
    original = textured(512, 384, seed=5)
    payload = provenance_payload("asset-0003")
    first = embed_invisible_watermark(original, payload)
    assert np.array_equal(first, embed_invisible_watermark(original.copy(), payload))
    other = embed_invisible_watermark(original, provenance_payload("asset-0004"))
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("payload", [b"\x00", b"\xff" * MAX_PAYLOAD_BYTES, b"kiln"], ids=len)
def test_invisible_mark_payload_lengths(payload):
    marked = embed_invisible_watermark(textured(512, 512, seed=7), payload)
    assert decode_invisible_watermark(marked, num_bytes=len(payload)) == payload


@pytest.mark.parametrize("shape", [(255, 512), (512, 255), (64, 64)], ids=str)
def test_invisible_mark_is_skipped_below_256_px(shape):
    # Documented: below INVISIBLE_MIN_SIDE on the shorter side no mark is embedded, as
    # SDXL's own watermarker skips small images; the pixels come back unchanged.
    assert INVISIBLE_MIN_SIDE == 256
    original = textured(*shape)
    assert not carries_invisible_watermark(original)
    out = embed_invisible_watermark(original, provenance_payload("small"))
    assert np.array_equal(out, original)
    assert out is not original
    assert decode_invisible_watermark(out) is None


@pytest.mark.parametrize("shape", [(256, 256, 3), (300, 457, 3), (512, 384, 3)])
def test_the_librarys_decoder_reads_kilns_mark_and_kilns_decoder_is_the_librarys(shape):
    """Kiln embeds with an encoder of its own (it moves colours far less) in
    invisible-watermark's dwtDct format: the library reads it (from float BGR, as
    diffusers' SDXL watermarker hands it images), and Kiln's array-at-once decoder reads
    the library's bits from marked and unmarked images alike."""
    from imwatermark import WatermarkDecoder

    from pipelines.dwt_dct_mark import decode_bits

    rng = np.random.default_rng(shape[1])
    original = rng.integers(0, 256, shape).astype(np.uint8)
    payload = bytes(rng.integers(0, 256, 6, dtype=np.uint8))
    marked = embed_invisible_watermark(original, payload)
    for image in (marked, original):
        bgr = image[:, :, ::-1].astype(np.float32)
        expected = WatermarkDecoder("bytes", 48).decode(bgr.copy(), "dwtDct")
        assert np.packbits(decode_bits(bgr, 48)).tobytes() == expected
    bgr = marked[:, :, ::-1].astype(np.float32)
    assert WatermarkDecoder("bytes", 48).decode(bgr, "dwtDct") == payload


@pytest.mark.parametrize(
    ("shape", "scale"), [((8, 8), 1.0), ((256, 384), 255.0), ((300, 212), 1e-3), ((64, 1024), 1e4)]
)
def test_kilns_haar_ll_is_pywavelets_bit_for_bit(shape, scale):
    """The decoder's LL band (a strided sum) is exactly PyWavelets' ``dwt2`` approximation
    band, on float32 frames of any magnitude: the library's bits, not nearly them."""
    import pywt

    from pipelines.dwt_dct_mark import haar_ll

    rng = np.random.default_rng(shape[0])
    frame = ((rng.random(shape) - 0.5) * scale).astype(np.float32)
    expected, _ = pywt.dwt2(frame, "haar")
    got = haar_ll(frame)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_the_invisible_marks_pixels_are_unchanged_by_the_faster_encoder():
    """The marked pixels of two fixed images, as the encoder before its speed-up (issue
    19: frame-level 2x2 sums instead of per-block transposes, candidates compared at
    once) made them, byte for byte: the speed-up moved no pixel."""
    import hashlib

    rng = np.random.default_rng(384)
    noise = rng.integers(0, 256, (384, 512, 3)).astype(np.uint8)
    ramp = np.linspace(40, 210, 512)
    smooth = np.add.outer(np.linspace(30, 220, 384), ramp[::-1]) / 2
    graded = np.clip(np.stack([smooth] * 3, axis=-1) + rng.normal(0, 6, (384, 512, 3)), 0, 255)
    digests = [
        hashlib.sha256(embed_invisible_watermark(image, b"kiln01").tobytes()).hexdigest()
        for image in (noise, graded.astype(np.uint8))
    ]
    assert digests == [
        "4198dab79d11033a82e663cf6897ccd7f146ec3d36cad742ce08f3935b5b37f2",
        "3ba6495160fb4ba91dc1461ca6bf3ddb4b32c701879d6a9fc2b3591397e3e36c",
    ]


def test_strongest_first_is_a_stable_descending_sorts_start():
    """The carriers' ranking without a full sort: the same indices as a stable descending
    argsort's first ones, ties (common in flat areas) in index order."""
    from pipelines.dwt_dct_mark import _strongest_first

    rng = np.random.default_rng(5)
    values = np.round(rng.random((2000, 16)) * 4) / 4  # few distinct values: many ties
    values[:, 0] = -1.0
    values[:7] = 2.0  # rows of one value throughout
    expected = np.argsort(-values, axis=1, kind="stable")[:, :4]
    assert np.array_equal(_strongest_first(values, 4), expected)
    assert np.array_equal(values[:7], np.full((7, 16), 2.0))  # its input left alone


def test_the_marks_dither_is_kept_for_a_few_sizes_only_up_to_its_limit(monkeypatch):
    """The ordered dither tiled over an image is kept per size (a server marks the same
    few), but never past its ``max_pixels``: an 8K export's would hold 130 MB."""
    from pipelines import dwt_dct_mark as mark

    mark._dither_over.kept.cache_clear()
    small = mark._dither_over(300, 260)
    assert small is mark._dither_over(300, 260) and not small.flags.writeable
    assert np.array_equal(small[:8, :8], mark._DITHER) and small.shape == (300, 260)
    assert np.array_equal(small[296:300, 256:260], mark._DITHER[:4, :4])
    monkeypatch.setattr(mark._dither_over, "max_pixels", 300 * 260 - 1)
    large = mark._dither_over(300, 260)
    assert large is not small and np.array_equal(large, small)
    assert mark._dither_over.kept.cache_info().currsize == 1


@pytest.mark.parametrize("shape", [(8, 8, 3), (301, 389, 3)])
def test_float_bgr_is_the_pixels_reversed_in_float32(shape):
    from pipelines.dwt_dct_mark import float_bgr

    rng = np.random.default_rng(shape[0])
    pixels = rng.integers(0, 256, shape).astype(np.uint8)
    for image in (pixels, pixels[:, ::-1], np.asfortranarray(pixels)):  # any layout
        got = float_bgr(image)
        expected = image[:, :, ::-1].astype(np.float32)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert np.array_equal(got, expected)


def chroma_textured(side: int, seed: int = 0) -> np.ndarray:
    """Mid-tone colours with strong pixel-to-pixel chroma noise, as a tiny model's (and a
    busy photograph's) pixels have: the library's encoder transposed every 2x2 block of
    this chroma, payload or not."""
    rng = np.random.default_rng(seed)
    base = np.array([120.0, 110.0, 100.0]) + rng.normal(0, 25, (side, side, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def photograph(name: str, side: int) -> np.ndarray:
    """A ``side``-px centre crop of a scikit-image colour photograph."""
    from skimage import data

    image = np.asarray(getattr(data, name)())[..., :3]
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return np.ascontiguousarray(image[top : top + side, left : left + side])


@pytest.mark.parametrize(
    "name, side",
    [("coffee", 256), ("rocket", 256), ("retina", 512), ("astronaut", 512), ("texture", 256)],
)
def test_the_invisible_mark_reads_back_and_leaves_the_colours_where_they_were(name, side):
    from agentic.colour import rgb_to_lab
    from agentic.measures import clipped_share

    original = chroma_textured(side) if name == "texture" else photograph(name, side)
    payload = provenance_payload(f"{name}-{side}")
    marked = embed_invisible_watermark(original, payload)
    with Image.open(io.BytesIO(encode_png(marked, {}))) as reopened:
        assert decode_invisible_watermark(np.asarray(reopened.convert("RGB"))) == payload
    change = np.abs(marked.astype(np.int16) - original.astype(np.int16))
    # Measured: blue 0.66-1.17 codes on average, at most 24, red untouched; the library's
    # encoder (up to six passes): 2.3-16.6 codes, up to 175, and coffee, rocket and
    # retina did not read back.
    assert change[..., 2].mean() < 1.5 and change[..., 0].max() <= 1 and change.max() <= 30
    before, after = rgb_to_lab(original).reshape(-1, 3), rgb_to_lab(marked).reshape(-1, 3)
    # No 8x8 block's mean colour moves, so the image's does not: measured <= 0.02 Lab
    # (the library's: up to 2.6), standard deviations <= 0.65 (up to 2.6).
    assert np.abs(after.mean(axis=0) - before.mean(axis=0)).max() < 0.15
    assert np.abs(after.std(axis=0) - before.std(axis=0)).max() < 1.0
    assert clipped_share(marked) <= clipped_share(original)  # no new 0 or 255


@pytest.mark.parametrize("value", [0, 255], ids=["black", "white"])
def test_the_invisible_mark_reads_back_from_a_flat_black_or_white_image(value):
    # No room for a chroma-only change: the second pass moves luminance where it must.
    flat = np.full((256, 256, 3), value, dtype=np.uint8)
    payload = provenance_payload("flat")
    assert decode_invisible_watermark(embed_invisible_watermark(flat, payload)) == payload


def test_provenance_payload():
    assert len(provenance_payload("asset")) == PAYLOAD_BYTES
    assert provenance_payload("asset") == provenance_payload(b"asset")
    assert provenance_payload("asset") != provenance_payload("asset2")


# --- PNG metadata --------------------------------------------------------------------


def test_png_metadata_round_trips():
    pixels = textured(64, 96)
    metadata = {
        "kiln:model": "tiny-sdxl",
        "kiln:seed": "1234567",
        "kiln:asset": "asset-0005",
        "kiln:prompt": "a café at dusk, 夕暮れの喫茶店",  # not Latin-1: stored as iTXt
        "kiln:params": json.dumps({"steps": 2, "guidance": 5.0}),
    }
    data = encode_png(pixels, metadata)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert read_png_metadata(data) == metadata
    assert list(read_png_metadata(data)) == list(metadata)
    with Image.open(io.BytesIO(data)) as reopened:
        assert np.array_equal(np.asarray(reopened), pixels)
    assert encode_png(pixels, metadata) == data  # deterministic bytes


def test_png_without_metadata_reads_empty():
    assert read_png_metadata(encode_png(textured(8, 8), {})) == {}


# --- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((300, 300, 3), dtype=np.float32), "uint8 HxWx3"),
        (np.zeros((300, 300), dtype=np.uint8), "uint8 HxWx3"),
        (np.zeros((300, 300, 4), dtype=np.uint8), "uint8 HxWx3"),
        (np.zeros((0, 300, 3), dtype=np.uint8), "non-empty"),
        (Image.new("RGBA", (300, 300)), "RGB image"),
        ([[0, 0, 0]], "uint8 HxWx3 array or RGB image"),
    ],
    ids=["float", "gray", "rgba", "empty", "pil-rgba", "list"],
)
def test_bad_images_are_refused(image, match):
    with pytest.raises(ValueError, match=match):
        apply_visible_watermark(image)
    with pytest.raises(ValueError, match=match):
        embed_invisible_watermark(image, b"kiln")
    with pytest.raises(ValueError, match=match):
        decode_invisible_watermark(image)
    with pytest.raises(ValueError, match=match):
        encode_png(image, {})


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"", "1-8 bytes"),
        (b"x" * (MAX_PAYLOAD_BYTES + 1), "1-8 bytes .64 bits., got 9"),
        ("asset-id", "must be bytes"),
    ],
    ids=["empty", "too-long", "str"],
)
def test_bad_payloads_are_refused(payload, match):
    with pytest.raises(ValueError, match=match):
        embed_invisible_watermark(textured(256, 256), payload)


def test_bad_watermark_arguments_are_refused():
    image = textured(256, 256)
    with pytest.raises(ValueError, match="text must not be empty"):
        apply_visible_watermark(image, text="  ")
    with pytest.raises(ValueError, match="opacity"):
        apply_visible_watermark(image, opacity=0)
    with pytest.raises(ValueError, match="num_bytes"):
        decode_invisible_watermark(image, num_bytes=MAX_PAYLOAD_BYTES + 1)


@pytest.mark.parametrize(
    "metadata, match",
    [
        ({"": "x"}, "1-79 characters"),
        ({"k" * 80: "x"}, "1-79 characters"),
        ({" seed": "x"}, "spaces"),
        ({"seed\n": "x"}, "printable Latin-1"),
        ({"模型": "x"}, "printable Latin-1"),
        ({"seed": 7}, "must be a str"),
        ({"seed": "7\x008"}, "NUL"),
    ],
    ids=["empty-key", "long-key", "space", "newline", "non-latin1-key", "int", "nul"],
)
def test_bad_png_metadata_is_refused(metadata, match):
    with pytest.raises(ValueError, match=match):
        encode_png(textured(8, 8), metadata)


def test_read_png_metadata_refuses_other_data():
    buf = io.BytesIO()
    Image.fromarray(textured(8, 8)).save(buf, format="JPEG")
    with pytest.raises(ValueError, match="expected PNG data, got JPEG"):
        read_png_metadata(buf.getvalue())
    with pytest.raises(ValueError, match="expected PNG data"):
        read_png_metadata(b"not an image")


# --- diffusers' own SDXL watermarker stays off ---------------------------------------


def test_shipped_sdxl_config_turns_diffusers_watermarker_off():
    config = resources.files("weights").joinpath("configs", "sdxl", "model_index.json")
    assert json.loads(config.read_text())["add_watermarker"] is False


def test_loaded_sdxl_engines_have_no_diffusers_watermarker(engines):
    # With invisible-watermark installed diffusers would add SDXL's own mark to every image
    # of a folder that does not set add_watermarker false; weights/loading.py turns it off.
    sdxl = [engine for engine in engines.values() if engine.spec.family == "sdxl"]
    assert sdxl
    assert all(engine.pipe.watermark is None for engine in sdxl)
