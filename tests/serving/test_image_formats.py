"""The input decoder's formats and colour modes (serving/core/image_inputs.py): still PNG,
JPEG (MPO included) and WebP only, every other format and every animation a 400
``unsupported_image_format`` naming the field on every route, charging and storing
nothing; colour modes made RGB/RGBA correctly (CMYK, 16-bit, LAB, palette with
transparency, grey with alpha, 1-bit) and EXIF orientation applied before the pixels
are used. Files are made here with PIL, or crafted where PIL cannot write them."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from edit_samples import balance, photo, png_b64
from PIL import Image
from secrets_for_tests import TEST_SECRET

from pipelines.params import ParamError
from serving.core.image_inputs import UnsupportedImageFormat, decode_image, finish_pixels
from serving.core.jobs.style_training import decode_training_image
from serving.core.settings import Settings
from serving.http.errors import api_error_for


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("formats"), secret=TEST_SECRET)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def rgb(width: int = 16, height: int = 16) -> Image.Image:
    return Image.fromarray(photo(width, height))


def iso_media(brand: bytes) -> bytes:
    """The start of an ISO media file (HEIC/AVIF): an ``ftyp`` box, which PIL without a
    HEIF plugin cannot open."""
    return struct.pack(">I", 24) + b"ftyp" + brand + b"\0\0\0\0mif1" + brand


def png_16bit_rgb(pixels: np.ndarray) -> bytes:
    """A 48-bit RGB PNG (PIL writes none): IHDR, one IDAT, IEND."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data)
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    height, width, _ = pixels.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


REFUSED = {
    "GIF": lambda: encoded(rgb(), "GIF"),
    "BMP": lambda: encoded(rgb(), "BMP"),
    "TIFF": lambda: encoded(rgb(), "TIFF"),
    "LAB TIFF": lambda: encoded(rgb().convert("LAB"), "TIFF"),
    "AVIF": lambda: encoded(rgb(), "AVIF"),
    "HEIC": lambda: iso_media(b"heic"),
    "ICO": lambda: encoded(rgb(), "ICO"),
    # Writing EPS needs ghostscript; its header is enough for PIL to name it.
    "EPS": lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n",
}


@pytest.mark.parametrize("name", REFUSED)
def test_formats_other_than_png_jpeg_webp_are_refused_by_name(settings, name):
    fmt = name.split()[-1]
    if fmt == "AVIF":
        pytest.importorskip("PIL.AvifImagePlugin", reason="this PIL writes no AVIF")
    with pytest.raises(UnsupportedImageFormat) as refused:
        decode_image(REFUSED[name](), "reference.image", settings)
    error = api_error_for(refused.value)
    assert (error.status, error.code, error.param) == (
        400, "unsupported_image_format", "reference.image",
    )  # fmt: skip
    assert fmt in error.message and "PNG, JPEG and WebP" in error.message


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animations_are_refused_not_cut_to_a_frame(settings, fmt):
    frames = [Image.new("RGB", (16, 16), (40 * i, 0, 0)) for i in range(3)]
    data = encoded(frames[0], fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedImageFormat, match="animated .*3 frames"):
        decode_image(data, "image", settings)
    still = decode_image(encoded(frames[1], fmt, lossless=True), "image", settings)
    assert still.getpixel((0, 0)) == (40, 0, 0)


def test_a_phones_mpo_is_a_jpeg_and_its_first_picture_is_used(settings):
    first, depth = Image.new("RGB", (16, 16), (200, 40, 40)), Image.new("RGB", (16, 16))
    data = encoded(first, "MPO", save_all=True, append_images=[depth])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    image = decode_image(data, "image", settings)
    assert np.abs(np.asarray(image).astype(int) - (200, 40, 40)).max() < 8


def test_empty_and_non_image_bytes_are_a_400_naming_the_field(settings):
    for data, words in ((b"", "is empty"), (b"<svg/>", "not an image")):
        with pytest.raises(ParamError, match=words) as refused:
            decode_image(data, "mask", settings)
        assert api_error_for(refused.value).code == "invalid_value"
        assert refused.value.param == "mask"


def test_training_uploads_take_the_same_formats(settings):
    with pytest.raises(UnsupportedImageFormat) as refused:
        decode_training_image(encoded(rgb(), "GIF"), 2, settings)
    assert refused.value.param == "images[2]"


# Colour modes


def test_cmyk_jpeg_becomes_rgb(settings):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red in print
    image = decode_image(encoded(cmyk, "JPEG", quality=95), "image", settings)
    assert image.mode == "RGB"
    assert np.abs(np.asarray(image).astype(int) - (255, 0, 0)).max() < 8


