"""Pins on FLUX through the real app on the tiny models, in-process (issue 21, "Pins on
multi-reference models"): FLUX.2 [klein] takes a pin's kept pictures as reference images;
a pin on FLUX.1 runs on its Kontext sibling (``pins_model``) with the pictures tiled into
one reference image, charged at the base model's price; ``/v1/models`` lists ``pins``
only where a model takes them; bad input is a 400 in the error shape, nothing charged or
stored."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest
from edit_samples import balance, decode, photo, png_b64
from secrets_for_tests import TEST_SECRET
from sqlalchemy import update

from serving.core.ledger.schema import pins
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app
from weights.catalog import load_catalog

PINS, GEN = "/v1/pins", "/v1/generations"
FLUX1, KLEIN = "tiny-flux1", "tiny-flux2-klein"
KONTEXT, FILL = "tiny-flux1-kontext", "tiny-flux1-fill"


def make_pin(client, *pictures: np.ndarray) -> str:
    body = {"kind": "character", "name": "Mira", "images": [png_b64(p) for p in pictures]}
    r = client.post(PINS, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["pictures_kept"] == len(pictures)
    return r.json()["id"]


def generate(client, model: str, pin_ids: list[str], **fields) -> dict:
    body = {"model": model, "prompt": "a woman in a red coat", "seed": 4, "steps": 2}
    r = client.post(GEN, json={**body, "pins": pin_ids, **fields})
    assert r.status_code == 200, r.text
    return r.json()


def changed(a: np.ndarray, b: np.ndarray) -> float:
    """The share of pixel values that differ between two images."""
    return float((a != b).mean())


def assets(client) -> list[dict]:
    return client.get("/v1/assets").json()["data"]


def test_models_list_pins_only_where_a_model_takes_them(alice):
    cards = {card["id"]: set(card["features"]) for card in alice.get("/v1/models").json()["data"]}
    taking = {m for m, features in cards.items() if "pins" in features}
    # SD through its IP-Adapter, [klein] itself, FLUX.1 through its Kontext sibling.
    assert taking == {"tiny-sd15", "tiny-sdxl", KLEIN, FLUX1}
    assert "reference_ip_adapter" not in cards[KLEIN] | cards[FLUX1]


def test_a_pin_lists_the_flux_models_and_is_pictures_alone_without_an_ip_adapter(
    alice, monkeypatch
):
    """A pin that keeps its pictures applies to the models that take them; where no
    IP-Adapter is installed, a pin is made of its pictures alone and serves FLUX."""
    r = alice.post(PINS, json={"kind": "product", "name": "Jug", "images": [png_b64(photo())]})
    assert r.json()["models"] == ["tiny-sd15", "tiny-sdxl", FLUX1, KLEIN], r.text
    pinning = alice.app.state.kiln.pinning
    components = {k: c for k, c in pinning.catalog.components.items() if c.kind != "ip_adapter"}
    monkeypatch.setattr(pinning, "catalog", replace(pinning.catalog, components=components))
    pin = alice.post(PINS, json={"kind": "product", "name": "Jug", "images": [png_b64(photo())]})
    assert pin.status_code == 201, pin.text
    assert (pin.json()["images"], pin.json()["pictures_kept"]) == (1, 1)
    assert alice.get(f"{PINS}/{pin.json()['id']}").json()["images"] == 1
    generate(alice, KLEIN, [pin.json()["id"]])


def test_klein_takes_a_pins_pictures_as_reference_images(alice):
    pin = make_pin(alice, photo(80, 64, seed=1), photo(64, 96, seed=2))
    other = make_pin(alice, 255 - photo(80, 64, seed=1))
    before = balance(alice)
    plain = generate(alice, KLEIN, [])
    pinned = generate(alice, KLEIN, [pin])
    again = generate(alice, KLEIN, [pin])
    swapped = generate(alice, KLEIN, [other])
    images = [decode(r["data"][0]["b64_json"]) for r in (plain, pinned, again, swapped)]
    # Same seed, same pin: the same pixels, so every difference below is the pictures'.
    assert np.array_equal(images[1], images[2])
    assert changed(images[1], images[0]) > 0.01  # the pin steers it
    assert changed(images[3], images[1]) > 0.01  # and its pictures matter
    assert balance(alice) == before - 4  # 1 credit an image at 128px, as without pins
    record = alice.get(f"/v1/assets/{pinned['data'][0]['asset_id']}").json()
    assert record["model"] == KLEIN and record["params"]["task"] == "references"
    assert record["params"]["references"] == 2


def test_flux1_pins_run_on_kontext_with_the_pictures_tiled(alice):
    first = make_pin(alice, photo(96, 64, seed=3))
    second = make_pin(alice, 255 - photo(96, 64, seed=3), photo(64, 64, seed=5))
    before = balance(alice)
    one = generate(alice, FLUX1, [first], aspect_ratio="3:2")
    again = generate(alice, FLUX1, [first], aspect_ratio="3:2")
    two = generate(alice, FLUX1, [first, second], aspect_ratio="3:2")
    images = [decode(r["data"][0]["b64_json"]) for r in (one, again, two)]
    assert images[0].shape == images[2].shape == (80, 128, 3)  # the base card's 3:2 size
    assert np.array_equal(images[0], images[1])
    assert changed(images[0], images[2]) > 0.01  # one picture tiled, or three
    # Charged at tiny-flux1's price (1 credit at 128px), made by the Kontext checkpoint.
    assert balance(alice) == before - 3
    record = alice.get(f"/v1/assets/{one['data'][0]['asset_id']}").json()
    assert record["model"] == KONTEXT and record["params"]["task"] == "instruct"


def refused(client, body: dict, status: int, param: str, code: str | None = None) -> dict:
    before, stored = balance(client), len(assets(client))
    r = client.post(GEN, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"], error
    if code is not None:
        assert error["code"] == code
    assert balance(client) == before and len(assets(client)) == stored
    return error


def test_bad_pins_on_flux_are_400s_that_charge_and_store_nothing(alice):
    pins5 = [make_pin(alice, photo(64, 64, seed=s)) for s in range(3)]
    pins5.append(make_pin(alice, photo(64, 64, seed=7), photo(64, 64, seed=8)))
    body = {"prompt": "a portrait", "seed": 1, "steps": 2}
    # Five pictures: more than Kontext's tiling and [klein]'s references hold.
    for model in (FLUX1, KLEIN):
        message = refused(alice, {**body, "model": model, "pins": pins5}, 400, "pins")["message"]
        assert "5" in message
    wide = make_pin(alice, photo(576, 64, seed=9))  # 9:1, past FLUX.2's 8:1
    refused(alice, {**body, "model": KLEIN, "pins": [wide]}, 400, "pins")
    reference = {"image": png_b64(photo(64, 64)), "mode": "img2img"}
    refused(alice, {**body, "model": KLEIN, "pins": pins5[:1], "reference": reference},
            400, "reference")  # fmt: skip
    refused(alice, {**body, "model": FLUX1, "pins": pins5[:1], "style": "sty_any"}, 400, "style")
    refused(alice, {**body, "model": FLUX1, "pins": ["pin_nobody"]}, 404, None)
    # A pin made before Kiln kept pictures: works on SD's IP-Adapter, not here.
    old = make_pin(alice, photo(64, 64, seed=11))
    with alice.app.state.kiln.ledger.engine.begin() as conn:
        conn.execute(update(pins).where(pins.c.id == old).values(pictures=None))
    error = refused(alice, {**body, "model": KLEIN, "pins": [old]}, 400, "pins")
    assert error["code"] == "pin_without_pictures"


def test_pins_on_a_flux1_model_without_a_kontext_sibling_are_refused(tmp_path, make_client):
    """A FLUX.1 base entry that names no ``pins_model`` lists no pins, and a generation
    with pins there is a 400 naming ``pins`` and the models that take them (no model is
    loaded: it is refused at validation)."""
    (tmp_path / "models.toml").write_text(
        '[models.flux1-plain]\nkind = "base"\nfamily = "flux1"\nsource = "models/x"\n'
        'aspect_ratios = ["1:1"]\nresolutions = {"128px" = 128}\ncredits = {"128px" = 1}\n'
    )
    settings = Settings(home=tmp_path, secret=TEST_SECRET)
    catalog = load_catalog(tmp_path)
    client = make_client(create_app(settings, catalog, LocalModelClient(catalog, device="cpu")))
    cards = {c["id"]: c["features"] for c in client.get("/v1/models").json()["data"]}
    assert "pins" not in cards["flux1-plain"] and "pins" in cards[FLUX1]
    body = {"model": "flux1-plain", "prompt": "a portrait", "pins": ["pin_x"]}
    error = refused(client, body, 400, "pins")
    assert "tiny-flux1" in error["message"] and "tiny-flux2-klein" in error["message"]


def test_pins_model_must_name_a_kontext_checkpoint_of_its_family(tmp_path):
    from weights.catalog import CatalogError

    (tmp_path / "models.toml").write_text('[models.tiny-flux1]\npins_model = "tiny-flux1-fill"\n')
    with pytest.raises(CatalogError, match="pins_model 'tiny-flux1-fill' must name an instruct"):
        load_catalog(tmp_path)
    (tmp_path / "models.toml").write_text('[models.tiny-sd15]\npins_model = "tiny-instruct"\n')
    with pytest.raises(CatalogError, match="family sd15 takes no pins_model"):
        load_catalog(tmp_path)


def test_the_tiling_is_what_kontext_reads(alice):
    """The one reference image Kontext gets is the composition module's tiling of the
    pins' pictures at the generation's size (checked through the core, not HTTP)."""
    from serving.core.generations.orders import GenerationOrder
    from serving.core.generations.pinned import pinned_call
    from serving.core.pins.composition import tile_pictures

    core = alice.app.state.kiln
    a, b = photo(96, 64, seed=3), photo(64, 64, seed=5)
    pin_ids = (make_pin(alice, a), make_pin(alice, b))
    order = GenerationOrder(model=FLUX1, prompt="x", aspect_ratio="3:2", pins=pin_ids)
    call = asyncio.run(
        pinned_call(core.pinning, core.catalog, alice.tenant_id, core.catalog.get(FLUX1), order)
    )
    assert call.spec.id == KONTEXT and (call.call["width"], call.call["height"]) == (128, 80)
    expected = tile_pictures([a, b], 128, 80)
    assert np.array_equal(call.call["task"].image.pixels, expected)
