"""The FastAPI app without Ray: listing, validation, error shapes, request ids, metrics.

Requests here are rejected before generation (or never generate), so no model loads; the
same app runs behind Ray in tests/e2e, where generation is exercised.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from secrets_for_tests import TEST_SECRET

from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app
from weights.catalog import load_catalog

GEN = "/v1/generations"
OPENAI = "/v1/images/generations"


def assert_error(response, status: int, param: str | None = "__any__") -> dict:
    """The response is an OpenAI-shaped error with a request id."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param != "__any__":
        assert error["param"] == param
    assert response.headers["x-request-id"]
    return error


def test_models_list_sizes_features_prices_defaults(client: TestClient):
    r = client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    cards = {m["id"]: m for m in body["data"]}
    assert set(cards) == {
        "tiny-sd15",
        "tiny-sdxl",
        "tiny-instruct",
        "tiny-flux1",
        "tiny-flux2-klein",
        "tiny-flux1-kontext",
        "tiny-flux1-fill",
    }
    sdxl = cards["tiny-sdxl"]
    assert sdxl["object"] == "model" and sdxl["kind"] == "base" and sdxl["family"] == "sdxl"
    assert sdxl["features"][:5] == ["text_to_image", "reference", "replace", "recreate", "erase"]
    assert sdxl["sizes"] == ["128x128", "128x64", "64x128", "256x256", "256x192", "192x256"]
    assert sdxl["prices"] == {"128px": 1.0, "256px": 2.0}
    assert sdxl["defaults"] == {
        "resolution": "128px", "aspect_ratio": "1:1", "size": "128x128",
        "steps": 4, "guidance": 5.0, "scheduler": "euler",
    }  # fmt: skip
    assert client.get("/v1/models/tiny-sd15").json()["id"] == "tiny-sd15"


def test_server_defaults_show_in_the_listing(home: Path, make_client):
    settings = Settings(home=home, secret=TEST_SECRET, default_steps=9, default_scheduler="ddim")
    catalog = load_catalog(home)
    client = make_client(create_app(settings, catalog, LocalModelClient(catalog)))
    defaults = client.get("/v1/models/tiny-sdxl").json()["defaults"]
    assert (defaults["steps"], defaults["scheduler"], defaults["guidance"]) == (9, "ddim", 5.0)


def test_unknown_model_is_404_naming_the_known_ones(client: TestClient):
    for response in (
        client.get("/v1/models/nope"),
        client.post(GEN, json={"model": "nope", "prompt": "a cat"}),
        client.post(OPENAI, json={"model": "nope", "prompt": "a cat"}),
    ):
        error = assert_error(response, 404, "model")
        assert "tiny-sd15" in error["message"] and error["code"] == "model_not_found"


BAD_NATIVE = [
    ({"n": 0}, "n"),
    ({"n": 13}, "n"),
    ({"n": "two"}, "n"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x" * 100_000}, "prompt"),
    ({"prompt": 42}, "prompt"),
    ({"negative_prompt": "y" * 5000}, "negative_prompt"),
    ({"resolution": "8K"}, "resolution"),
    ({"aspect_ratio": "16:9"}, "aspect_ratio"),
    ({"seed": -1}, "seed"),
    ({"steps": 0}, "steps"),
    ({"guidance": -1.0}, "guidance"),
    ({"scheduler": "warp"}, "scheduler"),
    ({"colour": "red"}, "colour"),
    ({"size": "128x128"}, "size"),  # an OpenAI field: not part of the native route
]


@pytest.mark.parametrize("change, param", BAD_NATIVE)
def test_native_bad_inputs_are_400_naming_the_field(client: TestClient, change, param):
    body = {"model": "tiny-sdxl", "prompt": "a cat", **change}
    assert_error(client.post(GEN, json=body), 400, param)


BAD_OPENAI = [
    ({"n": 0}, "n"),
    ({"n": 13}, "n"),
    ({"size": "1024x1024"}, "size"),
    ({"size": "big"}, "size"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "x" * 100_000}, "prompt"),
    ({"response_format": "jpeg"}, "response_format"),
    ({"output_format": "gif"}, "output_format"),
    ({"output_compression": 101}, "output_compression"),
    ({"stream": True, "partial_images": 4}, "partial_images"),  # streams: 0-3 partials
    ({"stream": True, "response_format": "url"}, "response_format"),  # streams are base64
    ({"background": "transparent"}, "background"),
    ({"unknown_field": 1}, "unknown_field"),
]


@pytest.mark.parametrize("change, param", BAD_OPENAI)
def test_openai_bad_inputs_are_400_naming_the_field(client: TestClient, change, param):
    body = {"model": "tiny-sdxl", "prompt": "a cat", **change}
    assert_error(client.post(OPENAI, json=body), 400, param)


