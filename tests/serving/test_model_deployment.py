"""The model replica's batch step, run in-process on a tiny model (no Ray cluster).

``run_batch`` is what ``@serve.batch`` hands each collected batch to: requests share a
pipeline call only when their batch keys match, and each gets its own images and seeds.
(Collection itself, by image count, is Ray's and is exercised through the live server.)
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipelines.params import GenerationParams, ParamError, StyleRef
from serving.core.settings import Settings
from serving.ray.model_deployment import BatchItem, ModelDeployment, replica_fast_path


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


@pytest.fixture(scope="module")
def sd15_replica(catalog):
    settings = Settings(max_batch_size=8, device="cpu", torch_threads=2, styles_per_replica=2)
    return ModelDeployment.func_or_class(settings, catalog.get("tiny-sd15"))


def styled(catalog, style: StyleRef | None, seed: int) -> GenerationParams:
    return GenerationParams.build(
        catalog.get("tiny-sd15"), prompt="a harbour", seed=seed, steps=2, style=style
    )


def test_a_mixed_style_batch_gives_each_request_its_style_alone(
    sd15_replica, catalog, tiny_sd15_loras
):
    a = StyleRef("sty_a", str(tiny_sd15_loras[0]))
    b = StyleRef("sty_b", str(tiny_sd15_loras[1]), strength=0.8)
    requests = [styled(catalog, a, 1), styled(catalog, b, 1), styled(catalog, None, 1)]
    # (generate() needs a Serve replica for its multiplexed style cache: run_batch is the
    # part under test here; tests/e2e drives styles through a live server.)
    alone = [asyncio.run(sd15_replica.run_batch([BatchItem(p, 1)]))[0].images[0] for p in requests]
    assert not np.array_equal(alone[0], alone[1]) and not np.array_equal(alone[0], alone[2])
    mixed = [*requests, styled(catalog, a, 2)]
    outputs = asyncio.run(sd15_replica.run_batch([BatchItem(p, 1) for p in mixed]))
    for got, want in zip(outputs[:3], alone, strict=True):
        assert np.abs(got.images[0].astype(int) - want.astype(int)).max() <= 2
    # Requests of one style share a call; other styles never join it.
    assert outputs[0].timings["batch_images"] == 2 and outputs[1].timings["batch_images"] == 1


def test_the_replica_keeps_its_configured_number_of_styles(sd15_replica, catalog, tiny_sd15_loras):
    for i in range(3):
        style = StyleRef(f"sty_{i}", str(tiny_sd15_loras[i % 2]))
        asyncio.run(sd15_replica.run_batch([BatchItem(styled(catalog, style, 3), 1)]))
    assert sd15_replica.engine.styles.loaded == ["sty_1", "sty_2"]


def test_an_over_limit_flux_prompt_is_refused_before_it_joins_a_batch(catalog):
    """A [klein] replica counts each request's Qwen3 tokens before ``_batched``: the
    request past the limit is a ParamError naming ``prompt`` on its own (outside Ray the
    batch queue would raise Serve's missing-replica error instead, so reaching ParamError
    shows the check ran first), and requests within it batch and run as usual."""
    settings = Settings(max_batch_size=4, device="cpu", torch_threads=2)
    spec = catalog.get("tiny-flux2-klein")
    replica = ModelDeployment.func_or_class(settings, spec)
    bad = GenerationParams.build(spec, prompt="fox " * 200, seed=3)
    with pytest.raises(ParamError, match="Qwen3") as info:
        asyncio.run(replica.generate(bad))
    assert info.value.param == "prompt"
    good = [GenerationParams.build(spec, prompt="a fox", seed=seed) for seed in (1, 2)]
    outputs = asyncio.run(replica.run_batch([BatchItem(p, 1) for p in good]))
    assert [o.seeds for o in outputs] == [(1,), (2,)]


def test_edit_models_compile_without_the_style_slot(catalog):
    """Only base models serve styles: an instruct or inpaint replica's compiled graph
    leaves the slot out (it costs every compiled block call CPU time)."""
    settings = Settings(compile="on")
    assert replica_fast_path(settings, catalog.get("tiny-sd15")).style_slot
    for edit_model in ("tiny-instruct", "tiny-flux1-kontext", "tiny-flux1-fill"):
        options = replica_fast_path(settings, catalog.get(edit_model))
        assert not options.style_slot and options.compile == "on"
