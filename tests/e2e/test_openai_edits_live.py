"""The official ``openai`` SDK's ``images.edit`` (one image, several images, with a
mask) and ``images.create_variation`` against the live server."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from openai import BadRequestError, OpenAI
from PIL import Image

MODEL = "tiny-sd15"


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def picture(seed: int, size: int = 96) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(seed)
    base = np.stack([x * 2.5, y * 2.5, (x + y) * 1.2], -1) + rng.normal(0, 4, (size, size, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def alpha_mask(size: int = 96) -> tuple[np.ndarray, bytes]:
    """A box to edit, as Kiln's white mask and as OpenAI's alpha-0 PNG."""
    white = np.zeros((size, size), np.uint8)
    white[30:60, 30:60] = 255
    rgba = np.full((size, size, 4), 255, np.uint8)
    rgba[..., 3] = np.where(white == 255, 0, 255)
    return white, png(rgba)


def decode(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def client(server, tenant) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=tenant.key, max_retries=0, timeout=120)


def test_sdk_edit_with_a_mask_keeps_the_rest_of_the_image(client):
    image = picture(1)
    white, mask = alpha_mask()
    result = client.images.edit(
        model=MODEL,
        image=("in.png", png(image), "image/png"),
        mask=("mask.png", mask, "image/png"),
        prompt="a brass lantern",
        n=2,
        extra_body={"seed": 4},
    )
    assert len(result.data) == 2
    out = decode(result.data[0].b64_json)
    far = np.ones_like(white, dtype=bool)
    far[20:70, 20:70] = False  # well outside the mask and its feather
    np.testing.assert_array_equal(out[far], image[far])


def test_sdk_edit_with_several_images(client):
    images = [("a.png", png(picture(2)), "image/png"), ("b.png", png(picture(3)), "image/png")]
    result = client.images.edit(model=MODEL, image=images, prompt="the two, together")
    assert len(result.data) == 1
    assert decode(result.data[0].b64_json).shape == (96, 96, 3)


def test_sdk_variation(client):
    result = client.images.create_variation(
        model=MODEL, image=("in.png", png(picture(4)), "image/png"), n=2, size="128x128"
    )
    assert len(result.data) == 2
    assert decode(result.data[0].b64_json).shape == (128, 128, 3)


def test_sdk_edit_with_a_mask_of_another_size_is_a_bad_request(client):
    _, mask = alpha_mask(64)
    with pytest.raises(BadRequestError) as error:
        client.images.edit(
            model=MODEL,
            image=("in.png", png(picture(5)), "image/png"),
            mask=("mask.png", mask, "image/png"),
            prompt="x",
        )
    assert error.value.body["param"] == "mask"
