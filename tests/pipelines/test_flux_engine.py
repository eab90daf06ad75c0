"""FLUX.1 ([dev], [schnell]) and FLUX.2 [klein] (distilled, base) text-to-image through the
Engine, on the tiny models from a test catalog: a seed per image, batches, the family's
refusals (size grid, schedulers, T5 limit, guidance, negative prompt, emphasis), and
FLUX.1's img2img for reference images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.engine import Engine
from pipelines.families import family_of
from pipelines.params import GenerationDefaults, GenerationParams, ImageData, ParamError
from pipelines.tasks import ImageToImage
from weights.catalog import load_catalog
from weights.tiny import TINY_BUILDERS, ensure_tiny_models, verify_manifest

_ENTRY = """
[models.{id}]
kind = "base"
family = "{family}"
source = "models/{id}"
tiny = "{tiny}"
resolutions = {{ "tiny" = 64 }}
aspect_ratios = ["1:1", "3:2"]
credits = {{ "tiny" = 1 }}
default_steps = 2
default_scheduler = "flow_euler"
"""
MODELS = {
    "test-flux1-dev": ("flux1", "flux1", "default_guidance = 3.5\n"),
    "test-flux1-schnell": (
        "flux1",
        "flux1_schnell",
        'guidance_kind = "none"\nmax_sequence_length = 256\nschedulers = ["flow_euler"]\n',
    ),
    # [klein] pads to 512 Qwen3 tokens; 128 here keeps the 36-layer tiny encoder quick.
    "test-flux2-klein": ("flux2", "flux2_klein", "max_sequence_length = 128\n"),
    "test-flux2-klein-base": (
        "flux2",
        "flux2_klein_base",
        'guidance_kind = "cfg"\nmax_sequence_length = 128\n',
    ),
}
PROMPT = "a red fox in the snow"


@pytest.fixture(scope="module")
def flux_catalog(tmp_path_factory):
    home: Path = tmp_path_factory.mktemp("flux_home")
    toml = "".join(
        _ENTRY.format(id=model_id, family=family, tiny=tiny) + extra
        for model_id, (family, tiny, extra) in MODELS.items()
    )
    (home / "flux_models.toml").write_text(toml)
    catalog = load_catalog(home, home / "flux_models.toml")
    ensure_tiny_models(catalog.get(model_id) for model_id in MODELS)
    return catalog


@pytest.fixture(scope="module")
def flux_engines(flux_catalog):
    return {model_id: Engine.load(flux_catalog.get(model_id), "cpu") for model_id in MODELS}


def test_the_tiny_flux_models_build_from_the_registry(flux_catalog):
    # ensure_tiny_models built them by their ``tiny`` names (weights.tiny.TINY_BUILDERS).
    for model_id, (family, tiny, _extra) in MODELS.items():
        assert tiny in TINY_BUILDERS and family_of(family).tiny_builder in TINY_BUILDERS
        assert verify_manifest(flux_catalog.get(model_id).source) == []


def _params(catalog, model_id: str, **fields) -> GenerationParams:
    return GenerationParams.build(catalog.get(model_id), prompt=PROMPT, **fields)


def test_flux1_dev_a_seed_per_image_and_batches_of_requests(flux_catalog, flux_engines):
    engine = flux_engines["test-flux1-dev"]
    alone = engine.generate([_params(flux_catalog, "test-flux1-dev", seed=7)])[0]
    again = engine.generate([_params(flux_catalog, "test-flux1-dev", seed=7)])[0]
    assert np.array_equal(alone.images[0], again.images[0])
    three = _params(flux_catalog, "test-flux1-dev", seed=7, n=3)
    other = _params(flux_catalog, "test-flux1-dev", seed=100)
    assert three.batch_key == other.batch_key  # guidance 3.5, 512 tokens: one call
    batched = engine.generate([three, other])
    assert [o.seeds for o in batched] == [(7, 8, 9), (100,)]
    assert [len(o.images) for o in batched] == [3, 1]
    assert batched[0].images[0].shape == (64, 64, 3)
    # Image i of a batch is its seed's image alone (up to float rounding of the batch).
    diff = np.abs(batched[0].images[0].astype(int) - alone.images[0].astype(int))
    assert diff.max() <= 1
    assert not np.array_equal(batched[0].images[0], batched[0].images[1])
    assert three.guidance == 3.5 and three.batch_key.sequence_length == 512


def test_flux1_schnell_takes_no_guidance_and_counts_256_t5_tokens(flux_catalog, flux_engines):
    spec = flux_catalog.get("test-flux1-schnell")
    params = GenerationParams.build(spec, prompt=PROMPT, n=3, seed=1)
    assert params.guidance == 0.0 and params.sequence_length == 256
    outputs = flux_engines["test-flux1-schnell"].generate([params])
    assert len(outputs[0].images) == 3 and outputs[0].seeds == (1, 2, 3)
    with pytest.raises(ParamError, match="takes no guidance") as refused:
        GenerationParams.build(spec, prompt=PROMPT, guidance=3.5)
    assert refused.value.param == "guidance"
    # The server's default guidance does not reach a model without guidance.
    served = GenerationParams.build(spec, prompt=PROMPT, defaults=GenerationDefaults(guidance=7))
    assert served.guidance == 0.0
    # Its entry keeps flow_euler only: DPM-Solver's flow sigmas need a dynamic shift.
    with pytest.raises(ParamError, match="unknown scheduler 'dpmpp_2m'; known: flow_euler$"):
        GenerationParams.build(spec, prompt=PROMPT, scheduler="dpmpp_2m")
    long_prompt = " ".join(["fox"] * 300)
    with pytest.raises(ParamError, match="T5 text encoder; this model takes at most 256") as cut:
        flux_engines["test-flux1-schnell"].generate(
            [GenerationParams.build(spec, prompt=long_prompt)]
        )
    assert cut.value.param == "prompt"


def test_an_over_limit_t5_prompt_is_refused_naming_prompt(flux_catalog, flux_engines):
    engine = flux_engines["test-flux1-dev"]
    # Past CLIP's 77 tokens is fine (cut by design); past T5's 512 is not.
    engine.check(GenerationParams.build(flux_catalog.get("test-flux1-dev"), prompt="fox " * 100))
    over = GenerationParams.build(flux_catalog.get("test-flux1-dev"), prompt="fox " * 600)
    with pytest.raises(ParamError, match=r"prompt is \d+ tokens for the T5") as refused:
        engine.check(over)
    assert refused.value.param == "prompt"


def test_flux_schedulers_refuse_sd_names_and_run_dpm_with_flow_sigmas(flux_catalog, flux_engines):
    spec = flux_catalog.get("test-flux1-dev")
    known = ", ".join(family_of("flux1").schedulers)
    assert known == "flow_euler, dpmpp_2m"
    with pytest.raises(ParamError, match=f"unknown scheduler 'euler_a'; known: {known}$") as e:
        GenerationParams.build(spec, prompt=PROMPT, scheduler="euler_a")
    assert e.value.param == "scheduler"
    # An SD server default gives way to the model's own; a flow one it takes holds.
    assert (
        GenerationParams.build(
            spec, prompt=PROMPT, defaults=GenerationDefaults(scheduler="euler_a")
        ).scheduler
        == "flow_euler"
    )
    params = GenerationParams.build(spec, prompt=PROMPT, scheduler="dpmpp_2m", seed=3)
    euler = GenerationParams.build(spec, prompt=PROMPT, seed=3)
    engine = flux_engines["test-flux1-dev"]
    dpm_image = engine.generate([params])[0].images[0]
    assert not np.array_equal(dpm_image, engine.generate([euler])[0].images[0])


def test_sizes_off_the_16_grid_and_ignored_fields_are_refused(flux_catalog):
    spec = flux_catalog.get("test-flux1-dev")
    assert spec.size("tiny", "3:2") == (64, 48)  # 42.7 rounds to the 16-grid
    with pytest.raises(ParamError, match="sides must be multiples of 16") as refused:
        GenerationParams.build(spec, prompt=PROMPT, width=72, height=64)
    assert refused.value.param == "size"
    with pytest.raises(ParamError, match="negative prompt would be ignored") as negative:
        GenerationParams.build(spec, prompt=PROMPT, negative_prompt="blurry")
    assert negative.value.param == "negative_prompt"
    with pytest.raises(ParamError, match=r"emphasis syntax '\(fox:1.3\)'") as emphasis:
        GenerationParams.build(spec, prompt="a (fox:1.3) in snow")
    assert emphasis.value.param == "prompt"
    # Plain brackets are prose to T5.
    assert GenerationParams.build(spec, prompt="a fox (red) in snow").prompt


def test_flux2_klein_distilled_and_base(flux_catalog, flux_engines):
    klein = flux_catalog.get("test-flux2-klein")
    with pytest.raises(ParamError, match="takes no guidance") as refused:
        GenerationParams.build(klein, prompt=PROMPT, guidance=4.0)
    assert refused.value.param == "guidance"
    first = GenerationParams.build(klein, prompt=PROMPT, seed=11, n=2)
    outputs = flux_engines["test-flux2-klein"].generate([first])
    again = flux_engines["test-flux2-klein"].generate([first])
    assert np.array_equal(outputs[0].images[0], again[0].images[0])
    assert not np.array_equal(outputs[0].images[0], outputs[0].images[1])
    assert first.batch_key.sequence_length == 128
    # The base checkpoint runs real CFG, so guidance and a negative prompt count.
    base = flux_catalog.get("test-flux2-klein-base")
    server = GenerationDefaults(guidance=5.0)
    params = GenerationParams.build(base, prompt=PROMPT, negative_prompt="blurry", seed=2)
    assert GenerationParams.build(base, prompt=PROMPT, defaults=server).guidance == 5.0
    engine = flux_engines["test-flux2-klein-base"]
    with_negative = engine.generate([params])[0].images[0]
    plain = GenerationParams.build(base, prompt=PROMPT, seed=2)
    assert not np.array_equal(with_negative, engine.generate([plain])[0].images[0])
    over = GenerationParams.build(base, prompt="fox " * 600)
    with pytest.raises(ParamError, match="Qwen3 text encoder; this model takes at most 128"):
        engine.check(over)


def test_flux1_img2img_with_a_reference(flux_catalog, flux_engines):
    engine = flux_engines["test-flux1-dev"]
    assert "image_to_image" in engine.tasks
    # [klein]'s img2img is its inpaint pipeline under a whole-image mask (test_flux_edits.py).
    assert "image_to_image" in flux_engines["test-flux2-klein"].tasks
    reference = np.full((48, 64, 3), 200, dtype=np.uint8)
    spec = flux_catalog.get("test-flux1-dev")

    def img2img(pixels: np.ndarray) -> list[np.ndarray]:
        task = ImageToImage(ImageData(pixels), strength=0.5)
        params = GenerationParams.build(spec, prompt=PROMPT, seed=4, n=2, task=task)
        return engine.generate([params])[0].images

    images = img2img(reference)
    # The call runs at the reference's size (FLUX's img2img would default to 1024 px).
    assert [image.shape for image in images] == [(48, 64, 3)] * 2
    assert not np.array_equal(images[0], img2img(255 - reference)[0])


def test_a_flux_entry_naming_no_defaults_gets_its_familys(tmp_path):
    (tmp_path / "models.toml").write_text(
        "".join(
            f"""
[models.{model_id}]
kind = "base"
family = "{family}"
source = "models/{model_id}"
resolutions = {{ "1K" = 1024 }}
aspect_ratios = ["1:1"]
credits = {{ "1K" = 1 }}
"""
            for model_id, family in (("bare-flux1", "flux1"), ("bare-klein", "flux2"))
        )
    )
    catalog = load_catalog(tmp_path)
    dev, klein = catalog.get("bare-flux1"), catalog.get("bare-klein")
    assert (dev.default_steps, dev.default_guidance, dev.default_scheduler) == (
        28, 3.5, "flow_euler",
    )  # fmt: skip
    assert (klein.default_steps, klein.default_scheduler) == (4, "flow_euler")
    assert catalog.get("tiny-sd15").default_scheduler != "flow_euler"
    params = GenerationParams.build(klein, prompt=PROMPT)
    assert (params.steps, params.guidance, params.scheduler) == (4, 0.0, "flow_euler")
