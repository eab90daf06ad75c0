"""``image_to_prompt`` inside ``POST /v1/generations`` on the tiny models: the extract is
the prompt when there is none, is appended (the user's words winning) when there is one,
is not charged on top of the images, and bad fields are refused before anything is
charged or stored."""

from __future__ import annotations

import base64
import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from secrets_for_tests import TEST_SECRET

from pipelines.image_to_prompt.vocabulary import shipped_vocabulary
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app
from weights.catalog import load_catalog
from weights.tiny import build_tiny_component, ensure_tiny_models

GEN = "/v1/generations"
BASE = {"model": "tiny-sd15", "seed": 3, "resolution": "128px", "steps": 2}


def png_b64(colour=(40, 160, 90)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), colour).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """tiny-sd15 and the tiny CLIP, built once for this module."""
    home = tmp_path_factory.mktemp("i2p_gen")
    catalog = load_catalog(home)
    ensure_tiny_models([catalog.get("tiny-sd15")])
    clip = catalog.component("tiny-clip")
    build_tiny_component(clip.tiny, clip.source)
    return home


@pytest.fixture(scope="module")
def app(home):
    catalog = load_catalog(home)
    return create_app(
        Settings(home=home, secret=TEST_SECRET), catalog, LocalModelClient(catalog, "cpu")
    )


@pytest.fixture
def alice(app, make_client) -> TestClient:
    return make_client(app, credits=20, name="alice")


def balance(client: TestClient) -> int:
    return client.get("/v1/credits").json()["balance"]


def stored_prompt(client: TestClient, asset_id: str) -> str:
    return client.get(f"/v1/assets/{asset_id}").json()["prompt"]


def extract_alone(client: TestClient, field: dict) -> str:
    response = client.post("/v1/image-to-prompt", json=field)
    assert response.status_code == 200, response.text
    return response.json()["prompt"]


def test_with_no_prompt_the_extract_is_the_prompt_and_is_not_charged(alice):
    field = {"image": png_b64(), "extract": "environment", "method": "creative"}
    response = alice.post(GEN, json={**BASE, "image_to_prompt": field})
    assert response.status_code == 200, response.text
    body = response.json()
    # The generation's price only: the extract inside it is free (image_to_prompt/mixing.py).
    assert body["credits_charged"] == 1
    assert balance(alice) == 19
    prompt = stored_prompt(alice, body["data"][0]["asset_id"])
    assert prompt == extract_alone(alice, field)  # (that call alone costs its own price)
    assert ". In " in prompt and prompt.endswith(".")  # the setting sentence
    assert balance(alice) == 18


def test_with_a_prompt_the_user_wins_conflicts(alice):
    field = {"image": png_b64(), "extract": "everything"}
    extracted = extract_alone(alice, field).split(", ")
    user = "a cat on a sunny beach, moonlight"
    response = alice.post(GEN, json={**BASE, "prompt": user, "image_to_prompt": field})
    assert response.status_code == 200, response.text
    prompt = stored_prompt(alice, response.json()["data"][0]["asset_id"])
    assert prompt.startswith(user + ", ")
    appended = prompt[len(user) + 2 :].split(", ")
    assert appended and set(appended) < set(extracted)
    # Subjects ("a cat"), environment ("a sunny beach") and lighting ("moonlight") are the
    # user's: no extracted term of those lists is appended.
    vocabulary = shipped_vocabulary()
    for name in ("subjects", "environment", "lighting"):
        terms = {t.text for t in vocabulary.get(name).terms}
        assert not terms & set(appended), name


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({}, 400, "prompt"),
        (
            {"image_to_prompt": {"image": png_b64(), "extract": "shoes"}},
            400,
            "image_to_prompt.extract",
        ),
        (
            {"image_to_prompt": {"image": png_b64(), "method": "lyrical"}},
            400,
            "image_to_prompt.method",
        ),
        ({"image_to_prompt": {"image": "bm90IGFuIGltYWdl"}}, 400, "image_to_prompt.image"),
        ({"image_to_prompt": {"asset_id": "ast_nobody"}}, 404, None),
        ({"image_to_prompt": {"image": png_b64(), "extra": 1}}, 400, "image_to_prompt.extra"),
    ],
)
def test_bad_image_to_prompt_fields_charge_nothing(alice, body, status, param):
    response = alice.post(GEN, json={**BASE, **body})
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
    assert balance(alice) == 20
    assert alice.get("/v1/assets").json()["data"] == []


def test_a_bomb_image_to_prompt_is_413_and_charges_nothing(alice):
    buffer = io.BytesIO()
    Image.new("L", (9000, 9000), 0).save(buffer, "PNG")  # 81 megapixels in ~80 KB
    field = {"image": base64.b64encode(buffer.getvalue()).decode()}
    response = alice.post(GEN, json={**BASE, "prompt": "a boat", "image_to_prompt": field})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["param"] == "image_to_prompt.image"
    assert balance(alice) == 20
