"""Generations with LoRA styles through the real app on the tiny models: the style changes
the image, its images are style-kind assets (watermarked preview, licensed original), and
a private style is nobody else's."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from secrets_for_tests import TEST_SECRET

from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.core.styles import StyleImport
from serving.http.app import create_app

GEN = "/v1/generations"
OPENAI = "/v1/images/generations"
BODY = {"model": "tiny-sd15", "prompt": "a harbour", "seed": 11, "resolution": "128px"}


@pytest.fixture(scope="module")
def models(catalog) -> LocalModelClient:
    return LocalModelClient(catalog, device="cpu", styles_per_replica=2)


@pytest.fixture
def app(tmp_path, catalog, models):
    return create_app(Settings(home=tmp_path, secret=TEST_SECRET), catalog, models)


@pytest.fixture
def alice(app, make_client) -> TestClient:
    return make_client(app, credits=200, name="alice")


@pytest.fixture
def bob(app, make_client) -> TestClient:
    return make_client(app, credits=200, name="bob")


def import_style(app, path, owner: str | None, **fields):
    request = StyleImport(
        name=fields.pop("name", "ink"),
        base_model="tiny-sd15",
        kind="private" if owner else "artist",
        **fields,
    )
    return app.state.kiln.styles.import_file(path, request, owner)


def pixels(image: dict) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(image["b64_json"]))) as decoded:
        return np.asarray(decoded.convert("RGB"))


def test_an_artist_style_image_is_a_licensed_asset(app, alice: TestClient, tiny_sd15_loras):
    style = import_style(app, tiny_sd15_loras[0], None, trigger_words=("inkwash",))
    plain = alice.post(GEN, json=BODY).json()["data"][0]
    r = alice.post(GEN, json={**BODY, "style": style.id})
    assert r.status_code == 200, r.text
    styled = r.json()["data"][0]
    assert styled["watermarked"] is True and styled["license"] == "required"
    assert plain["watermarked"] is False
    asset = alice.get(f"/v1/assets/{styled['asset_id']}").json()
    assert asset["kind"] == "artist_style" and asset["style"] == style.id
    assert asset["prompt"] == "inkwash, a harbour"  # trigger words in front
    # The response carries the marked preview; the original waits for a license.
    assert alice.get(f"/v1/assets/{styled['asset_id']}/original").status_code == 403
    assert alice.post(f"/v1/assets/{styled['asset_id']}/license").status_code == 200
    original = alice.get(f"/v1/assets/{styled['asset_id']}/original")
    with Image.open(io.BytesIO(original.content)) as decoded:
        clean = np.asarray(decoded.convert("RGB"))
    assert not np.array_equal(clean, pixels(styled))  # the preview's mark
    # The style changed the image itself, not just its mark.
    assert np.abs(clean.astype(int) - pixels(plain).astype(int)).mean() > 2


def test_strength_and_switching_back(app, alice: TestClient, tiny_sd15_loras):
    a = import_style(app, tiny_sd15_loras[0], alice.tenant_id, name="a")
    b = import_style(app, tiny_sd15_loras[1], alice.tenant_id, name="b")

    def clean(style: str | None, strength: float | None = None) -> np.ndarray:
        body = {**BODY} if style is None else {**BODY, "style": style}
        if strength is not None:
            body["style_strength"] = strength
        asset_id = alice.post(GEN, json=body).json()["data"][0]["asset_id"]
        if style is not None:
            alice.post(f"/v1/assets/{asset_id}/license")
        data = alice.get(f"/v1/assets/{asset_id}/original").content
        with Image.open(io.BytesIO(data)) as decoded:
            return np.asarray(decoded.convert("RGB"))

    first_a = clean(a.id)
    with_b = clean(b.id)
    assert np.array_equal(clean(a.id), first_a)
    assert not np.array_equal(first_a, with_b)
    assert np.abs(clean(a.id, 0.0).astype(int) - clean(None).astype(int)).max() <= 1


def test_a_private_style_is_nobody_elses(app, alice: TestClient, bob: TestClient, tiny_sd15_loras):
    mine = import_style(app, tiny_sd15_loras[0], alice.tenant_id)
    r = bob.post(GEN, json={**BODY, "style": mine.id})
    assert r.status_code == 404 and r.json()["error"]["code"] == "style_not_found"
    r = bob.post(OPENAI, json={"model": mine.id, "prompt": "x", "size": "128x128"})
    assert r.status_code == 404
    assert bob.get("/v1/credits").json()["balance"] == 200  # nothing charged
    assert alice.post(GEN, json={**BODY, "style": mine.id}).status_code == 200


def test_openai_model_may_name_a_style(app, alice: TestClient, tiny_sd15_loras):
    style = import_style(app, tiny_sd15_loras[1], alice.tenant_id)
    r = alice.post(OPENAI, json={"model": style.id, "prompt": "a kiln", "size": "128x128"})
    assert r.status_code == 200, r.text
    asset = alice.get(f"/v1/assets/{r.json()['data'][0]['asset_id']}").json()
    assert asset["kind"] == "private_style" and asset["model"] == "tiny-sd15"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**BODY, "model": "tiny-sdxl"}, "style"),  # the style is for tiny-sd15
        ({**BODY, "style_strength": 0.5, "style": None}, "style_strength"),  # no style
        ({**BODY, "style_strength": 2.5}, "style_strength"),
    ],
)
def test_bad_style_requests_are_400(app, alice: TestClient, tiny_sd15_loras, body, param):
    style = import_style(app, tiny_sd15_loras[0], None)
    body = {**body, "style": style.id} if "style" not in body else body
    r = alice.post(GEN, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert alice.get("/v1/credits").json()["balance"] == 200


def test_an_unknown_style_is_404(alice: TestClient):
    r = alice.post(GEN, json={**BODY, "style": "sty_nope"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "style_not_found"
