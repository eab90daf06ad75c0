"""POST /v1/edits through the real app on the tiny models: each tool runs, the pixels
outside the feathered mask are the input's exactly, results are assets derived from the
input (a style image's edit is style-kind), and every bad input is a 4xx that charges
nothing and stores nothing."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from edit_samples import (
    balance,
    box_mask,
    decode,
    outside_feather,
    photo,
    png_b64,
)  # noqa: F401 (fixtures)
from fastapi.testclient import TestClient
from PIL import Image
from secrets_for_tests import TEST_SECRET

from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app

EDITS = "/v1/edits"


def asset_count(client: TestClient) -> int:
    return len(client.get("/v1/assets").json()["data"])


@pytest.mark.parametrize(
    ("tool", "fields"),
    [
        ("replace", {"prompt": "a red lantern"}),
        ("recreate", {"prompt": "a lantern", "strength": 0.7}),
        ("erase", {"objects": "lantern"}),
    ],
)
def test_pixels_outside_the_feathered_mask_are_the_input(alice, tool, fields):
    image, mask = photo(), box_mask()
    body = {"tool": tool, "image": png_b64(image), "mask": png_b64(mask), "seed": 3, **fields}
    response = alice.post(EDITS, json={"model": "tiny-sd15", **body})
    assert response.status_code == 200, response.text
    result = response.json()
    out = decode(result["data"][0]["b64_json"])
    assert out.shape == image.shape  # the input's size, not the work size
    keep = outside_feather(mask, erase=tool == "erase")
    np.testing.assert_array_equal(out[keep], image[keep])
    inside = mask == 255
    assert np.abs(out[inside].astype(int) - image[inside]).mean() > 5  # it did edit
    assert result["credits_charged"] == 2  # the catalog's edit price
    assert result["tool"] == tool


def test_recreate_without_a_mask_regenerates_the_whole_image(alice):
    image = photo()
    body = {"tool": "recreate", "image": png_b64(image), "prompt": "a field", "seed": 1}
    result = alice.post(EDITS, json=body).json()
    out = decode(result["data"][0]["b64_json"])
    assert out.shape == image.shape
    assert (out != image).mean() > 0.5


def test_instruct_runs_on_the_instruct_model_by_default(alice):
    image = photo(96, 96)
    body = {"tool": "instruct", "image": png_b64(image), "instruction": "make it blue", "n": 2}
    response = alice.post(EDITS, json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["model"] == "tiny-instruct"
    assert len(result["data"]) == 2
    assert result["credits_charged"] == 4


def test_instruct_on_a_model_without_it_names_the_models_that_have_it(alice):
    body = {"tool": "instruct", "model": "tiny-sd15", "image": png_b64(photo()), "instruction": "x"}
    response = alice.post(EDITS, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "model"
    assert "tiny-instruct" in error["message"]


def test_an_edit_of_an_asset_is_derived_from_it(alice):
    made = alice.post(
        "/v1/generations", json={"model": "tiny-sdxl", "prompt": "a boat", "seed": 2}
    ).json()
    parent = made["data"][0]["asset_id"]
    body = {"tool": "replace", "asset_id": parent, "mask": png_b64(box_mask(128, 128))}
    result = alice.post(EDITS, json={**body, "prompt": "a sail"}).json()
    assert result["model"] == "tiny-sdxl"  # the source asset's model
    child = alice.get(f"/v1/assets/{result['data'][0]['asset_id']}").json()
    assert child["parent_id"] == parent
    assert child["kind"] == "base"


def test_an_edit_of_a_style_asset_is_watermarked_and_license_gated(
    image_app, alice, tiny_sd15_loras
):
    from serving.core.styles import StyleImport

    request = StyleImport(name="ink", base_model="tiny-sd15", kind="artist")
    style = image_app.state.kiln.styles.import_file(tiny_sd15_loras[0], request, None)
    made = alice.post(
        "/v1/generations",
        json={"model": "tiny-sd15", "prompt": "a harbour", "style": style.id, "seed": 4},
    ).json()
    parent = made["data"][0]["asset_id"]
    body = {"tool": "erase", "asset_id": parent, "mask": png_b64(box_mask(128, 128))}
    result = alice.post(EDITS, json=body).json()
    image = result["data"][0]
    assert image["watermarked"] is True and image["license"] == "required"
    child = image["asset_id"]
    assert alice.get(f"/v1/assets/{child}").json()["kind"] == "artist_style"
    assert alice.get(f"/v1/assets/{child}/original").status_code == 403
    assert alice.post(f"/v1/assets/{child}/license").status_code == 200
    assert alice.get(f"/v1/assets/{child}/original").status_code == 200


def truncated_png() -> str:
    buf = io.BytesIO()
    Image.fromarray(photo()).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()[:200]).decode()


def bomb_png() -> str:
    """A small PNG that declares 20000 x 20000 pixels."""
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


BAD = [
    ({"mask": png_b64(box_mask(64, 64))}, 400, "mask"),  # another size
    ({"image": base64.b64encode(b"not an image at all").decode()}, 400, "image"),
    ({"image": truncated_png()}, 400, "image"),
    ({"image": "%%% not base64 %%%"}, 400, "image"),
    ({"image": bomb_png()}, 413, "image"),
    ({"asset_id": "ast_nope", "image": None}, 404, None),
    ({"mask": None}, 400, "mask"),  # replace needs a mask
    ({"prompt": ""}, 400, "prompt"),
    ({"tool": "erase"}, 400, "prompt"),  # erase takes no prompt
    ({"tool": "paint"}, 400, "tool"),
    ({"instruction": "x"}, 400, "instruction"),
    ({"strength": 1.5}, 400, "strength"),
    ({"n": 13}, 400, "n"),
    ({"model": "nope"}, 404, "model"),
    ({"image": None}, 400, "image"),  # neither image nor asset_id
    # recreate's strength 0.6 of 1 step: SD runs none (the call failed as a 500 before)
    ({"tool": "recreate", "mask": None, "steps": 1}, 400, "steps"),
    ({"strength": 0.3, "steps": 3}, 400, "steps"),
]


@pytest.mark.parametrize(("change", "status", "param"), BAD)
def test_bad_input_is_refused_and_costs_nothing(alice, change, status, param):
    body = {
        "tool": "replace",
        "model": "tiny-sd15",
        "image": png_b64(photo()),
        "mask": png_b64(box_mask()),
        "prompt": "a lantern",
        **change,
    }
    body = {k: v for k, v in body.items() if v is not None}
    before = balance(alice)
    response = alice.post(EDITS, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    assert balance(alice) == before
    assert asset_count(alice) == 0


def test_an_oversize_image_is_413_before_decoding(tmp_path, catalog, local_models, make_client):
    app = create_app(
        Settings(home=tmp_path, secret=TEST_SECRET, image_max_bytes=1000), catalog, local_models
    )
    client = make_client(app, credits=10)
    body = {"tool": "recreate", "image": png_b64(photo()), "prompt": "x"}
    response = client.post(EDITS, json=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"
    assert balance(client) == 10


def test_another_tenants_asset_is_not_found(image_app, alice, make_client):
    made = alice.post("/v1/generations", json={"model": "tiny-sd15", "prompt": "a boat"}).json()
    bob = make_client(image_app, credits=10, name="bob")
    body = {"tool": "recreate", "asset_id": made["data"][0]["asset_id"], "prompt": "x"}
    response = bob.post(EDITS, json=body)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "asset_not_found"
    assert balance(bob) == 10


def test_models_report_their_features(alice):
    cards = {card["id"]: card for card in alice.get("/v1/models").json()["data"]}
    assert "instruct" in cards["tiny-instruct"]["features"]
    assert "text_to_image" not in cards["tiny-instruct"]["features"]
    for tool in ("reference", "replace", "recreate", "erase"):
        assert tool in cards["tiny-sd15"]["features"]
    assert "instruct" not in cards["tiny-sd15"]["features"]


def test_a_base_models_dedicated_inpaint_model_runs_its_masked_edits(
    tmp_path, catalog, make_client
):
    """With ``inpaint_model`` in the catalog, replace and erase run on that checkpoint (a
    9-channel UNet), recreate without a mask still on the base model."""
    from weights.catalog import load_catalog
    from weights.tiny import ensure_tiny_models

    extra = tmp_path / "models.toml"
    extra.write_text(
        f"""
