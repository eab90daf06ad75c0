"""Provider terms as data (issue 20): each catalog entry's ``terms`` show on its
``/v1/models`` card, every asset records them and its PNG carries ``kiln:license``, and
the licensing rule for free images reads them.
"""

from __future__ import annotations

from pathlib import Path

from secrets_for_tests import TEST_SECRET

from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app
from weights.catalog import load_catalog

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
