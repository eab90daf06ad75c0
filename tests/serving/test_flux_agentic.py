"""Agentic generation on FLUX through the real app on the tiny models, in-process (issue
21, Agentic): on FLUX.1 the composition steers through the tiny FLUX.1 ControlNet
(``FluxControlNetPipeline`` derived from the base model), on FLUX.2 [klein] (no FLUX.2
ControlNet in diffusers 0.42.1) through img2img; the composition's source reference
changes the image; the flat agentic price; a guidance on a model that takes none is a 400
charging nothing."""

from __future__ import annotations

import numpy as np
import pytest
from edit_samples import balance, decode, photo, png_b64

from agentic.agent import Agent
from agentic.recipe import extract_recipe

GENERATE = "/v1/agentic/generations"
FLUX1, KLEIN = "tiny-flux1", "tiny-flux2-klein"
# Only composition: the finishing transfers off, so the images differ by structure alone.
QUIET = {name: {"strength": 0.0} for name in ("palette", "grading", "lighting")}


@pytest.fixture(scope="module")
def references() -> list[dict]:
    left = photo(64, 64, seed=1)
    left[:, 32:] = 255  # a hard vertical edge: a different layout from the other one
    top = photo(64, 64, seed=2)
    top[32:] = 0
    return [{"image": png_b64(left)}, {"image": png_b64(top)}]


def agentic(client, model: str, references: list[dict], source: int, **fields) -> dict:
    components = {**QUIET, "composition": {"sources": [source], "strength": 1.0}}
    body = {
        "model": model, "prompt": "a cup on a table", "references": references, "seed": 3,
        "steps": 2, "candidates": 1, "rounds": 0, "components": components, **fields,
    }  # fmt: skip
    r = client.post(GENERATE, json=body)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(
    ("model", "task", "note"),
    [
        (FLUX1, "controlnet", "structure: ControlNet tiny-controlnet-flux1"),
        (KLEIN, "image_to_image", "structure: no ControlNet for this model; img2img"),
    ],
)
def test_agentic_on_flux_steers_composition_by_the_source_reference(
    alice, references, model, task, note
):
    before = balance(alice)
    first = agentic(alice, model, references, source=0)
    again = agentic(alice, model, references, source=0)
    other = agentic(alice, model, references, source=1)
    assert first["plan"]["task"] == task and first["plan"]["model"] == model
    assert any(n.startswith(note) for n in first["trace"][0]["notes"])
    assert first["plan"]["structure_source"] == "reference 0"
    if model == KLEIN:  # the tiny CLIP's descriptions overrun [klein]'s 128 tokens
        assert any(
            "dropped to fit the model's prompt limit" in n for n in first["trace"][0]["notes"]
        )
    images = [decode(r["data"][0]["b64_json"]) for r in (first, again, other)]
    assert images[0].shape == (128, 128, 3)
    assert np.array_equal(images[0], images[1])  # same seed, same recipe: same pixels
    assert (images[0] != images[2]).mean() > 0.05  # another source reference's layout
    assert balance(alice) == before - 12  # the flat 4 credits a generation
    asset = alice.get(f"/v1/assets/{first['data'][0]['asset_id']}").json()
    assert asset["kind"] == "agentic" and asset["model"] == model


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"guidance": 2.0}, "guidance"), ({"prompt": "a cup " * 100}, "prompt")],
)
def test_what_klein_refuses_is_a_400_before_anything_is_held(alice, references, fields, param):
    """A guidance on a model that takes none; a prompt past Qwen3's 128 tokens, counted by
    the model before the reservation (no reserve/release pair in the ledger)."""
    credits = alice.get("/v1/credits").json()
    body = {"model": KLEIN, "prompt": "a cup", "references": references, **fields}
    r = alice.post(GENERATE, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert alice.get("/v1/credits").json() == credits  # the same balance and last entry


def test_refinement_lowers_guidance_only_where_the_model_takes_it(catalog):
    """At full structure strength the composition driver lowers the guidance on FLUX.1
    [dev] (embedded guidance) and SD; on step-distilled [klein], which refuses any
    guidance, it moves to a new seed instead (its family says so)."""
    recipe = extract_recipe([photo(64, 64, seed=1)], {})
    takes = {m: Agent(catalog.get(m), recipe, list).takes_guidance for m in (FLUX1, KLEIN)}
    assert takes == {FLUX1: True, KLEIN: False}
    assert Agent(catalog.get("tiny-sd15"), recipe, list).takes_guidance
