"""FLUX edits through the live server (issue 21): FLUX.1's Fill sibling sleeps at zero
replicas (``min_replicas = 0``) and wakes on the first replace on ``tiny-flux1`` (503
``model_loading`` with ``retry-after`` until its replica is up), which then keeps the
input's pixels outside the feathered mask exactly; [klein] edits by instruction in its own
replica. The in-process app tests are tests/serving/test_flux_edits_api.py."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from test_flux_live import _awake, _pixels

from pipelines.edit_tools import EDIT_DILATE, EDIT_FEATHER

pytestmark = pytest.mark.slow


def _b64(pixels: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_flux_edits_wake_their_models_and_keep_the_pixels_outside_the_mask(http):
    y, x = np.mgrid[0:80, 0:112]
    image = np.stack([x * 2, y * 3, (x + y)], -1).astype(np.uint8)
    mask = np.zeros((80, 112), np.uint8)
    mask[20:50, 30:70] = 255
    body = {"tool": "replace", "model": "tiny-flux1", "image": _b64(image),
            "mask": _b64(mask), "prompt": "a red lantern", "seed": 3}  # fmt: skip
    r = _awake(http, body, "/v1/edits")
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["model"] == "tiny-flux1-fill" and result["credits_charged"] == 2
    out = _pixels(result["data"][0]["b64_json"])
    margin = sum(max(floor, round(112 * frac)) for frac, floor in (EDIT_DILATE, EDIT_FEATHER))
    keep = np.ones_like(mask, bool)
    keep[20 - margin - 1 : 50 + margin + 1, 30 - margin - 1 : 70 + margin + 1] = False
    np.testing.assert_array_equal(out[keep], image[keep])
    assert np.abs(out[mask == 255].astype(int) - image[mask == 255]).mean() > 5

    body = {"tool": "instruct", "model": "tiny-flux2-klein", "image": _b64(image),
            "instruction": "make it night", "seed": 2}  # fmt: skip
    r = _awake(http, body, "/v1/edits")
    assert r.status_code == 200, r.text
    assert _pixels(r.json()["data"][0]["b64_json"]).shape == image.shape
