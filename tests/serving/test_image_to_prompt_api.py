"""``POST /v1/image-to-prompt`` through the real app, the CLIP in-process (the tiny open_clip):
prompt and scored terms, the catalog price charged once, and every bad input refused in
the error shape with nothing charged or stored."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from secrets_for_tests import TEST_SECRET

from pipelines.image_to_prompt.vocabulary import shipped_vocabulary
from serving.core.assets.service import ImageRecord
from serving.core.settings import Settings
from serving.http.app import create_app
from weights.catalog import load_catalog
from weights.tiny import build_tiny_component

ROUTE = "/v1/image-to-prompt"


def png_b64(size=(40, 32), colour=(30, 90, 200), mode="RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else 0).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def clip_home(tmp_path_factory):
    """A KILN_HOME with only the tiny CLIP built (this route needs no diffusion model)."""
    home = tmp_path_factory.mktemp("i2p_api")
    component = load_catalog(home).component("tiny-clip")
    build_tiny_component(component.tiny, component.source)
    return home


@pytest.fixture(scope="module")
def app(clip_home):
    settings = Settings(home=clip_home, secret=TEST_SECRET, image_max_bytes=200_000)
    catalog = load_catalog(clip_home)
    return create_app(settings, catalog, models=None)  # type: ignore[arg-type]


@pytest.fixture
def alice(app, make_client) -> TestClient:
    return make_client(app, credits=10, name="alice")


def balance(client: TestClient) -> int:
    return client.get("/v1/credits").json()["balance"]


def assets_of(client: TestClient) -> int:
    return len(client.get("/v1/assets").json()["data"])


def test_an_image_becomes_a_prompt_with_scored_terms_for_the_catalog_price(app, alice):
    price = app.state.kiln.catalog.price_of("image_to_prompt")
    assert price == 1
    response = alice.post(ROUTE, json={"image": png_b64(), "extract": "outfit"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "image_to_prompt" and body["model"] == "tiny-clip"
    assert body["extract"] == "outfit" and body["method"] == "precise"
    assert list(body["terms"]) == ["outfit"]
    outfit = {t.text for t in shipped_vocabulary().get("outfit").terms}
    terms = body["terms"]["outfit"]
    assert len(terms) == 3 and {t["term"] for t in terms} <= outfit
    assert body["prompt"] == ", ".join(t["term"] for t in terms)
    assert body["credits_charged"] == price
    assert balance(alice) == 10 - price
    entries = alice.get("/v1/credits").json()
    assert entries["balance"] == 9


def test_creative_everything_from_ones_own_asset(app, alice):
    state = app.state.kiln
    pixels = np.full((32, 48, 3), (220, 180, 40), np.uint8)
    record = ImageRecord(kind="base", model="tiny-sd15", prompt="x", seed=1, width=48, height=32)
    asset, _ = state.assets.create(alice.tenant_id, record, pixels)
    body = {"asset_id": asset.id, "extract": "everything", "method": "creative", "top_k": 1}
    response = alice.post(ROUTE, json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert len(out["terms"]) == len(shipped_vocabulary().lists)
    assert all(len(terms) == 1 for terms in out["terms"].values())
    assert out["prompt"].endswith(".") and out["prompt"][0].isupper()


def _bomb_png() -> str:
    # 9000 x 9000 of zeros: ~80 KB on the wire, 81 megapixels once decompressed.
    buffer = io.BytesIO()
    Image.new("L", (9000, 9000), 0).save(buffer, "PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def _big_noise_png() -> str:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


BAD = [
    ({"image": png_b64(), "extract": "hairstyle"}, 400, "extract"),
    ({"image": png_b64(), "method": "poetic"}, 400, "method"),
    ({"image": base64.b64encode(b"not an image at all").decode()}, 400, "image"),
    ({"image": "%%%not base64"}, 400, "image"),
    ({}, 400, "image"),
    ({"image": png_b64(), "asset_id": "ast_x"}, 400, "image"),
    ({"image": png_b64(), "top_k": 50}, 400, "top_k"),
    ({"image": png_b64(), "colour": "red"}, 400, "colour"),
]


@pytest.mark.parametrize(("body", "status", "param"), BAD)
def test_bad_input_is_refused_in_the_error_shape_and_charges_nothing(alice, body, status, param):
    response = alice.post(ROUTE, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["type"]
    assert balance(alice) == 10 and assets_of(alice) == 0


def test_oversize_and_bomb_images_are_413_and_charge_nothing(alice):
    for image in (_big_noise_png(), _bomb_png()):
        response = alice.post(ROUTE, json={"image": image})
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "upload_too_large"
    assert balance(alice) == 10


def test_someone_elses_asset_is_404(app, alice, make_client):
    bob = make_client(app, credits=10, name="bob")
    pixels = np.zeros((32, 32, 3), np.uint8)
    record = ImageRecord(kind="base", model="tiny-sd15", prompt="x", seed=1, width=32, height=32)
    asset, _ = app.state.kiln.assets.create(bob.tenant_id, record, pixels)
    response = alice.post(ROUTE, json={"asset_id": asset.id})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "asset_not_found"
    assert balance(alice) == 10
    assert bob.post(ROUTE, json={"asset_id": asset.id}).status_code == 200


def test_without_credits_it_is_402_and_nothing_is_held(app, make_client):
    broke = make_client(app, credits=0, name="broke")
    response = broke.post(ROUTE, json={"image": png_b64()})
    assert response.status_code == 402
    assert balance(broke) == 0


def test_an_idempotent_retry_is_not_charged_twice(alice):
    headers = {"idempotency-key": "i2p-1"}
    first = alice.post(ROUTE, json={"image": png_b64()}, headers=headers)
    again = alice.post(ROUTE, json={"image": png_b64()}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert balance(alice) == 9


def test_no_clip_in_the_catalog_is_503(tmp_path, make_client):
    catalog = load_catalog(tmp_path)
    catalog.components.clear()
    app = create_app(Settings(home=tmp_path, secret=TEST_SECRET), catalog, models=None)  # type: ignore[arg-type]
    client = make_client(app, credits=5)
    response = client.post(ROUTE, json={"image": png_b64()})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_deployed"
    assert balance(client) == 5
