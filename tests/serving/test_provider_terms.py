"""Provider terms as data (issue 20): each catalog entry's ``terms`` show on its
``/v1/models`` card, every asset records them and its PNG carries ``kiln:license``, and
the licensing rule for free images reads them.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from secrets_for_tests import TEST_SECRET

from pipelines.provenance import read_png_metadata
from serving.core.exports.service import derived_record
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app
from weights.catalog import Catalog, ProviderTerms, load_catalog

FLUX_DEV_TERMS = {
    "license_id": "flux-1-dev-non-commercial-license",
    "license_url": "https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/LICENSE.md",
    "commercial_model_use": False,
    "commercial_outputs": True,
}
KILN_TINY_TERMS = {
    "license_id": "kiln-tiny-test",
    "license_url": "README.md#provider-terms",
    "commercial_model_use": True,
    "commercial_outputs": True,
}


def test_model_cards_show_each_entrys_terms(home: Path, make_client):
    (home / "models.toml").write_text(
        "[models.tiny-flux1.terms]\n"
        + "".join(f"{k} = {_toml(v)}\n" for k, v in FLUX_DEV_TERMS.items())
        + """
[models.my-sdxl]
kind = "base"
family = "sdxl"
source = "/data/checkpoints/mySDXL.safetensors"
aspect_ratios = ["1:1"]
resolutions = { "1K" = 1024 }
credits = { "1K" = 3 }
"""
    )
    settings = Settings(home=home, secret=TEST_SECRET)
    catalog = load_catalog(home)
    client = make_client(create_app(settings, catalog, LocalModelClient(catalog)))
    cards = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert cards["tiny-sd15"]["terms"] == KILN_TINY_TERMS
    assert cards["tiny-flux1"]["terms"] == FLUX_DEV_TERMS
    assert cards["my-sdxl"]["terms"] == {
        "license_id": "unspecified",
        "license_url": None,
        "commercial_model_use": False,
        "commercial_outputs": False,
    }
    assert client.get("/v1/models/tiny-flux1").json()["terms"] == FLUX_DEV_TERMS


def _toml(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else f'"{value}"'


# Terms no shipped entry has: the asset and the licensing answer can only have them from
# the catalog entry.
NON_COMMERCIAL = ProviderTerms(
    license_id="studio-test-non-commercial",
    license_url="https://example.com/terms",
    commercial_model_use=False,
    commercial_outputs=False,
)


@pytest.fixture
def studio(tmp_path: Path, catalog: Catalog, local_models: LocalModelClient, make_client):
    """A tenant of an app whose tiny-sd15 entry states ``NON_COMMERCIAL``."""
    models = dict(catalog.models)
    models["tiny-sd15"] = replace(models["tiny-sd15"], terms=NON_COMMERCIAL)
    changed = Catalog(models, catalog.prices, catalog.components)
    app = create_app(Settings(home=tmp_path, secret=TEST_SECRET), changed, local_models)
    return make_client(app, credits=100, name="studio")


def _generate(client: TestClient) -> dict:
    r = client.post("/v1/generations", json={"model": "tiny-sd15", "prompt": "a kiln", "seed": 3})
    assert r.status_code == 200, r.text
    return r.json()["data"][0]


def test_an_asset_records_its_models_terms_and_its_png_the_license_id(studio: TestClient):
    image = _generate(studio)
    asset = studio.get(f"/v1/assets/{image['asset_id']}").json()
    assert asset["terms"] == NON_COMMERCIAL.as_dict()
    assert read_png_metadata(base64.b64decode(image["b64_json"]))["kiln:license"] == (
        "studio-test-non-commercial"
    )
    original = studio.get(asset["original_url"]).content
    assert read_png_metadata(original)["kiln:license"] == "studio-test-non-commercial"
    # An image derived from it (an export) keeps the terms recorded when it was made.
    parent = studio.app.state.kiln.assets.get(studio.tenant_id, image["asset_id"])
    child = derived_record(parent, np.zeros((8, 8, 3), np.uint8), {"task": "upscale"})
    assert child.terms == NON_COMMERCIAL


def test_the_licensing_rule_for_base_images_reads_the_terms(studio: TestClient):
    image = _generate(studio)
    r = studio.post(f"/v1/assets/{image['asset_id']}/license")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "license_not_required"
    assert "studio-test-non-commercial (https://example.com/terms)" in error["message"]
    assert "commercial use of outputs not allowed" in error["message"]
