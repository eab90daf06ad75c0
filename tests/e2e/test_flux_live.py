"""The tiny FLUX models through the live server: they ship in the default catalog at zero
replicas (``min_replicas = 0``), so the first request wakes each one and answers ``503
model_loading`` with ``retry-after`` until its replica is up; then text-to-image, the
official OpenAI SDK, and a prompt its encoder would cut refused before anything is held
(``ModelClient.check`` through the replica)."""

from __future__ import annotations

import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from openai import OpenAI
from PIL import Image

FLUX1, KLEIN = "tiny-flux1", "tiny-flux2-klein"
WAKE_TIMEOUT_S = 240  # a replica's start on 2 busy cores: import torch and diffusers, load


def _pixels(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image.convert("RGB"))


def _awake(http: httpx.Client, body: dict, path: str = "/v1/generations") -> httpx.Response:
    """``body`` posted to ``path`` until the model's replica is up (503 model_loading
    meanwhile)."""
    deadline = time.monotonic() + WAKE_TIMEOUT_S
    while True:
        r = http.post(path, json=body)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        assert r.json()["error"]["code"] == "model_loading", r.text
        assert r.headers["retry-after"]
        time.sleep(1)


@pytest.mark.parametrize("model", [FLUX1, KLEIN])
def test_a_sleeping_flux_model_wakes_and_generates_a_seed_per_image(http, model):
    body = {"model": model, "prompt": "a red fox in the snow", "n": 2, "seed": 5}
    r = _awake(http, body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["credits_charged"] == 2 and len(answer["data"]) == 2
    first, second = (_pixels(d["b64_json"]) for d in answer["data"])
    assert first.shape == (128, 128, 3) and not np.array_equal(first, second)


def test_the_openai_sdk_and_an_over_limit_prompt_on_flux1(http, server, tenant):
    assert _awake(http, {"model": FLUX1, "prompt": "a kite", "seed": 1}).status_code == 200
    sdk = OpenAI(base_url=f"{server.url}/v1", api_key=tenant.key, max_retries=0, timeout=120)
    result = sdk.images.generate(model=FLUX1, prompt="a kite", response_format="b64_json")
    assert _pixels(result.data[0].b64_json).shape == (128, 128, 3)

    newest = http.get("/v1/credits").json()["entries"][0]
    r = http.post("/v1/generations", json={"model": FLUX1, "prompt": "fox " * 700})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt", r.text
    assert http.get("/v1/credits").json()["entries"][0] == newest  # nothing held


def test_flux1_through_the_live_server_batches_references_and_sizes(http, server, tenant):
    assert _awake(http, {"model": FLUX1, "prompt": "a kite", "seed": 1}).status_code == 200
    seeds = [41, 42, 43, 44]

    def one(seed: int) -> dict:
        body = {"model": FLUX1, "prompt": f"a harbour, view {seed}", "seed": seed}
        r = httpx.post(f"{server.url}/v1/generations", json=body, headers=tenant.headers,
                       timeout=120)  # fmt: skip
        assert r.status_code == 200, r.text
        return r.json()

    # Dynamic batching: concurrent FLUX requests share a pipeline call (one T5 length).
    with ThreadPoolExecutor(len(seeds)) as pool:
        results = list(pool.map(one, seeds))
    sizes = [r["timings"]["batch_images"] for r in results]
    assert max(sizes) >= 2, f"no shared call among {sizes}"
    alone = _pixels(one(seeds[-1])["data"][0]["b64_json"])
    shared = _pixels(results[-1]["data"][0]["b64_json"])
    assert np.abs(alone.astype(int) - shared.astype(int)).max() <= 2

    # A reference image as img2img, at a tier and aspect ratio on FLUX's 16-px grid.
    picture = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(picture).save(out, format="PNG")
    reference = {"image": base64.b64encode(out.getvalue()).decode(), "strength": 0.6}
    body = {"model": FLUX1, "prompt": "a quiet street", "seed": 4, "reference": reference,
            "resolution": "256px", "aspect_ratio": "3:2"}  # fmt: skip
    r = http.post("/v1/generations", json=body)
    assert r.status_code == 200, r.text
    image = r.json()["data"][0]
    assert (image["width"], image["height"]) == (256, 176)
    assert _pixels(image["b64_json"]).shape == (176, 256, 3)
