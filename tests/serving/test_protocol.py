"""Requests convert themselves once into the core's orders, and those into
GenerationParams with the stated precedence."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError

from pipelines.params import ParamError
from serving.core.generations.service import generation_params
from serving.core.settings import Settings
from serving.http.generations.protocol import GenerationRequest
from serving.http.openai_images.protocol import ImageGenerationRequest
from weights.catalog import load_catalog


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return load_catalog(tmp_path_factory.mktemp("home")).get("tiny-sdxl")


NONE = Settings(max_prompt_chars=100)


def to_params(request, spec, settings: Settings = NONE, max_prompt_chars: int | None = None):
    """``request`` converted to the core's order, then resolved on ``spec``."""
    if max_prompt_chars is not None:
        settings = replace(settings, max_prompt_chars=max_prompt_chars)
    return generation_params(spec, settings, request.to_order())


def test_native_request_to_params(sdxl):
    request = GenerationRequest(
        model="tiny-sdxl", prompt="a cat", negative_prompt="dog", n=3, resolution="256px",
        aspect_ratio="3:2", seed=7, steps=2, guidance=1.5, scheduler="ddim",
    )  # fmt: skip
    p = to_params(request, sdxl)
    assert (p.model, p.prompt, p.negative_prompt, p.n) == ("tiny-sdxl", "a cat", "dog", 3)
    assert (p.resolution, p.width, p.height, p.seeds) == ("256px", 256, 192, (7, 8, 9))
    assert (p.steps, p.guidance, p.scheduler) == (2, 1.5, "ddim")


def test_precedence_request_then_server_then_model(sdxl):
    server = Settings(default_steps=9, default_guidance=None, default_scheduler="unipc")
    p = to_params(GenerationRequest(model="tiny-sdxl", prompt="a"), sdxl, server)
    assert (p.steps, p.guidance, p.scheduler) == (9, sdxl.default_guidance, "unipc")
    assert (p.width, p.height, p.n) == (128, 128, 1)
    p = to_params(GenerationRequest(model="tiny-sdxl", prompt="a", steps=3), sdxl, server)
    assert p.steps == 3


def test_openai_size_maps_to_tier_and_aspect(sdxl):
    p = to_params(ImageGenerationRequest(prompt="a", size="64x128", n=2, seed=1), sdxl)
    assert (p.resolution, p.width, p.height, p.seeds) == ("128px", 64, 128, (1, 2))
    auto = ImageGenerationRequest(prompt="a", size="auto", n=None, quality="hd", user="u")
    p = to_params(auto, sdxl)
    assert (p.width, p.height, p.n) == (128, 128, 1)
    with pytest.raises(ParamError) as info:
        to_params(ImageGenerationRequest(prompt="a", size="1024x1024"), sdxl)
    assert info.value.param == "size" and "128x64" in str(info.value)


def test_prompt_length_limit_is_a_param_error(sdxl):
    with pytest.raises(ParamError) as info:
        to_params(GenerationRequest(model="tiny-sdxl", prompt="x" * 11), sdxl, max_prompt_chars=10)
    assert info.value.param == "prompt"


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": "a", "n": "2"},  # strict: no silent string -> int
        {"prompt": "a", "seed": 1.5},
        {"prompt": "a", "extra": True},
        {"prompt": ["a"]},
    ],
)
def test_wrong_types_and_unknown_fields_are_refused(fields):
    with pytest.raises(ValidationError):
        GenerationRequest.model_validate({"model": "m", **fields})
    with pytest.raises(ValidationError):
        ImageGenerationRequest.model_validate(fields)


def test_integer_guidance_is_a_number():
    assert (
        GenerationRequest.model_validate_json(
            '{"model": "m", "prompt": "a", "guidance": 7}'
        ).guidance
        == 7.0
    )
