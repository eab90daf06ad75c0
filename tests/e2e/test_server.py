"""The live server over HTTP: the official OpenAI SDK, the native route, errors, metrics."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from openai import OpenAI
from PIL import Image

MODEL = "tiny-sdxl"  # the quicker of the two tiny models on CPU


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def assert_error(response: httpx.Response, status: int, param: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param, error
    assert len(response.headers.get_list("x-request-id")) == 1


@pytest.fixture(scope="module")
def openai_client(server, tenant) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=tenant.key, max_retries=0, timeout=120)


def test_healthz_and_models(http):
    r = http.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    cards = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert set(cards) == {
        "tiny-sd15",
        "tiny-sdxl",
        "tiny-instruct",
        "tiny-flux1",
        "tiny-flux2-klein",
        "tiny-flux1-kontext",
        "tiny-flux1-fill",
    }
    assert "128x64" in cards[MODEL]["sizes"] and "text_to_image" in cards[MODEL]["features"]
    assert cards["tiny-instruct"]["features"][0] == "instruct"
    assert cards["tiny-sd15"]["prices"] == {"128px": 1.0, "256px": 2.0}


def test_openai_sdk_lists_models(openai_client):
    assert {m.id for m in openai_client.models.list()} == {
        "tiny-sd15",
        "tiny-sdxl",
        "tiny-instruct",
        "tiny-flux1",
        "tiny-flux2-klein",
        "tiny-flux1-kontext",
        "tiny-flux1-fill",
    }


def test_openai_sdk_b64_json(openai_client):
    result = openai_client.images.generate(
        model=MODEL, prompt="a lighthouse at dusk", n=2, size="128x64", response_format="b64_json"
    )
    assert len(result.data) == 2
    for item in result.data:
        image = decode(item.b64_json)
        assert image.format == "PNG" and image.size == (128, 64)
        assert item.revised_prompt == "a lighthouse at dusk" and item.url is None


def test_openai_sdk_url_needs_no_key_and_refuses_tampering(openai_client, server):
    result = openai_client.images.generate(
        model=MODEL, prompt="a red fox", n=2, size="64x128", response_format="url"
    )
    assert len(result.data) == 2
    for item in result.data:
        assert item.url.startswith(f"{server.url}/v1/files/") and item.b64_json is None
        r = httpx.get(item.url)  # no Authorization header
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (64, 128)
    url = result.data[0].url
    sig = url.rsplit("sig=", 1)[1]
    tampered = url.replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:])
    assert_error(httpx.get(tampered), 404, None)
    assert_error(httpx.get(url.split("?")[0]), 404, None)


def test_openai_sdk_output_format_and_extensions(openai_client):
    result = openai_client.images.generate(
        model=MODEL,
        prompt="a blue car",
        size="128x128",
        output_format="webp",
        output_compression=50,
        extra_body={"seed": 3, "steps": 2},
    )
    image = decode(result.data[0].b64_json)
    assert image.format == "WEBP" and image.size == (128, 128)


def test_native_n_images_with_distinct_seeds_and_sizes(http):
    body = {"model": MODEL, "prompt": "a cat", "n": 3, "aspect_ratio": "3:2", "seed": 10}
    r = http.post("/v1/generations", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == MODEL and len(out["data"]) == 3
    assert [d["seed"] for d in out["data"]] == [10, 11, 12]
    assert len({d["asset_id"] for d in out["data"]}) == 3
    for d in out["data"]:
        assert (d["width"], d["height"]) == (128, 64)
        assert decode(d["b64_json"]).size == (128, 64)
    assert out["timings"]["batch_images"] >= 3 and out["timings"]["server_total"] > 0


def test_more_images_than_one_batch_holds(http):
    r = http.post("/v1/generations", json={"model": MODEL, "prompt": "x", "n": 12, "steps": 1})
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 12


def test_same_seed_gives_identical_pixels(http):
    # Pixels, not bytes: each file's PNG metadata names its own asset id.
    body = {"model": MODEL, "prompt": "same seed", "seed": 1234, "resolution": "128px"}

    def pixels(response_body: dict) -> bytes:
        return decode(response_body["data"][0]["b64_json"]).convert("RGB").tobytes()

    first = http.post("/v1/generations", json=body).json()
    second = http.post("/v1/generations", json=body).json()
    assert first["data"][0]["asset_id"] != second["data"][0]["asset_id"]
    assert pixels(first) == pixels(second)
    other = http.post("/v1/generations", json={**body, "seed": 1235}).json()
    assert pixels(other) != pixels(first)


def test_concurrent_requests_share_a_pipeline_call(server, tenant):
    seeds = list(range(500, 508))

    def one(seed: int) -> dict:
        body = {"model": MODEL, "prompt": f"request {seed}", "seed": seed, "steps": 2}
        r = httpx.post(
            f"{server.url}/v1/generations", json=body, headers=tenant.headers, timeout=120
        )
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(len(seeds)) as pool:
        results = list(pool.map(one, seeds))
    assert [r["data"][0]["seed"] for r in results] == seeds
    batch_sizes = [r["timings"]["batch_images"] for r in results]
    assert max(batch_sizes) >= 2, f"no shared call among {batch_sizes}"
    # A shared call gives each request the image it would get alone (up to float noise).
    alone = one(seeds[-1])
    a = np.asarray(decode(results[-1]["data"][0]["b64_json"]), dtype=int)
    b = np.asarray(decode(alone["data"][0]["b64_json"]), dtype=int)
    assert np.abs(a - b).max() <= 2


BAD = [
    ("/v1/generations", {"model": MODEL, "prompt": "x", "n": 0}, 400, "n"),
    ("/v1/generations", {"model": MODEL, "prompt": "x", "n": 13}, 400, "n"),
    ("/v1/generations", {"model": "nope", "prompt": "x"}, 404, "model"),
    ("/v1/generations", {"model": MODEL, "prompt": "  "}, 400, "prompt"),
    ("/v1/generations", {"model": MODEL, "prompt": "x" * 100_000}, 400, "prompt"),
    ("/v1/generations", {"model": MODEL, "prompt": "x", "n": "2"}, 400, "n"),
    ("/v1/generations", {"model": MODEL, "prompt": "x", "colour": "red"}, 400, "colour"),
    ("/v1/images/generations", {"model": MODEL, "prompt": "x", "size": "1024x1024"}, 400, "size"),
    ("/v1/images/generations", {"model": "nope", "prompt": "x"}, 404, "model"),
    ("/v1/images/generations", {"model": MODEL, "prompt": "x", "n": 13}, 400, "n"),
]


@pytest.mark.parametrize("path, body, status, param", BAD)
def test_bad_inputs_get_the_right_error(http, path, body, status, param):
    r = http.post(path, json=body, headers={"x-request-id": "bad-input-1"})
    assert_error(r, status, param)
    assert r.headers["x-request-id"] == "bad-input-1"


def test_malformed_json_unknown_route_and_still_serving(http):
    r = http.post(
        "/v1/generations", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(r, 400, None)
    assert r.json()["error"]["code"] == "invalid_json"
    assert_error(http.get("/v1/nothing-here"), 404, None)
    assert http.get("/healthz").status_code == 200
    ok = http.post("/v1/generations", json={"model": MODEL, "prompt": "still here", "steps": 1})
    assert ok.status_code == 200 and len(ok.json()["data"]) == 1
    assert ok.headers["x-request-id"]


def test_a_burst_past_the_queue_gets_503_with_retry_after(server, tenant, http):
    # The session server runs with KILN_MAX_QUEUED=32: a batch group runs, 32 requests
    # wait in the model's fair queue, the rest are turned away at once.
    body = {"model": MODEL, "prompt": "burst", "steps": 1}
    burst = 96

    def one(i: int) -> httpx.Response:
        return httpx.post(
            f"{server.url}/v1/generations",
            json={**body, "seed": i},
            headers=tenant.headers,
            timeout=120,
        )

    with ThreadPoolExecutor(burst) as pool:
        responses = list(pool.map(one, range(burst)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 8, statuses
    busy = [r for r in responses if r.status_code == 503]
    assert busy, "no request was turned away"
    assert_error(busy[0], 503, None)
    assert busy[0].json()["error"]["code"] == "overloaded"
    assert int(busy[0].headers["retry-after"]) >= 1
    assert http.post("/v1/generations", json=body).status_code == 200


def test_docs_and_metrics(http):
    assert http.get("/docs").status_code == 200
    text = http.get("/metrics").text
    assert 'kiln_images_generated_total{model="tiny-sdxl"}' in text
    assert 'route="/v1/generations",status="200"' in text
    assert 'route="/v1/generations",status="400"' in text
    assert 'route="/v1/images/generations",status="200"' in text
    assert "kiln_http_request_duration_seconds_bucket" in text
