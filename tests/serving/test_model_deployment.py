"""The model replica's batch step, run in-process on a tiny model (no Ray cluster).

``run_batch`` is what ``@serve.batch`` hands each collected batch to: requests share a
pipeline call only when their batch keys match, and each gets its own images and seeds.
(Collection itself, by image count, is Ray's and is exercised through the live server.)
"""

from __future__ import annotations

import asyncio

import pytest

from pipelines.params import GenerationParams
from serving.model_deployment import BatchItem, ModelDeployment
from serving.settings import Settings


@pytest.fixture(scope="module")
def replica(catalog):
    settings = Settings(max_batch_size=4, device="cpu", torch_threads=2)
    # The class under the Serve decorator: the same constructor a replica runs.
    return ModelDeployment.func_or_class(settings, catalog.get("tiny-sdxl"))


def params(catalog, **kwargs) -> GenerationParams:
    kwargs = {"prompt": "a cat", "steps": 1, **kwargs}
    return GenerationParams.build(catalog.get("tiny-sdxl"), **kwargs)


def test_equal_keys_share_a_call_and_other_keys_do_not(replica, catalog):
    requests = [
        params(catalog, seed=1),
        params(catalog, seed=3, aspect_ratio="3:2"),  # another size: another call
        params(catalog, seed=2, n=2),
    ]
    items = [BatchItem(p, p.n) for p in requests]
    outputs = asyncio.run(replica.run_batch(items))
    assert [o.seeds for o in outputs] == [(1,), (3,), (2, 3)]
    assert [len(o.images) for o in outputs] == [1, 1, 2]
    assert outputs[0].images[0].shape == (128, 128, 3)
    assert outputs[1].images[0].shape == (64, 128, 3)
    assert [o.timings["batch_images"] for o in outputs] == [3, 1, 3]


def test_a_failing_group_does_not_fail_the_others(replica, catalog):
    good = params(catalog, seed=5)
    # Parameters that pass validation but that the pipeline cannot run (7 px wide).
    bad = GenerationParams(**{**good.__dict__, "steps": 1, "width": 7, "height": 7})
    outputs = asyncio.run(replica.run_batch([BatchItem(bad, 1), BatchItem(good, 1)]))
    assert isinstance(outputs[0], Exception)
    assert outputs[1].seeds == (5,)


def test_requests_for_another_model_are_refused(replica, catalog):
    other = GenerationParams.build(catalog.get("tiny-sd15"), prompt="x", steps=1)
    with pytest.raises(ValueError, match="reached"):
        asyncio.run(replica.generate(other))
