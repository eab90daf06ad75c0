"""IP-Adapter conditioning on the tiny models: embeddings once per image set, per-call
scales that never leak, per-source scales through tied slots, every sibling task."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipelines.engine import Engine
from pipelines.ip_adapter import (
    IPAdapterError,
    _ensure_slots,
    adapter_call_kwargs,
    adapter_files,
    embed_images,
)
from pipelines.params import AdapterConditioning, AdapterImage, GenerationParams, ImageData
from pipelines.tasks import ImageToImage

ADAPTER = {"tiny-sd15": "tiny-ip-adapter-sd15", "tiny-sdxl": "tiny-ip-adapter-sdxl"}


@pytest.fixture(scope="module")
def fresh(catalog):
    """Engines of this module alone: the others in the session never see an adapter."""
    components = tuple(catalog.components.values())
    return {
        model: Engine.load(catalog.get(model), device="cpu", components=components)
        for model in ADAPTER
    }


def picture(seed: int, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def params(engine: Engine, adapter=None, n: int = 1, **fields) -> GenerationParams:
    return GenerationParams.build(
        engine.spec, prompt="a red fox", n=n, seed=7, steps=2, width=64, height=64,
        adapter=adapter, **fields,
    )  # fmt: skip


def run(engine: Engine, adapter=None, **fields) -> np.ndarray:
    return np.stack(engine.generate([params(engine, adapter, **fields)])[0].images)


def pin(engine: Engine, seeds: tuple[int, ...], scale: float, name: str = "pin") -> AdapterImage:
    component = ADAPTER[engine.spec.id]
    return AdapterImage(name, embed_images(engine, component, [picture(s) for s in seeds]), scale)


def conditioning(engine: Engine, *sources: AdapterImage) -> AdapterConditioning:
    return AdapterConditioning(ADAPTER[engine.spec.id], tuple(sources))


@pytest.mark.parametrize("model", list(ADAPTER))
def test_a_pin_changes_the_image_repeats_exactly_and_never_leaks(fresh, model):
    engine = fresh[model]
    assert engine.ip_adapter_loaded is None
    plain = run(engine)  # before any adapter exists on the UNet
    character = conditioning(engine, pin(engine, (1, 2), 0.8))
    pinned = run(engine, character)
    assert engine.ip_adapter_loaded == ADAPTER[model]
    assert np.abs(pinned.astype(int) - plain.astype(int)).mean() > 1
    assert np.array_equal(run(engine, character), pinned)  # same pin, same pixels
    # The next call without a pin is bit-equal to the model that never had an adapter.
    assert np.array_equal(run(engine), plain)


def test_embeddings_are_per_image_deterministic_and_tell_images_apart(fresh):
    engine = fresh["tiny-sd15"]
    embeds = embed_images(engine, "tiny-ip-adapter-sd15", [picture(1), picture(2), picture(1)])
    assert embeds.shape == (3, 32) and embeds.dtype == np.float32
    # Equal up to float rounding that depends on the position in the batch.
    assert np.allclose(embeds[0], embeds[2], atol=1e-5)
    assert not np.allclose(embeds[0], embeds[1], atol=1e-2)
    again = embed_images(engine, "tiny-ip-adapter-sd15", [picture(1)])
    assert np.array_equal(again, embed_images(engine, "tiny-ip-adapter-sd15", [picture(1)]))
    assert np.allclose(again[0], embeds[0], atol=1e-5)


def test_each_source_keeps_its_own_scale(fresh):
    engine = fresh["tiny-sd15"]
    character = pin(engine, (1,), 0.8, "character")
    product = pin(engine, (5, 6), 0.6, "product")
    alone = run(engine, conditioning(engine, character))
    # A source at scale 0 adds nothing, even beside another one (one softmax over both
    # sources' tokens would have changed the character's share).
    muted = dataclasses.replace(product, scale=0.0)
    assert np.array_equal(run(engine, conditioning(engine, character, muted)), alone)
    both = run(engine, conditioning(engine, character, product))
    assert not np.array_equal(both, alone)
    # Fewer sources after more: the extra slot is silent again.
    assert np.array_equal(run(engine, conditioning(engine, character)), alone)


def test_slots_share_the_adapter_weights(fresh):
    engine = fresh["tiny-sd15"]
    adapter_call_kwargs(engine, conditioning(engine, pin(engine, (1,), 1.0)), images=1)
    unet = engine.pipe.unet

    def storage() -> int:
        return sum(p.numel() for p in unet.parameters())  # shared parameters count once

    before = storage()
    assert _ensure_slots(engine, 3) >= 3
    assert storage() == before


def test_batches_and_no_guidance_shape_the_embeddings(fresh):
    engine = fresh["tiny-sd15"]
    source = pin(engine, (1, 2), 0.7)
    kwargs = adapter_call_kwargs(engine, conditioning(engine, source), images=3)
    first = kwargs["ip_adapter_image_embeds"][0]
    assert tuple(first.shape) == (6, 2, 32)  # negative half (zeros) then 3 x positive
    assert not first[:3].any() and first[3:].any()
    no_cfg = adapter_call_kwargs(engine, conditioning(engine, source), images=3, guidance=1.0)
    assert tuple(no_cfg["ip_adapter_image_embeds"][0].shape) == (3, 2, 32)
    # Two images of one request: each is the image it would be alone with its seed.
    pair = np.stack(engine.generate([params(engine, conditioning(engine, source), n=2)])[0].images)
    single = engine.generate([params(engine, conditioning(engine, source))])[0].images[0]
    assert np.abs(pair[0].astype(int) - single.astype(int)).max() <= 1


def test_derived_image_to_image_takes_pins_too(fresh):
    engine = fresh["tiny-sd15"]
    init = ImageData(picture(9, 64))
    fields = {"task": ImageToImage(init, 0.8)}
    plain = run(engine, **fields)
    pinned = run(engine, conditioning(engine, pin(engine, (3,), 1.0)), **fields)
    assert not np.array_equal(plain, pinned)
    assert np.array_equal(run(engine, **fields), plain)


def test_unusable_components_are_refused(fresh, catalog, tmp_path):
    engine = fresh["tiny-sd15"]
    with pytest.raises(IPAdapterError, match="tiny-ip-adapter-sdxl"):
        embed_images(engine, "tiny-ip-adapter-sdxl", [picture(1)])  # another family's
    pickled = dataclasses.replace(
        catalog.component("tiny-ip-adapter-sd15"), options={"weight_name": "ip-adapter.bin"}
    )
    with pytest.raises(Exception, match="pickle"):
        adapter_files(pickled)
    plus = tmp_path / "plus"
    plus.mkdir()
    from safetensors.numpy import save_file

    save_file({"image_proj.latents": np.zeros((1, 4, 8), np.float32)}, str(plus / "a.safetensors"))
    with pytest.raises(IPAdapterError, match="image encoder"):
        adapter_files(dataclasses.replace(pickled, source=plus, options={}))


def test_pins_and_lora_styles_share_the_unet(fresh, tiny_sd15_loras):
    from pipelines.params import StyleRef

    engine = fresh["tiny-sd15"]
    style = StyleRef("sty_ip_a", str(tiny_sd15_loras[0]), 1.0)
    styled = run(engine, style=style)
    both = run(engine, conditioning(engine, pin(engine, (4,), 0.9)), style=style)
    assert not np.array_equal(both, styled)
    assert np.array_equal(run(engine, style=style), styled)


def test_the_tiny_adapter_builds_byte_identical(catalog, tmp_path):
    from weights.tiny import build_tiny_component, file_hashes

    built = catalog.component("tiny-ip-adapter-sd15").source
    again = build_tiny_component("ip_adapter_sd15", tmp_path / "again")
    assert file_hashes(again) == file_hashes(built)
    assert {"ip-adapter.safetensors", "image_encoder/model.safetensors"} <= set(file_hashes(again))


def test_a_pin_runs_without_classifier_free_guidance(fresh):
    engine = fresh["tiny-sd15"]
    plain = run(engine, guidance=1.0)
    pinned = run(engine, conditioning(engine, pin(engine, (2,), 1.0)), guidance=1.0)
    assert not np.array_equal(pinned, plain)
    assert np.array_equal(run(engine, guidance=1.0), plain)
