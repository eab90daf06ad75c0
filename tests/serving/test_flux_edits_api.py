"""FLUX edits through the real app on the default catalog, in-process (issue 21, Edits):
``/v1/models`` lists each model's edit tools; replace and erase on FLUX.1 run on its Fill
sibling and on FLUX.2 [klein] itself, the pixels outside the feathered mask the input's
exactly; instruct on FLUX.1 Kontext and on [klein]; which model serves which tool follows
the request, then the source asset's model, then the first model that has it; the OpenAI
edit and variation routes through the official SDK; and each bad input a 400 naming its
field that charges and stores nothing."""

from __future__ import annotations

import numpy as np
import pytest
from edit_samples import balance, box_mask, decode, outside_feather, photo, png, png_b64
from fastapi.testclient import TestClient
from openai import BadRequestError, OpenAI

EDITS = "/v1/edits"
FLUX1, KLEIN = "tiny-flux1", "tiny-flux2-klein"
KONTEXT, FILL = "tiny-flux1-kontext", "tiny-flux1-fill"


def asset_count(client: TestClient) -> int:
    return len(client.get("/v1/assets").json()["data"])


def test_models_list_the_edit_tools_of_each_flux_model(alice):
    cards = {card["id"]: card for card in alice.get("/v1/models").json()["data"]}
    edits = {"replace", "recreate", "erase"}
    flux1, klein = set(cards[FLUX1]["features"]), set(cards[KLEIN]["features"])
    assert edits | {"variations"} <= flux1 and "instruct" not in flux1
    assert edits | {"variations", "instruct"} <= klein
    assert "instruct" in cards[KONTEXT]["features"] and not edits & set(cards[KONTEXT]["features"])
    assert edits <= set(cards[FILL]["features"]) and "instruct" not in cards[FILL]["features"]
    assert "text_to_image" not in cards[KONTEXT]["features"] + cards[FILL]["features"]
    assert cards[FILL]["family"] == cards[KONTEXT]["family"] == "flux1"


@pytest.mark.parametrize(
    ("model", "tool", "fields", "runs_on"),
    [
        (FLUX1, "replace", {"prompt": "a red lantern"}, FILL),  # tiny-flux1's inpaint_model
        (FLUX1, "erase", {}, FILL),
        (FLUX1, "recreate", {"prompt": "a lantern"}, FILL),  # Fill at strength 0.6
        (KLEIN, "replace", {"prompt": "a red lantern"}, KLEIN),
        (KLEIN, "recreate", {"prompt": "a lantern", "strength": 0.8}, KLEIN),
    ],
)
def test_masked_edits_keep_the_pixels_outside_the_feathered_mask(
    alice, model, tool, fields, runs_on
):
    image, mask = photo(), box_mask()
    before, stored = balance(alice), asset_count(alice)
    body = {"tool": tool, "model": model, "image": png_b64(image), "mask": png_b64(mask)}
    response = alice.post(EDITS, json={**body, "seed": 3, **fields})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["model"], result["tool"]) == (runs_on, tool)
    out = decode(result["data"][0]["b64_json"])
    assert out.shape == image.shape  # the input's size, not the 16-px work size
    keep = outside_feather(mask, erase=tool == "erase")
    np.testing.assert_array_equal(out[keep], image[keep])
    inside = mask == 255
    assert np.abs(out[inside].astype(int) - image[inside]).mean() > 5  # it did edit
    assert result["credits_charged"] == 2 and balance(alice) == before - 2
    assert asset_count(alice) == stored + 1


def test_klein_recreates_a_whole_image_without_a_mask(alice):
    image = photo()
    body = {"tool": "recreate", "model": KLEIN, "image": png_b64(image), "prompt": "a field"}
    response = alice.post(EDITS, json={**body, "seed": 1})
    assert response.status_code == 200, response.text
    out = decode(response.json()["data"][0]["b64_json"])
    assert out.shape == image.shape and (out != image).mean() > 0.5


