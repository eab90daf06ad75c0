"""GenerationParams: sizes, seeds and the request -> server -> model precedence."""

from __future__ import annotations

import pytest

from pipelines.params import (
    MAX_GUIDANCE,
    MAX_SEED,
    GenerationDefaults,
    GenerationParams,
    ParamError,
    expand_seeds,
    resolve_size,
)


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    from weights.catalog import load_catalog

    return load_catalog(tmp_path_factory.mktemp("home")).get("tiny-sdxl")


def test_seeds_are_consecutive_and_wrap():
    assert expand_seeds(7, 3) == (7, 8, 9)
    assert expand_seeds(MAX_SEED, 2) == (MAX_SEED, 0)
    random_seeds = expand_seeds(None, 4)
    assert len(set(random_seeds)) == 4


def test_size_from_tier_and_aspect_or_openai_size(sdxl):
    assert resolve_size(sdxl) == ("128px", 128, 128)
    assert resolve_size(sdxl, "256px", "3:2") == ("256px", 256, 192)
    assert resolve_size(sdxl, size="192x256") == ("256px", 192, 256)
    assert resolve_size(sdxl, size="auto") == ("128px", 128, 128)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"size": "1024x1024"}, "size"),
        ({"size": "128x128", "resolution": "128px"}, "size"),
        ({"resolution": "1K"}, "resolution"),
        ({"aspect_ratio": "16:9"}, "aspect_ratio"),
    ],
)
def test_size_errors_name_the_field(sdxl, kwargs, param):
    with pytest.raises(ParamError) as info:
        resolve_size(sdxl, **kwargs)
    assert info.value.param == param


def test_precedence_request_then_server_then_model(sdxl):
    plain = GenerationParams.build(sdxl, prompt="a cat")
    assert (plain.steps, plain.guidance, plain.scheduler) == (4, 5.0, "euler")
    server = GenerationDefaults(steps=6, scheduler="ddim")
    mixed = GenerationParams.build(sdxl, prompt="a cat", guidance=2.5, defaults=server)
    assert (mixed.steps, mixed.guidance, mixed.scheduler) == (6, 2.5, "ddim")
    explicit = GenerationParams.build(sdxl, prompt="a cat", steps=3, defaults=server)
    assert explicit.steps == 3


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "a", "n": 0}, "n"),
        ({"prompt": "a", "n": 13}, "n"),
        ({"prompt": "a", "seed": -1}, "seed"),
        ({"prompt": "a", "seed": MAX_SEED + 1}, "seed"),
        ({"prompt": "a", "steps": 0}, "steps"),
        ({"prompt": "a", "guidance": -1.0}, "guidance"),
        # JSON's 1e309 reads as infinity; past MAX_GUIDANCE every pixel saturates.
        ({"prompt": "a", "guidance": float("inf")}, "guidance"),
        ({"prompt": "a", "guidance": float("nan")}, "guidance"),
        ({"prompt": "a", "guidance": MAX_GUIDANCE + 0.5}, "guidance"),
        ({"prompt": "a", "guidance": float(2**63)}, "guidance"),
        ({"prompt": "a", "scheduler": "karras-magic"}, "scheduler"),
        # PostgreSQL's text cannot store NUL: refused before any work, on either database.
        ({"prompt": "a\x00b"}, "prompt"),
        ({"prompt": "a", "negative_prompt": "\x00"}, "negative_prompt"),
        # A lone surrogate (JSON's "\\ud800") is not Unicode: nothing can encode it.
        ({"prompt": "a\ud800b"}, "prompt"),
        ({"prompt": "a", "negative_prompt": "\udfff"}, "negative_prompt"),
    ],
)
def test_bad_values_name_their_field(sdxl, kwargs, param):
    with pytest.raises(ParamError) as info:
        GenerationParams.build(sdxl, **kwargs)
    assert info.value.param == param


def test_guidance_up_to_its_bound_and_other_control_characters_are_kept(sdxl):
    text = "a\tb\nc \u202e\u200b\ufeff 💥 ü"  # controls, invisibles, a surrogate pair's emoji
    params = GenerationParams.build(sdxl, prompt=text, guidance=MAX_GUIDANCE)
    assert (params.prompt, params.guidance) == (text, MAX_GUIDANCE)
    assert GenerationParams.build(sdxl, prompt="a", guidance=0.0).guidance == 0.0


def test_batch_key_ignores_prompt_and_seed_only(sdxl):
    a = GenerationParams.build(sdxl, prompt="a cat", seed=1, n=2)
    b = GenerationParams.build(sdxl, prompt="a dog", negative_prompt="x", seed=9)
    c = GenerationParams.build(sdxl, prompt="a cat", seed=1, steps=5)
    assert a.batch_key == b.batch_key
    assert a.batch_key != c.batch_key


def test_a_param_error_survives_pickling():
    """Ray pickles a replica's exception to the HTTP process: it must come back whole."""
    import pickle

    from pipelines.params import ParamError

    error = pickle.loads(pickle.dumps(ParamError("prompt", "prompt is 600 tokens")))
    assert isinstance(error, ParamError)
    assert (error.param, str(error)) == ("prompt", "prompt is 600 tokens")


@pytest.mark.parametrize(
    ("model", "steps", "strength", "fewest"),
    [
        ("tiny-sd15", 1, 0.6, 2),  # SD runs int(1 x 0.6) = 0 steps
        ("tiny-sdxl", 3, 0.3, 4),
        ("tiny-sdxl", 9, 0.1, 10),  # 1 / 0.1 is 10.000000000000002: 10 is enough
        ("tiny-flux1", 1, 0.6, None),  # FLUX skips int(1 x 0.4) = 0 steps: one runs
        ("tiny-flux2-klein", 1, 0.05, None),
    ],
)
def test_an_image_task_whose_strength_leaves_no_step_is_refused_naming_steps(
    tmp_path, model, steps, strength, fewest
):
    import numpy as np

    from pipelines.params import ImageData
    from pipelines.tasks.image_to_image import ImageToImage
    from pipelines.tasks.inpaint import Inpaint
    from weights.catalog import load_catalog

    spec = load_catalog(tmp_path).get(model)
    width, height = spec.size(spec.default_resolution, "1:1")
    image = ImageData(np.zeros((height, width, 3), np.uint8))
    mask = ImageData(np.full((height, width), 255, np.uint8))
    for task in (ImageToImage(image, strength), Inpaint(image, mask, strength)):
        build = lambda steps, task=task: GenerationParams.build(  # noqa: E731
            spec, prompt="a kiln", steps=steps, task=task
        )
        if fewest is None:
            assert build(steps).steps == steps
            continue
        with pytest.raises(ParamError, match=f"at least {fewest} steps") as refused:
            build(steps)
        assert refused.value.param == "steps"
        with pytest.raises(ParamError):
            build(fewest - 1)
        assert build(fewest).steps == fewest