[models.tiny-sd15]
source = "{catalog.get("tiny-sd15").source}"
inpaint_model = "tiny-sd15-inpaint"

[models.tiny-sd15-inpaint]
kind = "inpaint"
family = "sd15"
source = "{tmp_path / "tiny-sd15-inpaint"}"
tiny = "sd15_inpaint"
aspect_ratios = ["1:1"]
default_steps = 4
resolutions = {{ "128px" = 128 }}
credits = {{ "128px" = 1 }}
"""
    )
    local = load_catalog(catalog.get("tiny-sd15").source.parent.parent, extra)
    ensure_tiny_models([local.get("tiny-sd15-inpaint")])
    app = create_app(
        Settings(home=tmp_path, secret=TEST_SECRET), local, LocalModelClient(local, "cpu")
    )
    client = make_client(app, credits=20)
    image, mask = photo(), box_mask()
    body = {"tool": "replace", "model": "tiny-sd15", "image": png_b64(image),
            "mask": png_b64(mask), "prompt": "a lantern"}  # fmt: skip
    result = client.post(EDITS, json=body).json()
    assert result["model"] == "tiny-sd15-inpaint"
    out = decode(result["data"][0]["b64_json"])
    keep = outside_feather(mask, erase=False)
    np.testing.assert_array_equal(out[keep], image[keep])
    whole = {"tool": "recreate", "image": png_b64(image), "prompt": "x"}
    assert client.post(EDITS, json=whole).json()["model"] == "tiny-sd15"
    card = client.get("/v1/models/tiny-sd15-inpaint").json()
    assert card["kind"] == "inpaint" and "text_to_image" not in card["features"]


def test_replace_takes_its_prompt_from_an_images_extract(alice):
    image, mask = photo(), box_mask()
    source = png_b64(photo(64, 64, seed=5))
    body = {"tool": "replace", "image": png_b64(image), "mask": png_b64(mask),
            "image_to_prompt": {"image": source, "extract": "everything"}}  # fmt: skip
    response = alice.post(EDITS, json={"model": "tiny-sd15", **body})
    assert response.status_code == 200, response.text
    asset = alice.get(f"/v1/assets/{response.json()['data'][0]['asset_id']}").json()
    assert asset["prompt"]  # the extract became the prompt
    assert response.json()["credits_charged"] == 2  # the extract is free inside an edit
    bad = {**body, "image_to_prompt": {"image": source, "extract": "smell"}}
    assert alice.post(EDITS, json=bad).status_code == 400
    erase = {**body, "tool": "erase"}
    assert alice.post(EDITS, json=erase).json()["error"]["param"] == "image_to_prompt"
