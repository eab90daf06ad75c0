"""The engine's image tasks on the tiny models: img2img and inpaint derived with
``from_pipe`` (no new parameter storage), instruct models, and the edit tools' masks and
composite (outside the feathered mask, the input's pixels exactly)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.edit_tools import blend_weight, composite, prepare_edit, work_size
from pipelines.params import GenerationParams, ImageData, ParamError
from pipelines.task import Task
from pipelines.tasks import RUNNERS, ControlNet, ImageToImage, Inpaint, Instruct


def parameter_storage(pipe) -> set[int]:
    """Data pointers of every parameter and buffer of a pipeline's modules."""
    import torch

    pointers = set()
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            pointers |= {t.data_ptr() for t in component.parameters()}
            pointers |= {t.data_ptr() for t in component.buffers()}
    return pointers


def smooth(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1
    ).astype(np.uint8)


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_deriving_img2img_and_inpaint_adds_no_parameter_storage(engines, model):
    engine = engines[model]
    before = parameter_storage(engine.pipe)
    for task in (Task.IMAGE_TO_IMAGE, Task.INPAINT):
        derived = engine.pipeline(task)
        assert derived is not engine.pipe
        assert parameter_storage(derived) <= before
        assert derived.unet is engine.pipe.unet and derived.vae is engine.pipe.vae
    assert parameter_storage(engine.pipe) == before


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_img2img_starts_from_the_image_as_far_as_strength_says(catalog, engines, model):
    """Two different init images give results that differ more at a low strength (the
    image survives) than at full strength (noise dominates). The tiny VAE is random, so
    the result is not the image itself; how much it depends on it is what shows."""
    spec = catalog.get(model)
    first, second = ImageData(smooth(128, 128)), ImageData(255 - smooth(128, 128))

    def run(image: ImageData, strength: float) -> np.ndarray:
        params = GenerationParams.build(
            spec, prompt="a field", seed=3, steps=8, task=ImageToImage(image, strength)
        )
        return engines[model].generate([params])[0].images[0].astype(int)

    low = np.abs(run(first, 0.25) - run(second, 0.25)).mean()
    full = np.abs(run(first, 1.0) - run(second, 1.0)).mean()
    assert low > 2 * full


def test_an_instruct_model_edits_with_image_guidance(catalog, engines):
    spec = catalog.get("tiny-instruct")
    image = ImageData(smooth(64, 64))

    def run(guidance: float) -> np.ndarray:
        params = GenerationParams.build(
            spec, prompt="make it blue", seed=1, task=Instruct(image, guidance)
        )
        return engines["tiny-instruct"].generate([params])[0].images[0]

    assert run(1.5).shape == (64, 64, 3)
    assert not np.array_equal(run(1.5), run(3.0))
    with pytest.raises(KeyError, match="not available"):
        engines["tiny-instruct"].pipeline(Task.TEXT_TO_IMAGE)


def test_image_tasks_cannot_be_built_without_their_inputs():
    """A reference-less img2img, a mask-less inpaint, a ControlNet call without a control
    image: refused where the task's inputs are built, naming the field as before."""
    image = ImageData(smooth(128, 128))
    with pytest.raises(ParamError, match="needs an image") as refused:
        ImageToImage(None, 0.5)  # type: ignore[arg-type]
    assert refused.value.param == "image"
    with pytest.raises(ParamError, match="inpainting needs a mask") as refused:
        Inpaint(image, None)  # type: ignore[arg-type]
    assert refused.value.param == "mask"
    with pytest.raises(ParamError, match="needs a control image") as refused:
        ControlNet(None)  # type: ignore[arg-type]
    assert refused.value.param == "control"
    with pytest.raises(ParamError, match="strength") as refused:
        ImageToImage(image, strength=0.0)
    assert refused.value.param == "strength"
    with pytest.raises(ParamError, match="image_guidance"):
        Instruct(image, image_guidance=-1.0)
    with pytest.raises(TypeError):
        Inpaint(image)  # type: ignore[call-arg]  # no mask: not even constructible


