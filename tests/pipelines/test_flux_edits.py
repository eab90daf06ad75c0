"""FLUX edits through the Engine on the default catalog's tiny models (issue 21, Edits):
instruct on FLUX.1 Kontext and FLUX.2 [klein] (its image input), inpainting on FLUX.1 Fill,
on a FLUX.1 base model (``FluxInpaintPipeline``) and on [klein]
(``Flux2KleinInpaintPipeline``), [klein]'s img2img as inpainting under a whole-image mask;
the same seed gives the same pixels, a result composited over its input keeps the pixels
outside the feathered mask exactly, and the tasks each model has."""

from __future__ import annotations

import diffusers
import numpy as np
import pytest

from pipelines.call_overhead import diffusers_class
from pipelines.edit_tools import composite, prepare_edit
from pipelines.params import GenerationParams, ImageData, ParamError
from pipelines.task import Task
from pipelines.tasks import ImageToImage, Inpaint, Instruct

FLUX1, KLEIN = "tiny-flux1", "tiny-flux2-klein"
KONTEXT, FILL = "tiny-flux1-kontext", "tiny-flux1-fill"


def smooth(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1
    ).astype(np.uint8)


def box(width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[16:40, 24:56] = 255
    return mask


@pytest.fixture(scope="module")
def flux_engines(catalog):
    """The four tiny FLUX engines alone (the session's ``engines`` loads every model)."""
    from pipelines.engine import Engine

    return {
        model: Engine.load(catalog.get(model), "cpu") for model in (FLUX1, KLEIN, KONTEXT, FILL)
    }


def run(catalog, engines, model: str, task, seed: int = 5, steps: int = 2) -> np.ndarray:
    spec = catalog.get(model)
    width, height = task.input_size
    params = GenerationParams.build(
        spec, prompt="a red lantern", seed=seed, steps=steps, task=task, width=width, height=height
    )
    return engines[model].generate([params])[0].images[0]


def test_each_model_has_the_tasks_of_its_kind_and_family(flux_engines):
    tasks = {model: engine.tasks for model, engine in flux_engines.items()}
    assert tasks[KONTEXT] == (Task.INSTRUCT,) and tasks[FILL] == (Task.INPAINT,)
    assert set(tasks[FLUX1]) == {Task.TEXT_TO_IMAGE, Task.IMAGE_TO_IMAGE, Task.INPAINT}
    assert set(tasks[KLEIN]) == {
        Task.TEXT_TO_IMAGE,
        Task.IMAGE_TO_IMAGE,
        Task.INPAINT,
        Task.INSTRUCT,
        Task.REFERENCES,  # pins' pictures (tests/serving/test_flux_pins.py)
    }
    kinds = {
        (KONTEXT, Task.INSTRUCT): diffusers.FluxKontextPipeline,
        (FILL, Task.INPAINT): diffusers.FluxFillPipeline,
        (FLUX1, Task.INPAINT): diffusers.FluxInpaintPipeline,
        (KLEIN, Task.INPAINT): diffusers.Flux2KleinInpaintPipeline,
        (KLEIN, Task.IMAGE_TO_IMAGE): diffusers.Flux2KleinInpaintPipeline,
        (KLEIN, Task.INSTRUCT): diffusers.Flux2KleinPipeline,
        (KLEIN, Task.REFERENCES): diffusers.Flux2KleinPipeline,
    }
    for (model, task), cls in kinds.items():
        pipe = flux_engines[model].pipeline(task)
        assert diffusers_class(pipe) is cls, (model, task)
        # Derived pipelines share the base model's transformer (no weights copied).
        assert pipe.transformer is flux_engines[model].pipe.transformer
    assert flux_engines[FILL].pipe.transformer.config.in_channels == 384


@pytest.mark.parametrize("model", [KONTEXT, KLEIN])
def test_instruct_edits_the_image_and_the_same_seed_gives_the_same_pixels(
    catalog, flux_engines, model
):
    image, other = ImageData(smooth(64, 48)), ImageData(255 - smooth(64, 48))
    first = run(catalog, flux_engines, model, Instruct(image))
    assert first.shape == (48, 64, 3)  # the call's size (Kontext's resize is off)
    np.testing.assert_array_equal(first, run(catalog, flux_engines, model, Instruct(image)))
    # The result depends on the input image: it is the model's conditioning.
    assert not np.array_equal(first, run(catalog, flux_engines, model, Instruct(other)))


@pytest.mark.parametrize("model", [KONTEXT, KLEIN])
def test_image_guidance_is_instruct_pix2pix_only(catalog, flux_engines, model):
    with pytest.raises(ParamError) as info:
        run(catalog, flux_engines, model, Instruct(ImageData(smooth(64, 48)), 1.5))
    assert info.value.param == "image_guidance"


@pytest.mark.parametrize("model", [FILL, FLUX1, KLEIN])
def test_inpainting_keeps_the_pixels_outside_the_feathered_mask_exactly(
    catalog, flux_engines, model
):
    original = smooth(72, 56)  # off the 16-px grid: the work size differs
    mask = box(72, 56)
    prepared = prepare_edit(original, mask, multiple=16, max_side=256)
    task = prepared.task_inputs(Task.INPAINT, 1.0)
    generated = run(catalog, flux_engines, model, task)
    assert generated.shape == (*prepared.work_size[::-1], 3)
    np.testing.assert_array_equal(generated, run(catalog, flux_engines, model, task))
    result = composite(original, generated, prepared)
    outside = prepared.weight == 0
    assert outside.mean() > 0.3
    np.testing.assert_array_equal(result[outside], original[outside])
    assert np.abs(result[mask == 255].astype(int) - original[mask == 255]).mean() > 5


def test_klein_img2img_is_inpainting_under_a_whole_image_mask(catalog, flux_engines):
    """[klein] has no img2img pipeline in diffusers 0.42.1: recreate without a mask and
    variations run its inpaint pipeline over the whole image, which is img2img: the same
    pixels as that inpaint call, nearer the input at a low strength than at full."""
    image = ImageData(smooth(64, 64))
    whole = ImageData(np.full((64, 64), 255, np.uint8))
    low = run(catalog, flux_engines, KLEIN, ImageToImage(image, 0.5), steps=4)
    as_inpaint = run(catalog, flux_engines, KLEIN, Inpaint(image, whole, 0.5), steps=4)
    np.testing.assert_array_equal(low, as_inpaint)
    # It denoised (two steps of four): another seed is another image.
    assert not np.array_equal(
        low, run(catalog, flux_engines, KLEIN, ImageToImage(image, 0.5), 6, 4)
    )
    full = run(catalog, flux_engines, KLEIN, ImageToImage(image, 1.0), steps=4)
    distance = lambda out: np.abs(out.astype(int) - image.pixels).mean()  # noqa: E731
    assert distance(low) < distance(full)


def test_the_tiny_kontext_and_fill_build_byte_identical_in_a_fresh_process(catalog, tmp_path):
    """Another interpreter and hash seed writes the same files as the session's build
    (``ensure_tiny_models`` through ``TINY_BUILDERS``), manifest for manifest."""
    import json
    import os
    import subprocess
    import sys

    from weights.tiny import MANIFEST, verify_manifest

    code = (
        "import sys; from pathlib import Path; from weights.tiny import build_tiny; "
        "build_tiny('flux1_kontext', Path(sys.argv[1]) / 'kontext'); "
        "build_tiny('flux1_fill', Path(sys.argv[1]) / 'fill')"
    )
    env = {**os.environ, "PYTHONHASHSEED": "11", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env=env)
    for name, model in (("kontext", KONTEXT), ("fill", FILL)):
        ours = catalog.get(model).source
        assert verify_manifest(ours) == []
        theirs = json.loads((tmp_path / name / MANIFEST).read_text())
        assert json.loads((ours / MANIFEST).read_text()) == theirs, name
