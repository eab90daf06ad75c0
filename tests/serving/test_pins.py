"""Pins through the real app on the tiny models: created once (embeddings by the model's
engine, saved as safetensors), steer generations at their kind's scale without leaking
into the next one, and belong to their tenant alone; bad input stores nothing."""

from __future__ import annotations

import asyncio
import base64
import io
from dataclasses import replace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from secrets_for_tests import TEST_SECRET

from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app

PINS = "/v1/pins"
GEN = "/v1/generations"
BODY = {"model": "tiny-sd15", "prompt": "a lighthouse", "seed": 5, "steps": 2}


@pytest.fixture(scope="module")
def models(catalog) -> LocalModelClient:
    return LocalModelClient(catalog, device="cpu")


@pytest.fixture
def app(tmp_path, catalog, models):
    settings = Settings(home=tmp_path, secret=TEST_SECRET, image_max_bytes=64 * 1024)
    return create_app(settings, catalog, models)


@pytest.fixture
def alice(app, make_client) -> TestClient:
    return make_client(app, credits=100, name="alice")


@pytest.fixture
def bob(app, make_client) -> TestClient:
    return make_client(app, credits=100, name="bob")


def png(seed: int, size: int = 48) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def pixels(item: dict) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))) as decoded:
        return np.asarray(decoded.convert("RGB"))


def make_pin(client: TestClient, kind: str = "character", seeds=(1, 2)) -> dict:
    r = client.post(PINS, json={"kind": kind, "name": "Mira", "images": [png(s) for s in seeds]})
    assert r.status_code == 201, r.text
    return r.json()


def balance(client: TestClient) -> int:
    return client.get("/v1/credits").json()["balance"]


def stored(app) -> list:
    """Every file under the pins folder (embeddings, kept pictures)."""
    return sorted(p for p in (app.state.kiln.settings.home / "pins").rglob("*") if p.is_file())


def test_a_pin_is_created_listed_and_deleted_by_its_owner_only(app, alice, bob):
    before = balance(alice)
    pin = make_pin(alice)
    assert pin["object"] == "pin" and pin["kind"] == "character" and pin["images"] == 2
    # The IP-Adapter models, and FLUX, which takes the pictures it keeps.
    assert set(pin["models"]) == {"tiny-sd15", "tiny-sdxl", "tiny-flux1", "tiny-flux2-klein"}
    assert balance(alice) == before  # pins are free
    files = stored(app)
    embeddings = [f for f in files if f.suffix == ".safetensors"]
    assert [f.name for f in embeddings] == [f"{pin['id']}.safetensors"]
    assert pin["pictures_kept"] == 2 and len(files) == 3  # and its two pictures
    from safetensors.numpy import load_file

    saved = load_file(embeddings[0])
    assert saved["tiny-ip-adapter-sd15"].shape == (2, 32)
    assert saved["tiny-ip-adapter-sdxl"].shape == (2, 48)

    assert [p["id"] for p in alice.get(PINS).json()["data"]] == [pin["id"]]
    assert bob.get(PINS).json()["data"] == []
    for response in (bob.get(f"{PINS}/{pin['id']}"), bob.delete(f"{PINS}/{pin['id']}")):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "pin_not_found"
    r = bob.post(GEN, json={**BODY, "pins": [pin["id"]]})
    assert r.status_code == 404, r.text
    assert balance(bob) == 100
    assert alice.get(f"{PINS}/{pin['id']}").status_code == 200

    assert alice.delete(f"{PINS}/{pin['id']}").json() == {
        "object": "pin.deleted", "id": pin["id"], "deleted": True,
    }  # fmt: skip
    assert stored(app) == [] and alice.get(PINS).json()["data"] == []
    assert alice.post(GEN, json={**BODY, "pins": [pin["id"]]}).status_code == 404


def test_a_pin_steers_generations_repeatably_and_never_leaks(app, alice):
    plain = alice.post(GEN, json=BODY)
    assert plain.status_code == 200, plain.text
    pin = make_pin(alice)
    first = alice.post(GEN, json={**BODY, "pins": [pin["id"]]})
    assert first.status_code == 200, first.text
    again = alice.post(GEN, json={**BODY, "pins": [pin["id"]]}).json()["data"][0]
    after = alice.post(GEN, json=BODY).json()["data"][0]
    plain_pixels, pinned = pixels(plain.json()["data"][0]), pixels(first.json()["data"][0])
    assert np.abs(pinned.astype(int) - plain_pixels.astype(int)).mean() > 1
    assert np.array_equal(pixels(again), pinned)
    assert np.array_equal(pixels(after), plain_pixels)


