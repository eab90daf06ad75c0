"""FLUX styles through the real app on the tiny FLUX.1 and FLUX.2 [klein] models, as SD's
are served: uploaded over HTTP (checked, stored), listed with the models' features, run
through the same per-request adapter path (the style changes the image, trigger words go
in front, strength 0 is the base model, the LRU evicts and reloads a style to the same
pixels), private to their owner, and refused on a model they were not made for — with
nothing charged or stored on a refusal."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from flux_lora_makers import WRITERS, flux_layers, save
from PIL import Image
from secrets_for_tests import TEST_SECRET
from sqlalchemy import func, select

from serving.core.ledger.schema import styles as styles_table
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app

GEN = "/v1/generations"
MODELS = {"flux1": "tiny-flux1", "flux2": "tiny-flux2-klein"}


@pytest.fixture(scope="module")
def models(catalog) -> LocalModelClient:
    # Two styles per replica: a third evicts the least recently used one.
    return LocalModelClient(catalog, device="cpu", styles_per_replica=2)


@pytest.fixture(scope="module")
def flux_loras(catalog, tmp_path_factory) -> dict[str, list[Path]]:
    """family -> three LoRA files of different layouts and weights for its tiny model."""
    import diffusers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    out = tmp_path_factory.mktemp("flux_loras")
    files: dict[str, list[Path]] = {}
    for family, layouts in (("flux1", ("kohya", "xlabs", "bfl")), ("flux2", ("bfl", "kohya"))):
        folder = catalog.get(MODELS[family]).source / "transformer"
        cls = diffusers.FluxTransformer2DModel
        if family == "flux2":
            cls = diffusers.Flux2Transformer2DModel
        transformer = cls.from_pretrained(folder)
        files[family] = [
            save(
                WRITERS[layout](flux_layers(transformer, seed=seed, scale=0.8))[0],
                out / f"{family}-{seed}.safetensors",
            )
            for seed, layout in enumerate(layouts)
        ]
    return files


@pytest.fixture
def app(tmp_path, catalog, models):
    return create_app(Settings(home=tmp_path, secret=TEST_SECRET), catalog, models)


@pytest.fixture
def alice(app, make_client) -> TestClient:
    return make_client(app, credits=200, name="alice")


@pytest.fixture
def bob(app, make_client) -> TestClient:
    return make_client(app, credits=200, name="bob")


def upload(client: TestClient, path: Path, model: str, **form):
    with open(path, "rb") as f:
        return client.post(
            "/v1/styles",
            data={"name": path.stem, "model": model, **form},
            files={"file": (path.name, f)},
        )


def generate(client: TestClient, model: str, style: str | None = None, **extra) -> dict:
    body = {"model": model, "prompt": "a harbour", "seed": 5, "resolution": "128px"}
    body.update(extra)
    if style is not None:
        body["style"] = style
    r = client.post(GEN, json=body)
    assert r.status_code == 200, r.text
    return r.json()["data"][0]


def pixels(image: dict) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(image["b64_json"]))) as decoded:
        return np.asarray(decoded.convert("RGB")).astype(int)


def original(client: TestClient, image: dict) -> np.ndarray:
    """A styled image's clean original (its response carries the marked preview)."""
    asset_id = image["asset_id"]
    assert client.post(f"/v1/assets/{asset_id}/license").status_code == 200
    data = client.get(f"/v1/assets/{asset_id}/original").content
    with Image.open(io.BytesIO(data)) as decoded:
        return np.asarray(decoded.convert("RGB")).astype(int)


def balance(client: TestClient) -> int:
    return client.get("/v1/credits").json()["balance"]


def stored_styles(app) -> int:
    with app.state.kiln.ledger.engine.begin() as conn:
        return conn.execute(select(func.count()).select_from(styles_table)).scalar_one()


@pytest.mark.parametrize("family", ["flux1", "flux2"])
def test_a_flux_style_is_uploaded_listed_and_changes_the_image(family, alice, flux_loras):
    model = MODELS[family]
    card = next(m for m in alice.get("/v1/models").json()["data"] if m["id"] == model)
    assert "styles" in card["features"]
    r = upload(alice, flux_loras[family][0], model, trigger_words="harbourlight")
    assert r.status_code == 201, r.text
    style = r.json()
    assert (style["family"], style["base_model"], style["rank"]) == (family, model, 4)

    plain = pixels(generate(alice, model))
    styled = generate(alice, model, style["id"])
    asset = alice.get(f"/v1/assets/{styled['asset_id']}").json()
    assert (asset["kind"], asset["style"]) == ("private_style", style["id"])
    assert asset["prompt"] == "harbourlight, a harbour"  # the trigger word in front
    assert np.abs(original(alice, styled) - plain).mean() > 2  # the style, not its mark
    weak = generate(alice, model, style["id"], style_strength=0.0, prompt="a harbour")
    # Strength 0 is the base model (the trigger word aside, which the prompt then holds).
    assert (
        np.abs(
            original(alice, weak) - pixels(generate(alice, model, prompt="harbourlight, a harbour"))
        ).max()
        <= 1
    )


def test_the_lru_switches_and_reloads_flux_styles_to_the_same_pixels(alice, flux_loras):
    ids = [upload(alice, path, "tiny-flux1").json()["id"] for path in flux_loras["flux1"]]
    first = original(alice, generate(alice, "tiny-flux1", ids[0]))
    others = [original(alice, generate(alice, "tiny-flux1", i)) for i in ids[1:]]
    assert all(np.abs(first - other).mean() > 1 for other in others)
    # ids[0] was evicted (two styles a replica) and loads again to the same pixels.
    assert np.array_equal(original(alice, generate(alice, "tiny-flux1", ids[0])), first)


def test_flux_styles_are_private_and_fit_only_their_model(app, alice, bob, flux_loras):
    style = upload(alice, flux_loras["flux1"][0], "tiny-flux1").json()["id"]
    before = balance(bob), balance(alice)
    r = bob.post(GEN, json={"model": "tiny-flux1", "prompt": "x", "style": style})
    assert r.status_code == 404 and r.json()["error"]["code"] == "style_not_found"
    r = alice.post(GEN, json={"model": "tiny-flux2-klein", "prompt": "x", "style": style})
    assert r.status_code == 400 and r.json()["error"]["param"] == "style"
    assert "is for model 'tiny-flux1'" in r.json()["error"]["message"]
    assert (balance(bob), balance(alice)) == before


def test_a_lora_that_does_not_fit_is_400_naming_file_and_stores_nothing(
    app, alice, flux_loras, tiny_sd15_loras
):
    cases = [
        (tiny_sd15_loras[0], "tiny-flux1", "it fits the sd15 family"),
        (flux_loras["flux1"][0], "tiny-sdxl", "it fits the flux1 family"),
        (flux_loras["flux1"][1], "tiny-flux2-klein", "it fits the flux1 family"),  # XLabs
        (flux_loras["flux2"][0], "tiny-flux1", "it fits the flux2 family"),
    ]
    for path, model, says in cases:
        r = upload(alice, path, model)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["param"] == "file" and "does not fit model" in error["message"]
        assert says in error["message"]
    assert stored_styles(app) == 0 and balance(alice) == 200
    folder = app.state.kiln.settings.styles_dir
    assert not folder.exists() or not any(folder.iterdir())
