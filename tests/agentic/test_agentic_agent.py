"""Critique and the agent loop, with generation backed by a real tiny SD 1.5 engine (img2img
from the layout, and the tiny ControlNet)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from agentic.agent import Agent, AgentRequest, Budget
from agentic.colour import downsample
from agentic.critique import rank, score
from agentic.recipe import Choice, extract_recipe
from pipelines.params import GenerationParams, ParamError

OFF = Choice(strength=0.0)


@pytest.fixture(scope="module")
def engine(catalog):
    from pipelines.engine import Engine

    return Engine.load(
        catalog.get("tiny-sd15"), device="cpu", components=tuple(catalog.components.values())
    )


@pytest.fixture
def calls(engine) -> list[GenerationParams]:
    return []


@pytest.fixture
def generate(engine, calls):
    def run(params: GenerationParams) -> list[np.ndarray]:
        calls.append(params)
        return list(engine.generate([params])[0].images)

    return run


def photo(f) -> np.ndarray:
    return downsample(f(), 128)


def test_critique_ranks_the_candidate_nearer_the_recipe_first():
    coffee, astronaut = photo(data.coffee), photo(data.astronaut)
    recipe = extract_recipe([coffee])
    near = coffee[:, ::-1]  # the same photograph mirrored: same colours, light, layout flipped
    order = rank([astronaut, near], recipe)
    assert [index for index, _ in order] == [1, 0]
    assert score(coffee, recipe).total > score(astronaut, recipe).total
    for name in ("palette", "grading", "lighting"):
        assert score(near, recipe).components[name] > score(astronaut, recipe).components[name]


def test_the_agent_plans_acts_critiques_and_refines_on_the_tiny_model(catalog, generate, calls):
    spec = catalog.get("tiny-sd15")
    refs = [photo(data.coffee), photo(data.chelsea)]
    recipe = extract_recipe(refs, {"composition": Choice(sources=(1,), strength=0.5)})
    agent = Agent(spec, recipe, generate, reference_pixels=refs)
    request = AgentRequest(prompt="a cat on a table", n=1, seed=5, steps=2, resolution="128px")
    result = agent.run(request, Budget(candidates=2, rounds=2))
    assert len(result.images) == 1
    assert all(
        c.pixels.shape == (128, 128, 3) and c.pixels.dtype == np.uint8 for c in result.images
    )
    totals = [c.scores.total for c in result.images]
    assert totals == sorted(totals, reverse=True)
    steps = [entry["step"] for entry in result.trace]
    assert steps[:3] == ["plan", "act", "critique"] and steps.count("refine") == 2
    # img2img from the composition's source, 2 candidates in the first call.
    assert calls[0].task.name == "image_to_image" and calls[0].n == 2
    assert calls[0].task.strength == pytest.approx(0.7)
    assert result.plan["structure_source"] == "reference 1"
    # No refinement round lowers the best score.
    critique_best = result.trace[2]["best_score"]
    refines = [e for e in result.trace if e["step"] == "refine"]
    assert all(e["best_score_after"] >= e["best_score_before"] for e in refines)
    assert refines[0]["best_score_before"] == critique_best
    assert round(result.best_score, 4) >= critique_best  # the trace rounds to 4 places


def test_a_refinement_raises_the_score_where_a_transfer_was_too_weak(catalog, generate):
    spec = catalog.get("tiny-sd15")
    reference = np.zeros((96, 96, 3), np.uint8)
    reference[:, :48] = (220, 40, 30)
    reference[:, 48:] = (30, 70, 220)
    choices = {
        "palette": Choice(strength=0.05),
        "grading": OFF,
        "lighting": OFF,
        "composition": OFF,
    }
    recipe = extract_recipe([reference], choices)
    agent = Agent(spec, recipe, generate)
    request = AgentRequest(prompt="poster", n=1, seed=3, steps=2, resolution="128px")
    result = agent.run(request, Budget(candidates=1, rounds=1))
    refine = result.trace[-1]
    assert refine["component"] == "palette" and refine["driver"] == "palette transfer strength"
    assert refine["new"] > refine["old"] == 0.05
    assert refine["best_score_after"] > refine["best_score_before"]
    assert result.images[0].knobs["palette"] == refine["new"]


def test_structure_guidance_runs_through_the_tiny_controlnet(catalog, generate, calls):
    spec = catalog.get("tiny-sd15")
    controlnet = catalog.first_component("controlnet", "sd15")
    assert controlnet is not None
    refs = [photo(data.astronaut)]
    recipe = extract_recipe(refs, {"composition": Choice(strength=0.8)})
    request = AgentRequest(
        prompt="a portrait", seed=1, steps=2, resolution="128px", controlnet=controlnet.id
    )
    result = Agent(spec, recipe, generate, reference_pixels=refs).run(request, Budget(1, 0))
    control = calls[0].task.control
    assert calls[0].task.name == "controlnet" and control.scale == pytest.approx(0.8)
    assert control.image.pixels.shape == (128, 128, 3)
    assert result.plan["task"] == "controlnet" and len(result.images) == 1


def test_a_budget_over_one_call_is_refused(catalog, generate):
    recipe = extract_recipe([photo(data.coffee)])
    agent = Agent(catalog.get("tiny-sd15"), recipe, generate)
    with pytest.raises(ParamError) as raised:
        agent.run(AgentRequest(prompt="x", n=4), Budget(candidates=4, rounds=0))
    assert raised.value.param == "candidates"


def test_the_plan_adds_the_references_image_to_prompt_text_after_the_users_words(catalog):
    recipe = extract_recipe([photo(data.coffee)], {"composition": OFF})
    agent = Agent(catalog.get("tiny-sd15"), recipe, lambda params: [])
    request = AgentRequest(
        prompt="a harbour",
        reference_prompts=("warm light, film grain", "warm light, film grain", " "),
        notes=("image-to-prompt: 2 reference(s) described",),
    )
    plan = agent.plan(request)
    assert plan["prompt"] == "a harbour, warm light, film grain"
    assert plan["task"] == "text_to_image" and plan["structure_source"] is None
    assert agent.trace[0]["notes"] == ["image-to-prompt: 2 reference(s) described"]
