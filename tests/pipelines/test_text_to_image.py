"""Text-to-image on the tiny models: determinism, batching, sizes, long prompts."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.params import GenerationParams
from pipelines.schedulers import SCHEDULERS

FAMILIES = ["tiny-sd15", "tiny-sdxl"]
LONG_HEAD = ", ".join(["a red lighthouse on a rocky coast under a stormy sky"] * 8)


def build(catalog, model, **kwargs):
    kwargs.setdefault("prompt", "a lighthouse at dusk")
    kwargs.setdefault("steps", 2)
    return GenerationParams.build(catalog.get(model), **kwargs)


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.mark.parametrize("model", FAMILIES)
def test_same_seed_same_pixels(catalog, engines, model):
    params = build(catalog, model, seed=42)
    first = engines[model].text_to_image(params).images[0]
    second = engines[model].text_to_image(params).images[0]
    assert first.dtype == np.uint8 and first.shape == (128, 128, 3)
    assert np.array_equal(first, second)


@pytest.mark.parametrize("model", FAMILIES)
def test_image_i_of_a_batch_is_reproduced_alone_by_its_seed(catalog, engines, model):
    engine = engines[model]
    batch = engine.text_to_image(build(catalog, model, n=3, seed=100))
    assert batch.seeds == (100, 101, 102)
    assert len(batch.images) == 3
    assert len({img.tobytes() for img in batch.images}) == 3  # distinct seeds, distinct images
    alone = engine.text_to_image(build(catalog, model, n=1, seed=101)).images[0]
    assert max_diff(batch.images[1], alone) <= 2


@pytest.mark.parametrize("model", FAMILIES)
def test_every_listed_size_generates(catalog, engines, model):
    spec = catalog.get(model)
    for size in spec.sizes:
        width, height = map(int, size.split("x"))
        out = engines[model].text_to_image(build(catalog, model, size=size, steps=1, seed=0))
        assert out.images[0].shape == (height, width, 3), size


@pytest.mark.parametrize("model", FAMILIES)
def test_prompt_past_77_tokens_is_not_truncated(catalog, engines, model):
    engine = engines[model]
    assert len(engine.pipe.tokenizer(LONG_HEAD).input_ids) > 77
    a = engine.text_to_image(build(catalog, model, prompt=LONG_HEAD + ", golden hour", seed=5))
    b = engine.text_to_image(build(catalog, model, prompt=LONG_HEAD + ", neon night", seed=5))
    assert not np.array_equal(a.images[0], b.images[0])


def test_emphasis_changes_the_image(catalog, engines):
    engine = engines["tiny-sd15"]
    plain = engine.text_to_image(build(catalog, "tiny-sd15", prompt="a red fox", seed=3))
    loud = engine.text_to_image(build(catalog, "tiny-sd15", prompt="a (red:1.6) fox", seed=3))
    assert not np.array_equal(plain.images[0], loud.images[0])


def test_shared_call_gives_each_request_its_own_images(catalog, engines):
    engine = engines["tiny-sd15"]
    requests = [
        build(catalog, "tiny-sd15", prompt="a cat", seed=1, n=2),
        build(catalog, "tiny-sd15", prompt=LONG_HEAD, seed=7),  # needs two windows
        build(catalog, "tiny-sd15", prompt="a dog", negative_prompt="blurry", seed=9),
    ]
    together = engine.generate(requests)
    assert [out.seeds for out in together] == [(1, 2), (7,), (9,)]
    for request, shared in zip(requests, together, strict=True):
        alone = engine.text_to_image(request)
        for a, b in zip(shared.images, alone.images, strict=True):
            assert max_diff(a, b) <= 2
    assert together[0].timings["batch_images"] == 3.0  # the two short prompts shared a call
    assert set(together[0].timings) >= {"encode", "denoise", "decode", "total"}


def test_requests_with_different_keys_are_refused(catalog, engines):
    a = build(catalog, "tiny-sd15", steps=2)
    b = build(catalog, "tiny-sd15", steps=3)
    with pytest.raises(ValueError, match="batch key"):
        engines["tiny-sd15"].generate([a, b])
    with pytest.raises(ValueError, match="sent to the engine"):
        engines["tiny-sd15"].generate([build(catalog, "tiny-sdxl")])


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_every_scheduler_runs_and_is_deterministic(catalog, engines, scheduler):
    params = build(catalog, "tiny-sd15", scheduler=scheduler, seed=11, n=2, steps=3)
    first = engines["tiny-sd15"].text_to_image(params)
    second = engines["tiny-sd15"].text_to_image(params)
    assert all(np.array_equal(a, b) for a, b in zip(first.images, second.images, strict=True))
