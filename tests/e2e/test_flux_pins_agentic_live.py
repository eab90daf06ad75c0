"""Pins and agentic generation on the tiny FLUX models through the live server (issue 21):
a pin made over HTTP steers [klein] as reference pictures in its own replica and FLUX.1
through its Kontext sibling, which sleeps at zero replicas and wakes on the first pinned
generation (503 ``model_loading`` until it is up); an agentic generation on FLUX.1 runs
its composition through the tiny FLUX.1 ControlNet in the FLUX.1 replica. The in-process
tests are tests/serving/test_flux_pins.py and test_flux_agentic.py."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from test_flux_live import FLUX1, KLEIN, _awake, _pixels

pytestmark = pytest.mark.slow


def _b64(pixels: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def _picture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def test_pins_and_agentic_run_on_flux_through_the_live_server(http):
    r = http.post("/v1/pins", json={"kind": "character", "name": "Mira",
                                    "images": [_b64(_picture(1)), _b64(_picture(2))]})  # fmt: skip
    assert r.status_code == 201, r.text
    pin = r.json()
    assert {FLUX1, KLEIN} <= set(pin["models"])

    body = {"prompt": "Mira in a red coat", "seed": 5, "steps": 2}
    # That the pictures change the image is tested in-process (test_flux_pins.py); here,
    # that each pinned call reaches the replica it runs on.
    for model, made_by in ((KLEIN, KLEIN), (FLUX1, "tiny-flux1-kontext")):
        pinned = _awake(http, {**body, "model": model, "pins": [pin["id"]]})
        assert pinned.status_code == 200, pinned.text
        assert _pixels(pinned.json()["data"][0]["b64_json"]).shape == (128, 128, 3)
        assert pinned.json()["credits_charged"] == 1  # the asked model's 128px price
        asset = http.get(f"/v1/assets/{pinned.json()['data'][0]['asset_id']}").json()
        assert asset["model"] == made_by

    agentic = {
        "model": FLUX1, "prompt": "a cup on a table", "seed": 3, "steps": 2,
        "candidates": 1, "rounds": 0,
        "references": [{"image": _b64(_picture(3))}, {"image": _b64(_picture(4))}],
    }  # fmt: skip
    r = _awake(http, agentic, "/v1/agentic/generations")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["plan"]["task"] == "controlnet" and answer["credits_charged"] == 4
    assert _pixels(answer["data"][0]["b64_json"]).shape == (128, 128, 3)