def test_conditioning_uses_per_kind_scales_and_names_models_with_an_adapter(app, alice):
    state = app.state.kiln
    conditioning, tenant = state.conditioning, alice.tenant_id
    character = make_pin(alice, "character")["id"]
    product = make_pin(alice, "product", seeds=(3,))["id"]
    spec = state.catalog.get("tiny-sdxl")
    adapter = asyncio.run(conditioning.pins(tenant, spec, [character, product]))
    assert adapter.component == "tiny-ip-adapter-sdxl"
    assert [(s.name, s.scale, s.embeds.shape) for s in adapter.sources] == [
        (character, state.settings.pin_scale_character, (2, 48)),
        (product, state.settings.pin_scale_product, (1, 48)),
    ]
    assert asyncio.run(conditioning.pins(tenant, spec, [])) is None
    with pytest.raises(Exception, match="tiny-sd15, tiny-sdxl") as refused:
        asyncio.run(conditioning.pins(tenant, state.catalog.get("tiny-instruct"), [product]))
    assert refused.value.param == "pins"
    with pytest.raises(Exception, match="more than once"):
        asyncio.run(conditioning.pins(tenant, spec, [product, product]))
    image = np.zeros((40, 40, 3), np.uint8)
    reference = asyncio.run(conditioning.reference(spec, image, 0.5))
    assert reference.component == "tiny-ip-adapter-sdxl"
    assert [(s.name, s.scale, s.embeds.shape) for s in reference.sources] == [
        ("reference", 0.5, (1, 48))
    ]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"kind": "character", "name": "x", "images": []}, 400, "images"),
        ({"kind": "character", "name": "x", "images": ["A"] * 5}, 400, "images"),
        ({"kind": "character", "name": "x", "images": [base64.b64encode(b"no image").decode()]},
         400, "images.0"),
        ({"kind": "character", "name": "x", "images": ["@@not base64@@"]}, 400, "images.0"),
        ({"kind": "creature", "name": "x", "images": ["A"]}, 400, "kind"),
        ({"kind": "product", "name": " ", "images": ["A"]}, 400, "name"),
        ({"kind": "product", "name": "a\x00b", "images": ["A"]}, 400, "name"),
        ({"kind": "product", "name": "x", "asset_ids": ["ast_nobody"]}, 404, None),
    ],
)  # fmt: skip
def test_bad_pins_are_refused_and_nothing_is_stored(app, alice, body, status, param):
    before = balance(alice)
    r = alice.post(PINS, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"]
    assert stored(app) == [] and alice.get(PINS).json()["data"] == []
    assert balance(alice) == before


def test_an_oversize_image_is_413_before_decoding(app, alice):
    huge = png(1, size=256)  # ~190 KiB of noise, over the app's 64 KiB limit
    r = alice.post(PINS, json={"kind": "product", "name": "x", "images": [png(2), huge]})
    assert r.status_code == 413, r.text
    assert r.json()["error"]["param"] == "images.1"
    assert stored(app) == []


def test_a_replica_embeds_on_its_engine_thread(catalog):
    from serving.ray.model_deployment import ModelDeployment

    settings = Settings(device="cpu", torch_threads=2)
    replica = ModelDeployment.func_or_class(
        settings, catalog.get("tiny-sd15"), tuple(catalog.components.values())
    )
    image = np.full((40, 60, 3), 200, np.uint8)
    embeds = asyncio.run(replica.embed_images("tiny-ip-adapter-sd15", [image, image[:, :30]]))
    assert embeds.shape == (2, 32) and embeds.dtype == np.float32
    assert replica.engine.ip_adapter_loaded is None  # embedding leaves the UNet alone


def test_pins_need_an_installed_ip_adapter(app, alice, monkeypatch):
    # core.pinning (the use case) embeds for every installed IP-Adapter: none, and no
    # model that takes pins' pictures (FLUX: tests/serving/test_flux_pins.py), is a 400.
    pinning = app.state.kiln.pinning
    catalog = pinning.catalog
    components = {k: c for k, c in catalog.components.items() if c.kind != "ip_adapter"}
    models = {k: m for k, m in catalog.models.items() if catalog.pins_model(m) is None}
    monkeypatch.setattr(pinning, "catalog", replace(catalog, models=models, components=components))
    r = alice.post(PINS, json={"kind": "character", "name": "Mira", "images": [png(1)]})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("feature_unavailable", "kind")
    assert "no model takes pins" in error["message"]
    assert stored(app) == []
