"""Generations guided by a reference image through the real app: img2img from the
reference, and bad references refused for free (a style image's rights as a reference:
test_asset_rights.py)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from edit_samples import decode, photo, png_b64
from fastapi.testclient import TestClient

GEN = "/v1/generations"


def generate(client: TestClient, reference: dict | None, seed: int = 7) -> dict:
    body = {"model": "tiny-sd15", "prompt": "a quiet street", "seed": seed, "steps": 8}
    if reference is not None:
        body["reference"] = reference
    response = client.post(GEN, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_reference_steers_the_image_as_far_as_its_strength_says(alice):
    first, second = photo(160, 120, seed=1), 255 - photo(160, 120, seed=2)

    def image(reference: np.ndarray, strength: float) -> np.ndarray:
        ref = {"image": png_b64(reference), "strength": strength}
        return decode(generate(alice, ref)["data"][0]["b64_json"])

    low = np.abs(image(first, 0.25) - image(second, 0.25)).mean()
    full = np.abs(image(first, 1.0) - image(second, 1.0)).mean()
    assert low > 2 * full
    plain = decode(generate(alice, None)["data"][0]["b64_json"])
    assert plain.shape == (128, 128, 3) and not np.array_equal(plain, image(first, 0.25))


@pytest.mark.parametrize(
    ("reference", "status", "param"),
    [
        ({"image": base64.b64encode(b"nope").decode()}, 400, "reference"),
        ({}, 400, "reference"),
        ({"image": png_b64(photo()), "asset_id": "ast_x"}, 400, "reference"),
        ({"asset_id": "ast_missing"}, 404, None),
        ({"image": png_b64(photo()), "strength": 0}, 400, "reference.strength"),
        ({"image": png_b64(photo()), "mode": "magic"}, 400, "reference.mode"),
    ],
)
def test_bad_references_are_refused_for_free(alice, reference, status, param):
    body = {"model": "tiny-sd15", "prompt": "x", "reference": reference}
    response = alice.post(GEN, json=body)
    assert response.status_code == status, response.text
    if param is not None:
        assert response.json()["error"]["param"] == param
    assert alice.get("/v1/credits").json()["balance"] == 100
    assert alice.get("/v1/assets").json()["data"] == []


def test_an_ip_adapter_reference_changes_the_image_and_leaves_no_trace(alice):
    plain = decode(generate(alice, None)["data"][0]["b64_json"])
    ref = {"image": png_b64(photo(160, 120, seed=3)), "mode": "ip_adapter", "scale": 1.0}
    steered = decode(generate(alice, ref)["data"][0]["b64_json"])
    assert not np.array_equal(plain, steered)
    again = decode(generate(alice, None)["data"][0]["b64_json"])
    np.testing.assert_array_equal(plain, again)  # the adapter's scale did not leak