def test_instruct_on_kontext_same_seed_same_pixels_and_the_assets_model_edits_it_again(alice):
    image = photo(96, 64)
    body = {"tool": "instruct", "model": KONTEXT, "image": png_b64(image), "seed": 7}
    first = alice.post(EDITS, json={**body, "instruction": "make it blue"})
    assert first.status_code == 200, first.text
    again = alice.post(EDITS, json={**body, "instruction": "make it blue"}).json()
    pixels = decode(first.json()["data"][0]["b64_json"])
    assert pixels.shape == image.shape
    np.testing.assert_array_equal(pixels, decode(again["data"][0]["b64_json"]))
    # No model named: the source asset's model has instruct, so it edits it again (the
    # first model with instruct in the catalog is tiny-instruct).
    parent = first.json()["data"][0]["asset_id"]
    follow = {"tool": "instruct", "asset_id": parent, "instruction": "add a moon"}
    response = alice.post(EDITS, json=follow)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == KONTEXT
    child = alice.get(f"/v1/assets/{response.json()['data'][0]['asset_id']}").json()
    assert child["parent_id"] == parent


def test_instruct_on_klein_from_one_of_its_generations(alice):
    made = alice.post("/v1/generations", json={"model": KLEIN, "prompt": "a cup", "seed": 2})
    assert made.status_code == 200, made.text
    parent = made.json()["data"][0]["asset_id"]
    body = {"tool": "instruct", "asset_id": parent, "instruction": "make the cup red", "n": 2}
    response = alice.post(EDITS, json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["model"] == KLEIN  # the source asset's model has instruct
    assert result["credits_charged"] == 4 and len(result["data"]) == 2
    assert decode(result["data"][0]["b64_json"]).shape == (128, 128, 3)


@pytest.fixture
def openai_sdk(alice) -> OpenAI:
    """The official SDK over the in-process app (TestClient is an httpx client)."""
    key = alice.headers["authorization"].removeprefix("Bearer ")
    return OpenAI(base_url="http://testserver/v1", api_key=key, http_client=alice, max_retries=0)


def openai_mask(mask: np.ndarray) -> bytes:
    """Kiln's white-is-edit mask in OpenAI's form: RGBA, alpha 0 where to edit."""
    rgba = np.full((*mask.shape, 4), 255, np.uint8)
    rgba[..., 3] = np.where(mask == 255, 0, 255)
    return png(rgba)


def test_the_openai_sdk_edits_and_varies_on_flux(alice, openai_sdk):
    image, mask = photo(), box_mask()
    before = balance(alice)
    edited = openai_sdk.images.edit(
        model=FLUX1,
        image=("in.png", png(image), "image/png"),
        mask=("mask.png", openai_mask(mask), "image/png"),
        prompt="a red lantern",
        response_format="b64_json",
        extra_body={"seed": 4},
    )
    out = decode(edited.data[0].b64_json)
    keep = outside_feather(mask, erase=False)
    np.testing.assert_array_equal(out[keep], image[keep])
    instructed = openai_sdk.images.edit(
        model=KONTEXT,
        image=("in.png", png(image), "image/png"),
        prompt="make it night",
        response_format="b64_json",
    )
    assert decode(instructed.data[0].b64_json).shape == image.shape
    varied = openai_sdk.images.create_variation(
        model=KLEIN, image=("in.png", png(photo(64, 64)), "image/png"), response_format="b64_json"
    )
    assert decode(varied.data[0].b64_json).shape == (64, 64, 3)
    assert balance(alice) == before - 6  # replace, instruct, variation: 2 each
    with pytest.raises(BadRequestError) as info:
        openai_sdk.images.create_variation(
            model=KONTEXT, image=("in.png", png(photo(64, 64)), "image/png")
        )
    assert info.value.body["param"] == "model"
    assert balance(alice) == before - 6


INSTRUCT_MODELS = f"models that have it: tiny-instruct, {KLEIN}, {KONTEXT}"
REPLACE_MODELS = f"models that have it: tiny-sd15, tiny-sdxl, {FLUX1}, {KLEIN}, {FILL}"


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"tool": "instruct", "model": FLUX1, "instruction": "x"}, "model", INSTRUCT_MODELS),
        ({"tool": "instruct", "model": FILL, "instruction": "x"}, "model", INSTRUCT_MODELS),
        (
            {"tool": "replace", "model": KONTEXT, "prompt": "x", "mask": True},
            "model",
            REPLACE_MODELS,
        ),
        # Fill regenerates inside a mask only: a whole-image recreate is its base model's.
        ({"tool": "recreate", "model": FILL, "prompt": "x"}, "model", "models that have it"),
        (
            {"tool": "instruct", "model": KONTEXT, "instruction": "x", "image_guidance": 1.5},
            "image_guidance",
            "InstructPix2Pix",
        ),
        ({"tool": "erase", "model": KLEIN, "objects": "a cup", "mask": True}, "objects", ""),
        # [klein]'s reference image input takes up to 8:1.
        ({"tool": "instruct", "model": KLEIN, "instruction": "x", "wide": True}, "image", "8:1"),
    ],
)
def test_a_tool_the_model_lacks_is_400_naming_the_models_that_have_it(alice, body, param, says):
    body = dict(body)
    image = photo(600, 40, seed=1) if body.pop("wide", False) else photo(64, 64, seed=1)
    body["image"] = png_b64(image)
    if body.get("mask"):
        body["mask"] = png_b64(box_mask(64, 64))
    before, stored = balance(alice), asset_count(alice)
    r = alice.post(EDITS, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and says in error["message"], error
    assert balance(alice) == before and asset_count(alice) == stored


def test_the_openai_sdk_edits_by_instruction_on_klein_as_the_native_route_does(alice, openai_sdk):
    image = photo(64, 64, seed=5)
    before = balance(alice)
    instructed = openai_sdk.images.edit(
        model=KLEIN,
        image=("in.png", png(image), "image/png"),
        prompt="make it night",
        response_format="b64_json",
        extra_body={"tool": "instruct", "seed": 6},
    )
    native = alice.post(
        EDITS,
        json={
            "tool": "instruct",
            "model": KLEIN,
            "image": png_b64(image),
            "instruction": "make it night",
            "seed": 6,
        },  # fmt: skip
    )
    assert native.status_code == 200, native.text
    pixels = decode(instructed.data[0].b64_json)
    np.testing.assert_array_equal(pixels, decode(native.json()["data"][0]["b64_json"]))
    # Without the tool the same call is a recreate (the default on every base model).
    recreated = openai_sdk.images.edit(
        model=KLEIN,
        image=("in.png", png(image), "image/png"),
        prompt="make it night",
        response_format="b64_json",
        extra_body={"seed": 6},
    )
    assert not np.array_equal(decode(recreated.data[0].b64_json), pixels)
    assert balance(alice) == before - 6


@pytest.mark.parametrize(
    ("model", "mask", "param"),
    [(FLUX1, False, "tool"), ("tiny-sd15", False, "tool"), (KLEIN, True, "mask")],
)
def test_an_openai_instruct_edit_a_model_cannot_take_is_400(alice, openai_sdk, model, mask, param):
    before, stored = balance(alice), asset_count(alice)
    extra = {"mask": ("mask.png", openai_mask(box_mask(64, 64)), "image/png")} if mask else {}
    with pytest.raises(BadRequestError) as info:
        openai_sdk.images.edit(
            model=model,
            image=("in.png", png(photo(64, 64, seed=1)), "image/png"),
            prompt="make it night",
            extra_body={"tool": "instruct"},
            **extra,
        )
    assert info.value.body["param"] == param, info.value.body
    assert balance(alice) == before and asset_count(alice) == stored