# Text JSON can carry but Kiln cannot pass on or store, sent as the raw escapes a client's
# encoder would refuse to write: NUL (PostgreSQL's text cannot hold it), a lone surrogate
# (not Unicode: the model call and SQLite failed to encode it, a 500 after the
# reservation), and JSON's 1e309, which reads as infinity.
RAW_BAD_TEXT = [
    (GEN, '{"model": "tiny-sdxl", "prompt": "a\\u0000b"}', "prompt"),
    (GEN, '{"model": "tiny-sdxl", "prompt": "a\\ud800b"}', "prompt"),
    (
        GEN,
        '{"model": "tiny-sdxl", "prompt": "ok", "negative_prompt": "\\udfff"}',
        "negative_prompt",
    ),
    (GEN, '{"model": "tiny-sdxl", "prompt": "ok", "guidance": 1e309}', "guidance"),
    (OPENAI, '{"model": "tiny-sdxl", "prompt": "\\ud800"}', "prompt"),
    # An id no check of ours names, looked up as it came: the lookup's error is a 400.
    (GEN, '{"model": "tiny-sdxl", "prompt": "ok", "style": "\\ud800"}', None),
]


@pytest.mark.parametrize("route, body, param", RAW_BAD_TEXT)
def test_text_kiln_cannot_store_is_400_and_charges_nothing(client: TestClient, route, body, param):
    before = client.get("/v1/credits").json()["balance"]
    headers = {"content-type": "application/json"}
    error = assert_error(client.post(route, content=body.encode(), headers=headers), 400, param)
    assert error["code"] == "invalid_value"
    assert client.get("/v1/credits").json()["balance"] == before


def test_every_route_counted_as_arriving_at_a_model_is_a_post_route(client: TestClient):
    """``serving.http.arrivals`` names its routes by path: a renamed route would quietly
    stop counting, and bursts on it would split again."""
    from serving.http.arrivals import IMAGE_ROUTES

    paths = client.app.openapi()["paths"]
    posts = {path for path, operations in paths.items() if "post" in operations}
    assert posts >= IMAGE_ROUTES, IMAGE_ROUTES - posts


def test_malformed_and_missing_bodies(client: TestClient):
    headers = {"content-type": "application/json"}
    error = assert_error(client.post(GEN, content=b'{"model": ', headers=headers), 400, None)
    assert error["code"] == "invalid_json"
    assert_error(client.post(GEN), 400, None)
    assert_error(client.post(OPENAI, json=["not", "an", "object"]), 400)
    # What the JSON parser itself refuses: a body nested past its recursion limit, bytes
    # that are no Unicode text. Both were 400s without a code.
    for body, why in (
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"model": "\xc3\x28"}', "UTF-8"),
    ):
        error = assert_error(client.post(GEN, content=body, headers=headers), 400, None)
        assert error["code"] == "invalid_json" and why in error["message"], error
    assert_error(client.post(GEN, json={"prompt": "a cat"}), 400, "model")


def test_unknown_route_and_method(client: TestClient):
    assert_error(client.get("/v2/nothing"), 404, None)
    assert_error(client.delete("/v1/models"), 405, None)


def test_request_id_is_echoed_or_generated(client: TestClient):
    r = client.get("/v1/models", headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = client.post(GEN, json={"model": "tiny-sdxl", "prompt": ""}, headers={"x-request-id": "e1"})
    assert r.headers.get_list("x-request-id") == ["e1"]
    a, b = client.get("/healthz"), client.get("/healthz")
    assert a.headers["x-request-id"] != b.headers["x-request-id"]


def test_internal_errors_are_500_with_request_id_and_no_traceback(home: Path, make_client):
    # A real catalog entry whose weights are missing: loading fails inside the request,
    # after the credits were reserved; the reservation is released, nothing is charged.
    (home / "models.toml").write_text(
        '[models.ghost]\nkind = "base"\nfamily = "sd15"\nsource = "models/ghost"\n'
        'aspect_ratios = ["1:1"]\nresolutions = {"64px" = 64}\ncredits = {"64px" = 1}\n'
    )
    settings = Settings(home=home, secret=TEST_SECRET)
    catalog = load_catalog(home)
    client = make_client(
        create_app(settings, catalog, LocalModelClient(catalog, device="cpu")), credits=10
    )
    r = client.post(
        GEN, json={"model": "ghost", "prompt": "boo", "n": 3}, headers={"x-request-id": "z9"}
    )
    error = assert_error(r, 500, None)
    assert r.headers["x-request-id"] == "z9"
    assert error["type"] == "server_error" and "ghost" not in error["message"]
    assert "Traceback" not in r.text
    credits = client.get("/v1/credits").json()
    assert (credits["balance"], credits["held"]) == (10, 0)
    assert [e["kind"] for e in credits["entries"]] == ["release", "reserve", "grant"]
    assert [e["amount"] for e in credits["entries"]] == [3, -3, 10]
    assert credits["entries"][1]["reference"] == "z9"


def test_healthz_metrics_and_docs(client: TestClient):
    models = ["tiny-sd15", "tiny-sdxl", "tiny-instruct", "tiny-flux1", "tiny-flux2-klein"]
    models += ["tiny-flux1-kontext", "tiny-flux1-fill"]
    assert client.get("/healthz").json() == {"status": "ok", "models": models}
    client.post(GEN, json={"model": "tiny-sdxl", "prompt": ""})
    client.get("/v1/files/nothing")
    text = client.get("/metrics").text
    assert 'kiln_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'route="/v1/generations",status="400"' in text
    assert 'route="/v1/files/{file_id}",status="404"' in text  # templates, not raw paths
    assert "kiln_http_request_duration_seconds_bucket" in text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/models", GEN, OPENAI, "/v1/files/{file_id}"} <= set(paths)