def test_inputs_must_be_at_the_call_size(catalog):
    spec = catalog.get("tiny-sd15")
    small = ImageData(smooth(64, 64))
    with pytest.raises(ValueError, match="init image is 64x64, the call 128x128"):
        GenerationParams.build(spec, prompt="x", task=ImageToImage(small), width=128, height=128)
    mask = ImageData(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="the mask must be HxW"):
        GenerationParams.build(
            spec, prompt="x", task=Inpaint(ImageData(smooth(128, 128)), mask),
            width=128, height=128,
        )  # fmt: skip


def test_every_task_has_a_runner_and_a_module_named_for_it():
    import importlib

    assert set(RUNNERS) == set(Task)
    for task in Task:
        assert importlib.import_module(f"pipelines.tasks.{task}").RUNNER is RUNNERS[task]


def test_equal_inputs_share_a_batch_key_and_different_ones_do_not(catalog):
    spec = catalog.get("tiny-sd15")
    a, b = ImageData(smooth(128, 128)), ImageData(255 - smooth(128, 128))

    def key(image: ImageData, prompt: str):
        params = GenerationParams.build(spec, prompt=prompt, task=ImageToImage(image, 0.5))
        return params.batch_key

    assert key(a, "one") == key(ImageData(a.pixels.copy()), "two")
    assert key(a, "one") != key(b, "one")


def test_the_feathered_weight_is_one_on_the_mask_and_zero_beyond_the_feather():
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 20:40] = 255
    weight = blend_weight(mask, dilate_px=3, feather_px=3)
    assert (weight[mask == 255] == 1).all()
    assert weight[0:10].max() == 0 and weight[:, 50:].max() == 0
    edge = weight[10:20, 30]  # from outside the feather to the mask's top row
    assert edge[0] == 0 and ((edge > 0) & (edge < 1)).any()  # a soft edge past the mask


def test_composite_keeps_every_pixel_the_weight_does_not_touch():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (75, 101, 3), dtype=np.uint8)
    mask = np.zeros((75, 101), np.uint8)
    mask[30:50, 40:60] = 255
    prepared = prepare_edit(original, mask, multiple=8, max_side=128)
    assert prepared.work_size == (104, 72)  # each side to the grid of 8
    generated = rng.integers(0, 256, (72, 104, 3), dtype=np.uint8)
    out = composite(original, generated, prepared)
    outside = prepared.weight == 0
    assert outside.mean() > 0.5
    np.testing.assert_array_equal(out[outside], original[outside])
    assert (out[mask == 255] != original[mask == 255]).any()


def test_work_size_fits_the_grid_and_the_largest_tier():
    assert work_size(100, 75, 8, 256) == (96, 72)  # 12.5 rounds to even
    assert work_size(4000, 3000, 64, 1024) == (1024, 768)
    assert work_size(10, 10, 64, 1024) == (64, 64)


def test_an_erase_mask_grows_more_than_a_replace_mask():
    image = smooth(200, 200)
    mask = np.zeros((200, 200), np.uint8)
    mask[80:120, 80:120] = 255
    replace = prepare_edit(image, mask, multiple=8, max_side=256)
    erase = prepare_edit(image, mask, multiple=8, max_side=256, erase=True)
    assert (erase.weight > 0).sum() > (replace.weight > 0).sum()


def test_each_task_records_the_settings_an_asset_row_always_had():
    """An asset's params keep their keys and values: strength for every task but
    text-to-image (1 where nothing is cut), image_guidance where it was given."""
    from pipelines.params import ControlRef, TextToImage

    image = ImageData(smooth(64, 64))
    mask = ImageData(np.zeros((64, 64), np.uint8))
    assert TextToImage().recorded() == {}
    assert ImageToImage(image, 0.4).recorded() == {"strength": 0.4}
    assert Inpaint(image, mask, 0.7).recorded() == {"strength": 0.7}
    assert Instruct(image).recorded() == {"strength": 1.0}
    assert Instruct(image, 2.0).recorded() == {"strength": 1.0, "image_guidance": 2.0}
    control = ControlNet(ControlRef("tiny-controlnet", image, 0.5))
    assert control.recorded() == {"strength": 1.0} and control.variant == "tiny-controlnet"
