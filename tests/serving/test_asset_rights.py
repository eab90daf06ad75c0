"""An asset's rights wherever its pixels enter another image (serving/core/asset_rights.py),
one test per entry point through the real app on the tiny models: an unlicensed artist-
or private-style image is refused (403 ``license_required``, naming the field) as a
reference, pin, image-to-prompt or agentic source, charging and storing nothing; once
licensed it may be used, and what it guides is the generating model's kind; an edit of
a style image stays a style image, licensed or not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from edit_samples import balance, box_mask, photo, png_b64
from fastapi.testclient import TestClient

from serving.core.assets.service import ImageRecord

GEN = "/v1/generations"
FAST = {"model": "tiny-sd15", "resolution": "128px", "steps": 2, "seed": 3}
SERVING = Path(__file__).resolve().parents[2] / "serving"


def stored_asset(client: TestClient, kind: str, *, licensed: bool = False) -> str:
    """An asset of ``kind`` of the client's tenant, as a generation would store it
    (licensed at no charge when asked, so balances stay the test's own)."""
    state = client.app.state.kiln
    pixels = photo(96, 64)
    record = ImageRecord(
        kind=kind,
        model="tiny-sd15",
        prompt="three shapes",
        seed=5,
        width=96,
        height=64,
        style="sty_ink" if kind != "base" else None,
    )
    asset, _ = state.assets.create(client.tenant_id, record, pixels)
    if licensed:
        state.licenses.purchase(client.tenant_id, asset.id, 0)
    return asset.id


def asset_count(client: TestClient) -> int:
    return len(client.get("/v1/assets", params={"limit": 100}).json()["data"])


def refused(client: TestClient, route: str, body: dict, param: str) -> None:
    """403 ``license_required`` naming ``param``, and nothing charged or stored."""
    before, assets = balance(client), asset_count(client)
    response = client.post(route, json=body)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "license_required" and error["param"] == param
    assert "license" in error["message"] and param in error["message"]
    assert balance(client) == before and asset_count(client) == assets


@pytest.mark.parametrize("kind", ["artist_style", "private_style"])
@pytest.mark.parametrize("mode", ["img2img", "ip_adapter"])
def test_an_unlicensed_style_image_is_no_reference(alice, kind, mode):
    asset = stored_asset(alice, kind)
    body = {**FAST, "prompt": "x", "reference": {"asset_id": asset, "mode": mode}}
    refused(alice, GEN, body, "reference.asset_id")


def test_a_licensed_style_reference_guides_a_generation_of_the_models_kind(alice):
    asset = stored_asset(alice, "artist_style", licensed=True)
    body = {**FAST, "prompt": "x", "reference": {"asset_id": asset, "strength": 0.5}}
    response = alice.post(GEN, json=body)
    assert response.status_code == 200, response.text
    image = response.json()["data"][0]
    assert image["watermarked"] is False and image["license"] == "free"
    child = alice.get(f"/v1/assets/{image['asset_id']}").json()
    assert child["kind"] == "base" and child["parent_id"] == asset


def test_another_tenants_style_image_is_unknown_not_forbidden(image_app, alice, make_client):
    bob = make_client(image_app, credits=0, name="bob")
    theirs = stored_asset(bob, "artist_style")
    body = {**FAST, "prompt": "x", "reference": {"asset_id": theirs}}
    response = alice.post(GEN, json=body)
    assert response.status_code == 404 and response.json()["error"]["code"] == "asset_not_found"


def test_an_unlicensed_style_image_is_no_image_to_prompt_source(alice):
    asset = stored_asset(alice, "private_style")
    field = {"asset_id": asset, "extract": "composition"}
    refused(alice, "/v1/image-to-prompt", {"asset_id": asset}, "asset_id")
    refused(alice, GEN, {**FAST, "image_to_prompt": field}, "image_to_prompt.asset_id")
    edit = {"tool": "recreate", "image": png_b64(photo()), "image_to_prompt": field}
    refused(alice, "/v1/edits", edit, "image_to_prompt.asset_id")


def test_an_unlicensed_style_image_is_no_pin_and_a_licensed_one_is(alice):
    pins = alice.app.state.kiln.settings.home / "pins"
    unlicensed = stored_asset(alice, "artist_style")
    body = {"kind": "character", "name": "Mira", "images": [png_b64(photo(48, 48))]}
    refused(alice, "/v1/pins", {**body, "asset_ids": [unlicensed]}, "asset_ids.0")
    assert alice.get("/v1/pins").json()["data"] == [] and not list(pins.glob("*"))
    licensed = stored_asset(alice, "artist_style", licensed=True)
    base = stored_asset(alice, "base")
    response = alice.post("/v1/pins", json={**body, "asset_ids": [base, licensed]})
    assert response.status_code == 201, response.text
    assert response.json()["images"] == 3


def test_an_unlicensed_style_image_is_no_agentic_reference(alice):
    asset = stored_asset(alice, "artist_style")
    ok = {"image": png_b64(photo(64, 48))}
    references = [ok, {"asset_id": asset}]
    refused(alice, "/v1/agentic/extract", {"references": references}, "references.1.asset_id")
    body = {**FAST, "prompt": "x", "references": references}
    refused(alice, "/v1/agentic/generations", body, "references.1.asset_id")


def test_an_edit_of_a_licensed_style_image_is_a_style_image_again(alice):
    parent = stored_asset(alice, "private_style", licensed=True)
    body = {"tool": "erase", "asset_id": parent, "mask": png_b64(box_mask(96, 64)), "steps": 2}
    response = alice.post("/v1/edits", json={"model": "tiny-sd15", **body})
    assert response.status_code == 200, response.text
    image = response.json()["data"][0]
    assert image["watermarked"] is True and image["license"] == "required"
    child = alice.get(f"/v1/assets/{image['asset_id']}").json()
    assert child["kind"] == "private_style" and child["parent_id"] == parent


def test_only_the_input_loader_and_exports_read_an_asset_for_its_pixels():
    """A later entry point must read assets through ``ImageInputs.load`` (which asks
    ``asset_rights.admit``); exports keep their own, stricter license rule."""
    readers = sorted(
        str(path.relative_to(SERVING.parent))
        for path in SERVING.rglob("*.py")
        if re.search(r"\bassets\.source\b", path.read_text())
    )
    assert readers == ["serving/core/exports/service.py", "serving/core/image_inputs.py"]
