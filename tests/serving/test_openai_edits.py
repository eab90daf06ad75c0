"""OpenAI's edit and variation routes over multipart, through the real app on the tiny
models: OpenAI's mask convention (alpha 0 = edit) is converted right, pixels outside the
feathered mask are the input's, form strings parse as numbers, and bad uploads are 4xx
that charge nothing."""

from __future__ import annotations

import numpy as np
import pytest
from edit_samples import balance, box_mask, decode, outside_feather, photo, png
from secrets_for_tests import TEST_SECRET

from serving.core.settings import Settings
from serving.http.app import create_app

EDITS = "/v1/images/edits"
VARIATIONS = "/v1/images/variations"


def openai_mask(mask: np.ndarray) -> bytes:
    """Kiln's white-is-edit mask in OpenAI's form: RGBA, alpha 0 where to edit."""
    rgba = np.full((*mask.shape, 4), 255, np.uint8)
    rgba[..., 3] = np.where(mask == 255, 0, 255)
    return png(rgba)


@pytest.mark.parametrize("tool", [None, "replace", "recreate", "erase"])
def test_a_masked_edit_keeps_the_pixels_outside_the_alpha_mask(alice, tool):
    """Alpha 0 marks the edit; the default tool with a mask is replace; Kiln's ``tool``
    extension picks recreate or erase (whose prompt names what goes)."""
    image, mask = photo(), box_mask()
    files = [("image", ("in.png", png(image), "image/png")),
             ("mask", ("m.png", openai_mask(mask), "image/png"))]  # fmt: skip
    data = {"prompt": "a red lantern", "model": "tiny-sd15", "n": "2", "seed": "5"}
    if tool is not None:
        data["tool"] = tool
    response = alice.post(EDITS, files=files, data=data)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["data"]) == 2 and body["size"] == "100x75"
    keep = outside_feather(mask, erase=tool == "erase")
    for item in body["data"]:
        out = decode(item["b64_json"])
        np.testing.assert_array_equal(out[keep], image[keep])
        assert np.abs(out[mask == 255].astype(int) - image[mask == 255]).mean() > 5
    assert balance(alice) == 100 - 4


def test_the_images_own_transparency_is_the_mask_when_none_is_sent(alice):
    image, mask = photo(), box_mask()
    rgba = np.dstack([image, np.where(mask == 255, 0, 255).astype(np.uint8)])
    files = {"image": ("in.png", png(rgba), "image/png")}
    response = alice.post(EDITS, files=files, data={"prompt": "a lantern", "model": "tiny-sd15"})
    assert response.status_code == 200, response.text
    out = decode(response.json()["data"][0]["b64_json"])
    keep = outside_feather(mask, erase=False)
    np.testing.assert_array_equal(out[keep], image[keep])


def test_an_edit_without_mask_recreates_at_the_requested_size(alice):
    files = {"image": ("in.png", png(photo()), "image/png")}
    data = {"prompt": "a field", "size": "128x128", "response_format": "url"}
    response = alice.post(EDITS, files=files, data=data)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["size"] == "128x128"
    assert alice.get(body["data"][0]["url"]).status_code == 200


def test_a_variation_is_an_image_of_the_same_size(alice):
    files = {"image": ("in.png", png(photo()), "image/png")}
    response = alice.post(VARIATIONS, files=files, data={"n": "3", "model": "tiny-sdxl"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["data"]) == 3
    assert decode(body["data"][0]["b64_json"]).shape == (75, 100, 3)
    assert balance(alice) == 100 - 6


def test_an_instruct_model_takes_the_prompt_as_the_instruction(alice):
    files = {"image": ("in.png", png(photo(64, 64)), "image/png")}
    data = {"prompt": "make it night", "model": "tiny-instruct"}
    response = alice.post(EDITS, files=files, data=data)
    assert response.status_code == 200, response.text


def rgb_mask_png() -> bytes:
    return png(np.zeros((75, 100, 3), np.uint8))


BAD_EDITS = [
    ({"mask": ("m.png", openai_mask(box_mask(64, 64)), "image/png")}, {}, 400, "mask"),
    ({"mask": ("m.png", rgb_mask_png(), "image/png")}, {}, 400, "mask"),  # no alpha
    ({"image": ("x.png", b"not an image", "image/png")}, {}, 400, "image"),
    ({"image": ("x.png", png(photo())[:150], "image/png")}, {}, 400, "image"),
    ({}, {"n": "many"}, 400, "n"),
    ({}, {"n": "13"}, 400, "n"),
    ({}, {"size": "999x999"}, 400, "size"),
    ({}, {"wibble": "1"}, 400, "wibble"),
    ({}, {"model": "nope"}, 404, "model"),
    ({}, {"prompt": None}, 400, "prompt"),
    ({}, {"tool": "paint"}, 400, "tool"),
]


@pytest.mark.parametrize(("files_change", "data_change", "status", "param"), BAD_EDITS)
def test_bad_edits_are_refused_and_cost_nothing(alice, files_change, data_change, status, param):
    files = {
        "image": ("in.png", png(photo()), "image/png"),
        "mask": ("m.png", openai_mask(box_mask()), "image/png"),
        **files_change,
    }
    data = {"prompt": "a lantern", "model": "tiny-sd15", **data_change}
    data = {k: v for k, v in data.items() if v is not None}
    response = alice.post(EDITS, files=files, data=data)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
    assert balance(alice) == 100
    assert alice.get("/v1/assets").json()["data"] == []


def test_an_oversize_upload_is_413(tmp_path, catalog, local_models, make_client):
    app = create_app(
        Settings(home=tmp_path, secret=TEST_SECRET, image_max_bytes=2000), catalog, local_models
    )
    client = make_client(app, credits=10)
    files = {"image": ("in.png", png(photo(200, 200, seed=1)), "image/png")}
    response = client.post(VARIATIONS, files=files)
    assert response.status_code == 413
    assert balance(client) == 10


def test_a_variation_takes_one_image(alice):
    files = [("image[]", ("a.png", png(photo()), "image/png")),
             ("image[]", ("b.png", png(photo()), "image/png"))]  # fmt: skip
    response = alice.post(VARIATIONS, files=files)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "image"


def test_further_images_steer_the_edit_as_references(alice):
    image = photo()
    one = [("image[]", ("a.png", png(image), "image/png"))]
    two = one + [("image[]", ("b.png", png(255 - photo(seed=9)), "image/png"))]
    data = {"prompt": "a lantern", "model": "tiny-sd15", "seed": "2"}
    alone = alice.post(EDITS, files=one, data=data)
    steered = alice.post(EDITS, files=two, data=data)
    assert alone.status_code == 200 and steered.status_code == 200, steered.text
    assert decode(alone.json()["data"][0]["b64_json"]).shape == image.shape
    assert not np.array_equal(
        decode(alone.json()["data"][0]["b64_json"]), decode(steered.json()["data"][0]["b64_json"])
    )
