"""Images, masks and the app shared by the image-input tests (edits on the native and
OpenAI routes, reference generations); their app and client fixtures are in conftest.py
(``image_app``, ``alice``)."""

from __future__ import annotations

import base64
import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from pipelines.edit_tools import EDIT_DILATE, EDIT_FEATHER, ERASE_DILATE, ERASE_FEATHER


def photo(width: int = 100, height: int = 75, seed: int = 0) -> np.ndarray:
    """A smooth colourful image (not noise), of a size off the model's grid."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def box_mask(width: int = 100, height: int = 75) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[20:50, 30:70] = 255
    return mask


def outside_feather(mask: np.ndarray, erase: bool) -> np.ndarray:
    """Pixels certainly outside the dilated + feathered mask (a margin past both radii)."""
    long_side = max(mask.shape)
    rules = (ERASE_DILATE, ERASE_FEATHER) if erase else (EDIT_DILATE, EDIT_FEATHER)
    margin = sum(max(floor, round(long_side * fraction)) for fraction, floor in rules) + 1
    grown = np.zeros_like(mask, dtype=bool)
    ys, xs = np.nonzero(mask)
    grown[
        max(0, ys.min() - margin) : ys.max() + margin + 1,
        max(0, xs.min() - margin) : xs.max() + margin + 1,
    ] = True
    return ~grown


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def png_b64(pixels: np.ndarray) -> str:
    return base64.b64encode(png(pixels)).decode()


def decode(text: str) -> np.ndarray:
    """A response's base64 image as uint8 RGB pixels."""
    with Image.open(io.BytesIO(base64.b64decode(text))) as image:
        return np.asarray(image.convert("RGB"))


def balance(client: TestClient) -> int:
    return client.get("/v1/credits").json()["balance"]
