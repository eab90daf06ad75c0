"""The issue-5..8 features through the live server (Ray Serve replicas, the CLIP
deployment, the model replicas' image embedding): a pin made and used, a reference in
ip_adapter mode, image-to-prompt, an agentic generation, an edit, an upscale and a
background removal, each charged as its price says."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from live_accounts import create_tenant
from PIL import Image


def b64_png(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def picture(seed: int, size: int = 96) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(seed)
    base = np.stack([x * 2.5, y * 2.5, (x + y) * 1.2], -1) + rng.normal(0, 4, (size, size, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def studio(server) -> httpx.Client:
    tenant = create_tenant(server.url, "features studio", 200)
    with httpx.Client(base_url=server.url, timeout=180, headers=tenant.headers) as client:
        yield client


def balance(client: httpx.Client) -> int:
    return ok(client.get("/v1/credits"))["balance"]


def ok(response: httpx.Response) -> dict:
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_a_pin_is_made_in_a_replica_and_steers_a_generation(studio):
    pin = ok(studio.post("/v1/pins", json={"kind": "character", "name": "Mira",
                                           "images": [b64_png(picture(1))]}))  # fmt: skip
    body = {"model": "tiny-sd15", "prompt": "Mira in a cafe", "seed": 3}

    def pixels(extra: dict) -> np.ndarray:
        """The generated image's pixels (the PNG bytes differ by their asset id)."""
        answer = ok(studio.post("/v1/generations", json={**body, **extra}))
        with Image.open(io.BytesIO(base64.b64decode(answer["data"][0]["b64_json"]))) as image:
            return np.asarray(image.convert("RGB"))

    plain = pixels({})
    assert not np.array_equal(pixels({"pins": [pin["id"]]}), plain)
    reference = {"image": b64_png(picture(2)), "mode": "ip_adapter", "scale": 0.8}
    assert not np.array_equal(pixels({"reference": reference}), plain)
    np.testing.assert_array_equal(pixels({}), plain)  # nothing leaked into the next call


def test_image_to_prompt_runs_on_the_clip_deployment(studio):
    before = balance(studio)
    answer = ok(studio.post("/v1/image-to-prompt", json={"image": b64_png(picture(3))}))
    assert answer["prompt"] and answer["terms"]
    assert balance(studio) == before - 1


def test_an_agentic_generation_costs_four_credits(studio):
    before = balance(studio)
    body = {
        "prompt": "a harbour at dusk",
        "model": "tiny-sd15",
        "references": [{"image": b64_png(picture(4))}, {"image": b64_png(picture(5))}],
        "n": 1,
    }
    answer = ok(studio.post("/v1/agentic/generations", json=body))
    assert answer["data"] and answer["recipe"] and answer["trace"]
    assert balance(studio) == before - 4


def test_an_edit_then_an_upscale_and_a_cut_out_of_it(studio):
    mask = np.zeros((96, 96), np.uint8)
    mask[30:60, 30:60] = 255
    edit = {"tool": "erase", "image": b64_png(picture(6)), "mask": b64_png(mask)}
    edited = ok(studio.post("/v1/edits", json=edit))["data"][0]["asset_id"]
    upscaled = ok(studio.post(f"/v1/assets/{edited}/upscale", json={"scale": 2}))
    assert (upscaled["asset"]["width"], upscaled["asset"]["parent_id"]) == (192, edited)
    cut = studio.post(f"/v1/assets/{edited}/remove-background")
    assert cut.status_code == 200, cut.text
    svg = studio.get(f"/v1/assets/{edited}/download", params={"format": "svg"})
    assert svg.status_code == 200 and b"<svg" in svg.content