def test_16_bit_grey_is_scaled_not_clipped(settings):
    grey = np.linspace(0, 65535, 64 * 8).astype(np.uint16).reshape(8, 64)
    data = encoded(Image.fromarray(grey), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    image = np.asarray(decode_image(data, "image", settings))
    np.testing.assert_array_equal(image[..., 0], grey >> 8)  # PIL's convert gives 255s
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255


def test_16_bit_rgb_keeps_its_colours(settings):
    pixels = np.zeros((4, 4, 3), np.uint16)
    pixels[..., 0], pixels[..., 2] = 0xC812, 0x3400
    image = decode_image(png_16bit_rgb(pixels), "image", settings)
    assert image.mode == "RGB" and image.getpixel((1, 1)) == (0xC8, 0, 0x34)


def test_lab_pixels_become_srgb(settings):
    lab = Image.new("LAB", (8, 8), (128, 128, 128))  # L* 50, neutral: sRGB mid-grey
    image = finish_pixels(lab, "image")
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (119, 119, 119)


def test_a_palette_with_transparency_keeps_it_as_alpha(settings):
    indices = np.zeros((8, 8), np.uint8)
    indices[:, 4:] = 1
    palette = Image.fromarray(indices, "P")
    palette.putpalette([250, 10, 10, 10, 10, 250])
    data = encoded(palette, "PNG", transparency=1)  # index 1 (blue) is see-through
    with_alpha = np.asarray(decode_image(data, "mask", settings, keep_alpha=True))
    assert with_alpha.shape == (8, 8, 4)
    assert (with_alpha[:, :4, 3] == 255).all() and (with_alpha[:, 4:, 3] == 0).all()
    plain = decode_image(data, "image", settings)
    assert plain.mode == "RGB" and plain.getpixel((0, 0)) == (250, 10, 10)


def test_grey_with_alpha_and_1_bit_images(settings):
    la = Image.new("LA", (4, 4), (90, 0))
    assert decode_image(encoded(la, "PNG"), "i", settings, keep_alpha=True).getpixel((0, 0)) == (
        90,
        90,
        90,
        0,
    )
    assert decode_image(encoded(la, "PNG"), "i", settings).getpixel((0, 0)) == (90, 90, 90)
    bits = Image.new("1", (4, 4), 1)
    assert decode_image(encoded(bits, "PNG"), "i", settings).getpixel((0, 0)) == (255,) * 3


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_applied_first(settings, fmt):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red, right half blue as stored
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = encoded(Image.fromarray(pixels), fmt, exif=exif, quality=95, lossless=True)
    image = np.asarray(decode_image(data, "image", settings)).astype(int)
    assert image.shape == (40, 20, 3)  # upright: portrait
    assert np.abs(image[5, 10] - (255, 0, 0)).max() < 16  # the left edge is now the top
    assert np.abs(image[35, 10] - (0, 0, 255)).max() < 16


def test_pixels_that_cannot_be_made_rgb_are_a_400(settings):
    odd = Image.new("La", (4, 4))  # premultiplied grey: PIL converts it to nothing
    with pytest.raises(ParamError, match="La pixels cannot be made RGB") as refused:
        finish_pixels(odd, "image")
    assert api_error_for(refused.value).status == 400


# Every route refuses them the same way, charging and storing nothing.

GIF = base64.b64encode(encoded(rgb(), "GIF")).decode()
FAST = {"model": "tiny-sd15", "resolution": "128px", "steps": 2}
ROUTES = [
    ("/v1/edits", {"tool": "recreate", "image": GIF}, "image"),
    (
        "/v1/edits",
        {"tool": "replace", "prompt": "x", "image": png_b64(photo(16, 16)), "mask": GIF},
        "mask",
    ),
    ("/v1/generations", {**FAST, "prompt": "x", "reference": {"image": GIF}}, "reference"),
    (
        "/v1/generations",
        {**FAST, "image_to_prompt": {"image": GIF}},
        "image_to_prompt.image",
    ),
    ("/v1/image-to-prompt", {"image": GIF}, "image"),
    ("/v1/pins", {"kind": "product", "name": "mug", "images": [GIF]}, "images.0"),
    ("/v1/agentic/extract", {"references": [{"image": GIF}]}, "references.0.image"),
]


@pytest.mark.parametrize(("route", "body", "param"), ROUTES)
def test_every_json_route_refuses_other_formats_for_free(alice, route, body, param):
    response = alice.post(route, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_image_format", param)
    assert balance(alice) == 100 and alice.get("/v1/assets").json()["data"] == []
    assert alice.get("/v1/pins").json()["data"] == []


@pytest.mark.parametrize(
    ("route", "files", "param"),
    [
        ("/v1/images/edits", {"image": ("a.gif", base64.b64decode(GIF))}, "image"),
        (
            "/v1/images/edits",
            {"image": ("a.png", encoded(rgb(), "PNG")), "mask": ("m.gif", base64.b64decode(GIF))},
            "mask",
        ),
        ("/v1/images/variations", {"image": ("a.gif", base64.b64decode(GIF))}, "image"),
    ],
)
def test_openai_uploads_refuse_other_formats_for_free(alice, route, files, param):
    data = {"prompt": "x"} if route.endswith("edits") else {}
    response = alice.post(route, files=files, data=data)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_image_format", param)
    assert balance(alice) == 100 and alice.get("/v1/assets").json()["data"] == []


def test_a_rotated_phone_photo_is_edited_upright(alice):
    exif = Image.Exif()
    exif[0x0112] = 6
    jpeg = encoded(Image.fromarray(photo(100, 75)), "JPEG", exif=exif, quality=90)
    body = {"tool": "recreate", "image": base64.b64encode(jpeg).decode(), "steps": 2}
    response = alice.post("/v1/edits", json={"model": "tiny-sd15", **body})
    assert response.status_code == 200, response.text
    image = response.json()["data"][0]
    assert (image["width"], image["height"]) == (75, 100)
