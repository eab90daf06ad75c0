"""FLUX through the real app on the default catalog, in-process (``LocalModelClient``, the
tiny FLUX.1 [dev]-like and FLUX.2 [klein]-like models): native and OpenAI generations
with a seed per image, ``/v1/models``' per-model guidance, schedulers and prompt limit,
and every bad input a 400 naming its field that charges and stores nothing (the prompt
limits, emphasis on T5/Qwen3, guidance and negative prompts a model takes no part of,
SD schedulers, sizes, and the SD-only features: IP-Adapter references, edits)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from edit_samples import balance, decode, photo, png, png_b64
from fastapi.testclient import TestClient
from openai import BadRequestError, OpenAI

GEN = "/v1/generations"
FLUX1 = "tiny-flux1"
KLEIN = "tiny-flux2-klein"


def _mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def asset_count(client: TestClient) -> int:
    return len(client.get("/v1/assets").json()["data"])


def test_models_show_guidance_schedulers_prompt_limits_and_features(alice):
    cards = {card["id"]: card for card in alice.get("/v1/models").json()["data"]}
    flux1, klein, sd15 = cards[FLUX1], cards[KLEIN], cards["tiny-sd15"]
    assert (flux1["family"], flux1["guidance_kind"], flux1["max_sequence_length"]) == (
        "flux1",
        "embedded",
        512,
    )
    assert flux1["schedulers"] == ["flow_euler", "dpmpp_2m"]
    assert flux1["defaults"] | {"size": None} == {
        "resolution": "128px",
        "aspect_ratio": "1:1",
        "size": None,
        "steps": 4,
        "guidance": 3.5,
        "scheduler": "flow_euler",
    }
    edits = ["replace", "recreate", "erase", "variations"]
    # Pins: FLUX.1 on its Kontext sibling, [klein] itself (tests/serving/test_flux_pins.py);
    # agentic on both, FLUX.1's composition through its ControlNet (test_flux_agentic.py).
    flux1_features = ["text_to_image", "reference", *edits, "pins", "structure_guidance"]
    assert flux1["features"] == [*flux1_features, "agentic", "styles", "image_to_prompt"]
    assert (klein["guidance_kind"], klein["max_sequence_length"]) == ("none", 128)
    assert klein["defaults"]["guidance"] == 0.0
    klein_features = ["text_to_image", "reference", "instruct", *edits, "pins", "agentic"]
    assert klein["features"] == [*klein_features, "styles", "image_to_prompt"]
    assert "80x128" in klein["sizes"]  # the 16-px grid
    assert (sd15["guidance_kind"], sd15["max_sequence_length"]) == ("cfg", None)
    assert "euler" in sd15["schedulers"] and "flow_euler" not in sd15["schedulers"]
    assert {"styles", "pins", "agentic", "replace"} <= set(sd15["features"])


@pytest.mark.parametrize("model", [FLUX1, KLEIN])
def test_a_flux_generation_has_a_seed_per_image_and_is_charged_and_stored(alice, model):
    before, stored = balance(alice), asset_count(alice)
    body = {"model": model, "prompt": "a red fox in the snow", "n": 2, "seed": 21}
    r = alice.post(GEN, json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [image["seed"] for image in answer["data"]] == [21, 22]
    first, second = (decode(image["b64_json"]) for image in answer["data"])
    assert first.shape == (128, 128, 3) and not np.array_equal(first, second)
    assert answer["credits_charged"] == 2 and balance(alice) == before - 2
    assert asset_count(alice) == stored + 2
    # The second image's seed alone: that image again (a seed per image, not per request;
    # a batch of 2 and a call of 1 differ only by float rounding on CPU).
    again = decode(alice.post(GEN, json={**body, "n": 1, "seed": 22}).json()["data"][0]["b64_json"])
    assert _mean_diff(again, second) < 1.0 < _mean_diff(again, first)


def test_flux1_takes_a_reference_as_img2img(alice):
    reference = {"image": png_b64(photo(160, 120, seed=3)), "strength": 0.5}
    body = {"model": FLUX1, "prompt": "a quiet street", "seed": 4, "reference": reference}
    r = alice.post(GEN, json=body)
    assert r.status_code == 200, r.text
    assert decode(r.json()["data"][0]["b64_json"]).shape == (128, 128, 3)


def test_klein_takes_a_reference_as_img2img(alice):
    # [klein]'s img2img: its inpaint pipeline under a whole-image mask (diffusers has no
    # FLUX.2 img2img pipeline); the reference is cover-cropped to the generation's size.
    reference = {"image": png_b64(photo(160, 120, seed=3)), "strength": 0.5}
    body = {"model": KLEIN, "prompt": "a quiet street", "seed": 4, "reference": reference}
    r = alice.post(GEN, json=body)
    assert r.status_code == 200, r.text
    with_reference = decode(r.json()["data"][0]["b64_json"])
    assert with_reference.shape == (128, 128, 3)
    plain = alice.post(GEN, json={k: v for k, v in body.items() if k != "reference"})
    assert not np.array_equal(with_reference, decode(plain.json()["data"][0]["b64_json"]))


@pytest.fixture
def openai_sdk(alice) -> OpenAI:
    """The official SDK over the in-process app (TestClient is an httpx client)."""
    key = alice.headers["authorization"].removeprefix("Bearer ")
    return OpenAI(base_url="http://testserver/v1", api_key=key, http_client=alice, max_retries=0)


def test_the_openai_sdk_generates_on_klein_and_flux1(alice, openai_sdk):
    before = balance(alice)
    result = openai_sdk.images.generate(
        model=KLEIN, prompt="a lighthouse at dusk", n=2, size="128x80", response_format="b64_json"
    )
    pixels = [np.asarray(decode(item.b64_json)) for item in result.data]
    assert [p.shape for p in pixels] == [(80, 128, 3), (80, 128, 3)]
    one = openai_sdk.images.generate(model=FLUX1, prompt="a kite", response_format="b64_json")
    assert decode(one.data[0].b64_json).shape == (128, 128, 3)
    assert balance(alice) == before - 3
    with pytest.raises(BadRequestError) as info:
        openai_sdk.images.generate(model=KLEIN, prompt="fox " * 200)
    assert info.value.body["param"] == "prompt"
    assert balance(alice) == before - 3


SD_ONLY = "models that have it: tiny-sd15, tiny-sdxl"


@pytest.mark.parametrize(
    ("path", "body", "param", "says"),
    [
        # Past the encoder's limit: counted by Kiln (diffusers would cut it silently).
        (GEN, {"model": FLUX1, "prompt": "fox " * 700}, "prompt", "T5"),
        (GEN, {"model": KLEIN, "prompt": "fox " * 200}, "prompt", "at most 128"),
        (GEN, {"model": FLUX1, "prompt": "a (fox:1.3)"}, "prompt", ""),
        (GEN, {"model": KLEIN, "prompt": "a fox BREAK a hen"}, "prompt", ""),
        (GEN, {"model": KLEIN, "prompt": "a fox", "guidance": 3.0}, "guidance", ""),
        (GEN, {"model": FLUX1, "prompt": "a fox", "negative_prompt": "x"}, "negative_prompt", ""),
        (GEN, {"model": FLUX1, "prompt": "a fox", "scheduler": "euler"}, "scheduler", "flow_euler"),
        (GEN, {"model": KLEIN, "prompt": "a fox", "size": "128x88"}, "size", ""),
        (
            GEN,
            {"model": FLUX1, "prompt": "a fox", "reference": {"image": "x", "mode": "ip_adapter"}},
            "reference",
            SD_ONLY,
        ),
        (
            "/v1/edits",
            {"tool": "instruct", "model": FLUX1, "instruction": "a hen"},
            "model",
            "models that have it: tiny-instruct, tiny-flux2-klein, tiny-flux1-kontext",
        ),
    ],
)
def test_bad_flux_input_is_400_naming_the_field_charging_and_storing_nothing(
    alice, path, body, param, says
):
    if path == "/v1/edits":
        body = {**body, "image": png_b64(photo(64, 64, seed=1))}
    before, stored = balance(alice), asset_count(alice)
    r = alice.post(path, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and says in error["message"]
    assert balance(alice) == before and asset_count(alice) == stored


def test_openai_references_on_flux_are_400_naming_image(alice):
    """Edits and variations run on FLUX (tests/serving/test_flux_edits_api.py); further
    images steer an edit through an IP-Adapter, which no FLUX model has yet."""
    image = png(photo(64, 64, seed=2))
    before = balance(alice)
    files = [("image[]", ("a.png", io.BytesIO(image), "image/png")),
             ("image[]", ("b.png", io.BytesIO(image), "image/png"))]  # fmt: skip
    r = alice.post("/v1/images/edits", files=files, data={"model": FLUX1, "prompt": "a hen"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "image"
    assert balance(alice) == before


@pytest.mark.parametrize("model, prompt", [(FLUX1, "fox " * 700), (KLEIN, "fox " * 200)])
def test_an_over_limit_prompt_is_refused_before_anything_is_reserved(alice, model, prompt):
    """The token count runs where the model runs (ModelClient.check), asked by the paid
    path before the reservation: the ledger shows no reserve/release pair for it."""
    newest = alice.get("/v1/credits").json()["entries"][0]
    r = alice.post(GEN, json={"model": model, "prompt": prompt})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt", r.text
    assert alice.get("/v1/credits").json()["entries"][0] == newest


def test_image_to_prompt_mixes_into_a_flux_prompt_and_is_not_charged_on_top(alice):
    """``image_to_prompt`` inside a FLUX.1 generation (serving/core/image_to_prompt): the
    extract becomes the prompt the T5 encoder reads, and only the image is charged."""
    field = {"image": png_b64(photo(64, 64, seed=6)), "extract": "everything"}
    before = balance(alice)
    r = alice.post(GEN, json={"model": FLUX1, "image_to_prompt": field, "seed": 2})
    assert r.status_code == 200, r.text
    assert r.json()["credits_charged"] == 1 and balance(alice) == before - 1
    asset = alice.get(f"/v1/assets/{r.json()['data'][0]['asset_id']}").json()
    extract = alice.post("/v1/image-to-prompt", json=field)
    assert extract.status_code == 200, extract.text
    assert asset["prompt"] == extract.json()["prompt"] and asset["model"] == FLUX1
