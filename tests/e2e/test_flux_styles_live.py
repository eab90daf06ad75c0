"""FLUX styles on the live server: a kohya-layout FLUX.1 style and a BFL-layout [klein]
style uploaded over HTTP, routed to the sleeping FLUX replicas as Serve's multiplexed
model id, each changing its model's image (tests/styles has the per-layout checks)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np
from test_flux_live import _awake
from test_flux_live import _pixels as _decoded

sys.path.insert(0, str(Path(__file__).parents[1] / "styles"))
from flux_lora_makers import WRITERS, flux_layers, save  # noqa: E402


def _pixels(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return _decoded(response.json()["data"][0]["b64_json"]).astype(int)


def test_flux_styles_are_served_by_the_live_server(http, catalog, tmp_path):
    import diffusers

    for model, cls, layout in (
        ("tiny-flux1", diffusers.FluxTransformer2DModel, "kohya"),
        ("tiny-flux2-klein", diffusers.Flux2Transformer2DModel, "bfl"),
    ):
        transformer = cls.from_pretrained(catalog.get(model).source / "transformer")
        tensors, _ = WRITERS[layout](flux_layers(transformer, seed=2, scale=0.8))
        path = save(tensors, tmp_path / f"{model}.safetensors")
        with path.open("rb") as f:
            r = http.post(
                "/v1/styles",
                files={"file": (path.name, f, "application/octet-stream")},
                data={"name": f"live {layout}", "model": model, "trigger_words": "kilnlive"},
            )
        assert r.status_code == 201, r.text
        style = r.json()
        assert (style["family"], style["base_model"]) == (model.split("-")[1], model)

        body = {"model": model, "prompt": "a harbour", "seed": 9}
        plain = _pixels(_awake(http, body))
        styled = http.post("/v1/generations", json={**body, "style": style["id"]})
        assert np.abs(_pixels(styled) - plain).mean() > 2
        asset = http.get(f"/v1/assets/{styled.json()['data'][0]['asset_id']}").json()
        assert (asset["style"], asset["prompt"]) == (style["id"], "kilnlive, a harbour")
