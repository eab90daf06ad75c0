"""Agentic generation through the real app on the tiny SD 1.5 model: a recipe from
references, images with scores and the agent's trace, 4 credits a generation, free
``agentic`` assets; every bad input a 4xx with nothing charged or stored."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from secrets_for_tests import TEST_SECRET
from skimage import data

from agentic.colour import downsample
from agentic.grading import read_cube
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app

EXTRACT = "/v1/agentic/extract"
GENERATE = "/v1/agentic/generations"
FAST = {"model": "tiny-sd15", "resolution": "128px", "steps": 2, "seed": 4}


def png_b64(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def references() -> list[dict]:
    return [{"image": png_b64(downsample(f(), 64))} for f in (data.coffee, data.chelsea)]


@pytest.fixture(scope="module")
def models(catalog) -> LocalModelClient:
    return LocalModelClient(catalog, device="cpu")


@pytest.fixture
def app(tmp_path, catalog, models):
    settings = Settings(home=tmp_path, secret=TEST_SECRET, image_max_pixels=20_000)
    return create_app(settings, catalog, models)


@pytest.fixture
def alice(app, make_client) -> TestClient:
    return make_client(app, credits=100, name="alice")


def balance(client: TestClient) -> int:
    return client.get("/v1/credits").json()["balance"]


def test_a_generation_returns_images_recipe_scores_and_trace_for_4_credits(alice, references):
    body = {
        **FAST,
        "prompt": "a cup on a table",
        "references": references,
        "components": {"palette": {"sources": [1], "strength": 0.8}},
        "n": 1,
        "candidates": 2,
        "rounds": 1,
        "grading_lut": True,
    }
    r = alice.post(GENERATE, json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["credits_charged"] == 4 and balance(alice) == 96
    (image,) = answer["data"]
    assert (image["width"], image["height"]) == (128, 128)
    assert 0.0 <= image["scores"]["total"] <= 1.0
    assert "LUT_3D_SIZE 17" in image["grading_cube"]
    assert len(read_cube(image["grading_cube"])) == 17
    assert set(image["scores"]["components"]) == {"palette", "grading", "lighting", "composition"}
    assert answer["recipe"]["components"]["palette"]["sources"] == [{"index": 1, "weight": 1.0}]
    assert [s["step"] for s in answer["trace"]][:3] == ["plan", "act", "critique"]
    assert answer["trace"][-1]["step"] == "refine"
    assert answer["plan"]["task"] == "controlnet"  # the catalog has the tiny ControlNet
    notes = answer["trace"][0]["notes"]
    assert any(note.startswith("image-to-prompt: ") for note in notes), notes
    # The tiny IP-Adapter is installed for sd15: the references' mean embedding steers.
    assert answer["plan"]["ip_adapter"] == "tiny-ip-adapter-sd15"
    assert any(
        note.startswith("ip-adapter: tiny-ip-adapter-sd15, mean embedding of 2") for note in notes
    )
    # A free asset: no watermark, no license, the original downloadable.
    asset = alice.get(f"/v1/assets/{image['asset_id']}").json()
    assert asset["kind"] == "agentic" and asset["license"]["state"] == "free"
    assert alice.get(f"/v1/assets/{image['asset_id']}/original").status_code == 200


def test_extract_is_free_and_its_recipe_drives_a_generation(alice, references):
    r = alice.post(EXTRACT, json={"references": references})
    assert r.status_code == 200, r.text
    recipe = r.json()["recipe"]
    assert len(recipe["references"]) == 2 and balance(alice) == 100
    assert recipe["components"]["lighting"]["target"]["key"] in ("low", "mid", "high")
    body = {**FAST, "prompt": "a cat", "recipe": recipe, "candidates": 1, "rounds": 0, "n": 2}
    r = alice.post(GENERATE, json=body)
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 2 and r.json()["credits_charged"] == 4
    assert r.json()["data"][0]["grading_cube"] is None  # only when asked
    assert r.json()["plan"]["ip_adapter"] is None  # a saved recipe has no images to embed
    assert r.json()["plan"]["structure_source"] == "recipe thumbnail of reference 0"
    assert balance(alice) == 96


def _bomb() -> str:
    return png_b64(np.zeros((200, 200, 3), np.uint8))  # 40k pixels over the 20k limit


BAD = [
    (EXTRACT, {"references": []}, 400, "references"),
    (EXTRACT, {"references": "ELEVEN"}, 400, "references"),
    (EXTRACT, {"components": {"palette": {"sources": [2]}}}, 400, "components.palette.sources"),
    (EXTRACT, {"components": {"grading": {"strength": 1.5}}}, 400, "components.grading.strength"),
    (
        EXTRACT,
        {"components": {"lighting": {"strength": -0.5}}},
        400,
        "components.lighting.strength",
    ),
    (EXTRACT, {"components": {"texture": {"strength": 0.5}}}, 400, "components"),
    (
        EXTRACT,
        {"references": [{"image": base64.b64encode(b"not an image").decode()}]},
        400,
        "references.0.image",
    ),
    (EXTRACT, {"references": "BOMB"}, 413, "references.1.image"),
    (GENERATE, {"references": []}, 400, "references"),
    (GENERATE, {"references": "ELEVEN"}, 400, "references"),
    (GENERATE, {"components": {"palette": {"sources": [5]}}}, 400, "components.palette.sources"),
    (
        GENERATE,
        {"components": {"composition": {"strength": 2}}},
        400,
        "components.composition.strength",
    ),
    (GENERATE, {"components": {"mood": {}}}, 400, "components"),
    (GENERATE, {"references": "BOMB"}, 413, "references.1.image"),
    (GENERATE, {"candidates": 9}, 400, "candidates"),
    (GENERATE, {"n": 4, "candidates": 4}, 400, "candidates"),
    (GENERATE, {"rounds": 7}, 400, "rounds"),
    (GENERATE, {"recipe": {"references": []}}, 400, "references"),
    (GENERATE, {"references": None, "recipe": {"references": [{}]}}, 400, "recipe"),
    (GENERATE, {"model": "tiny-instruct"}, 400, "model"),
    (GENERATE, {"model": "no-such-model"}, 404, "model"),
]


@pytest.mark.parametrize(("route", "change", "status", "param"), BAD)
def test_bad_input_is_refused_and_charges_nothing(alice, references, route, change, status, param):
    body = {"references": references}
    if route == GENERATE:
        body.update(FAST, prompt="x")
    body.update(change)
    if body.get("references") == "ELEVEN":
        body["references"] = [references[0]] * 11
    if body.get("references") == "BOMB":
        body["references"] = [references[0], {"image": _bomb()}]
    r = alice.post(route, json={k: v for k, v in body.items() if v is not None})
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param
    assert balance(alice) == 100
    assert alice.get("/v1/assets").json()["data"] == []


def _stored_asset(app, tenant_id: str, kind: str) -> str:
    from serving.core.assets.service import ImageRecord

    pixels = downsample(data.rocket(), 64)
    record = ImageRecord(
        kind=kind,
        model="tiny-sd15",
        prompt="x",
        seed=1,
        width=pixels.shape[1],
        height=pixels.shape[0],
        style="sty_test" if kind != "base" else None,
    )
    asset, _ = app.state.kiln.assets.create(tenant_id, record, pixels)
    return asset.id


def test_asset_references_are_the_callers_own_and_style_images_need_a_license(
    app, alice, make_client, references
):
    bob = make_client(app, credits=0, name="bob")
    theirs = _stored_asset(app, bob.tenant_id, "base")
    unlicensed = _stored_asset(app, alice.tenant_id, "artist_style")
    mine = _stored_asset(app, alice.tenant_id, "base")
    body = {**FAST, "prompt": "x", "references": [references[0], {"asset_id": theirs}]}
    r = alice.post(GENERATE, json=body)
    assert r.status_code == 404 and r.json()["error"]["code"] == "asset_not_found"
    body["references"][1] = {"asset_id": unlicensed}
    r = alice.post(GENERATE, json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "license_required"
    assert balance(alice) == 100
    r = alice.post(EXTRACT, json={"references": [{"asset_id": mine}]})
    assert r.status_code == 200 and r.json()["recipe"]["references"][0]["width"] == 64


def _png_b64_of(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


THUMBNAIL = "recipe.references.0.composition.thumbnail_png"
HUGE = "12000x12000"


@pytest.mark.parametrize(
    ("thumbnail", "status", "code"),
    [
        ("", 400, "invalid_value"),
        (None, 400, "invalid_value"),  # the key left out
        (7, 400, "invalid_value"),
        ("not base64!", 400, "invalid_value"),
        ("GIF", 400, "unsupported_image_format"),
        (HUGE, 413, "upload_too_large"),  # the header says so: nothing is decompressed
    ],
)
def test_a_recipes_thumbnails_go_through_the_input_decoder(
    alice, references, thumbnail, status, code
):
    recipe = alice.post(EXTRACT, json={"references": references}).json()["recipe"]
    composition = recipe["references"][0]["composition"]
    if thumbnail is None:
        del composition["thumbnail_png"]
    elif thumbnail == "GIF":
        composition["thumbnail_png"] = _png_b64_of(Image.new("RGB", (8, 8)), "GIF")
    elif thumbnail == HUGE:
        composition["thumbnail_png"] = _png_b64_of(Image.new("1", (12000, 12000)))
    else:
        composition["thumbnail_png"] = thumbnail
    r = alice.post(GENERATE, json={**FAST, "prompt": "x", "recipe": recipe, "candidates": 1})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["param"] == THUMBNAIL
    assert balance(alice) == 100 and alice.get("/v1/assets").json()["data"] == []


def test_a_recipes_thumbnail_is_re_encoded_small_before_the_agent_sees_it(tmp_path):
    from agentic.composition import THUMB_SIDE
    from agentic.recipe import extract_recipe
    from serving.core.agentic.checks import checked_recipe

    settings = Settings(home=tmp_path, secret=TEST_SECRET)
    raw = extract_recipe([downsample(data.coffee(), 64)]).to_json()
    big = np.zeros((300, 400, 3), np.uint8)
    raw["references"][0]["composition"]["thumbnail_png"] = png_b64(big)
    recipe = checked_recipe(raw, {}, settings)
    thumbnail = recipe.references[0].composition.thumbnail
    with Image.open(io.BytesIO(base64.b64decode(thumbnail))) as image:
        assert image.format == "PNG" and max(image.size) == THUMB_SIDE
