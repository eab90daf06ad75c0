"""Step previews (pipelines/previews.py) on the tiny models: a tiny autoencoder where one
fits (TAESD on SD 1.5, TAEF1 on FLUX.1 after unpacking its tokens), FLUX.2's linear
projection after unpacking and unpatchifying, ``preview_every`` per request in a shared
call, and the range check."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pipelines.engine import Engine
from pipelines.families import family_of
from pipelines.families.flux2 import LATENT_RGB
from pipelines.loaded_model import LoadedModel
from pipelines.param_error import ParamError
from pipelines.params import GenerationParams
from pipelines.previews import PreviewDecoder, previews_at, spread_every
from pipelines.progress import StepEvent
from weights.catalog import ComponentSpec


class Recorder:
    """A listener that keeps every step event and cancels nothing."""

    def __init__(self) -> None:
        self.events: list[StepEvent] = []

    def on_step(self, event: StepEvent) -> None:
        self.events.append(event)

    def cancelled(self, request_index: int) -> bool:
        return False

    def previews(self, index: int) -> dict[int, list[bytes]]:
        return {
            e.step: e.previews
            for e in self.events
            if e.request_index == index and e.previews is not None
        }


def webp_pixels(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "WEBP"
    return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def loaded(catalog) -> dict[str, Engine]:
    components = tuple(catalog.components.values())
    return {
        mid: Engine.load(catalog.get(mid), device="cpu", components=components)
        for mid in ("tiny-sd15", "tiny-flux1")
    }


def params(catalog, model: str, seed: int, n: int = 1, every: int | None = None, **kw):
    return GenerationParams.build(
        catalog.get(model), prompt="a kiln", seed=seed, n=n, steps=4, preview_every=every, **kw
    )


def test_sd15_previews_by_its_tiny_taesd_only_for_the_request_that_asks(catalog, loaded):
    engine = loaded["tiny-sd15"]
    asking, quiet = params(catalog, "tiny-sd15", 1, n=2, every=2), params(catalog, "tiny-sd15", 9)
    assert asking.batch_key == quiet.batch_key  # previews never split a dynamic batch
    recorder = Recorder()
    heard = engine.generate([asking, quiet], recorder)
    assert engine.preview_decoder is not None and engine.preview_decoder.kind == "autoencoder_tiny"
    shown = recorder.previews(0)
    assert sorted(shown) == [2, 4] and all(len(p) == 2 for p in shown.values())
    assert recorder.previews(1) == {}
    first = [webp_pixels(p) for p in shown[2]]
    assert all(p.shape == (128, 128, 3) for p in first)
    assert not np.array_equal(first[0], first[1])  # one preview per image, in order
    assert shown[2] != shown[4]  # the picture moves with the steps
    # Previews change nothing of the images.
    plain = engine.generate([asking, quiet])
    for a, b in zip(heard, plain, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images, strict=True))


def test_sd15_preview_is_its_taesd_decoding_the_latents(catalog, loaded):
    """The tiny TAESD decodes the UNet's latents as a drop-in VAE would (its factors
    1 and 0): the preview equals decoding the step's latents with it directly."""
    engine = loaded["tiny-sd15"]
    decoder = engine.preview_decoder
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    pixels = decoder.pixels(engine.pipe, latents, 128, 128)
    with torch.inference_mode():
        direct = decoder.autoencoder.decode(latents).sample
    expected = ((direct / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    assert np.array_equal(pixels[0], expected[0].permute(1, 2, 0).numpy())


def test_a_large_calls_latents_are_averaged_down_before_decoding(catalog, loaded):
    """1024² (128² latents): decoded from 64² averaged latents to 512, resized to 256."""
    engine = loaded["tiny-sd15"]
    decoder = engine.preview_decoder
    latents = torch.randn(1, 4, 128, 128, generator=torch.Generator().manual_seed(4))
    pixels = decoder.pixels(engine.pipe, latents, 1024, 1024)
    assert pixels.shape == (1, 256, 256, 3)
    with torch.inference_mode():
        half = decoder.autoencoder.decode(F.avg_pool2d(latents, 2)).sample
    expected = F.interpolate((half / 2 + 0.5).clamp(0, 1), size=(256, 256), mode="area")
    expected = (expected * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(pixels[0], expected)


def test_flux1_previews_unpack_its_tokens_for_its_tiny_taef1(catalog, loaded):
    engine = loaded["tiny-flux1"]
    recorder = Recorder()
    engine.generate([params(catalog, "tiny-flux1", 4, every=1, aspect_ratio="3:2")], recorder)
    assert engine.preview_decoder.kind == "autoencoder_tiny"
    shown = recorder.previews(0)
    assert sorted(shown) == [1, 2, 3, 4]
    # 128x80 px: 8x10 tokens unpacked to 16x10 latents, decoded 8x by TAEF1.
    assert webp_pixels(shown[1][0]).shape == (80, 128, 3)
    # Unpacking is diffusers' own: packed latents come back as they were.
    spatial = torch.randn(2, 16, 10, 16)
    packed = engine.pipe._pack_latents(spatial, 2, 16, 10, 16)
    unpacked = family_of("flux1").preview_latents(engine.pipe, packed, 80, 128)
    assert torch.equal(unpacked, spatial)


def test_flux2_projection_reads_unpatchified_latents_in_place():
    """FLUX.2 packs 2x2 patches of 32 channels into 128-channel tokens: a latent pattern
    comes back where it was, and the projection gives its coefficients' colours."""
    from diffusers import Flux2KleinPipeline as Klein

    pipe = SimpleNamespace(
        vae_scale_factor=8,
        _unpatchify_latents=Klein._unpatchify_latents,
    )
    family = family_of("flux2")
    spatial = torch.zeros(1, 32, 8, 8)
    spatial[0, 3, :, :4] = 2.0  # channel 3 (the brightest row) on the left half
    packed = Klein._pack_latents(Klein._patchify_latents(spatial))
    assert torch.equal(family.preview_latents(pipe, packed, 64, 64), spatial)
    pixels = PreviewDecoder(family, None, LATENT_RGB).pixels(pipe, packed, 64, 64)[0]
    assert pixels.shape == (8, 8, 3)
    bias = np.array(LATENT_RGB.bias)
    lit = bias + 2.0 * np.array(LATENT_RGB.factors[3])
    assert np.array_equal(pixels[:, 4:], np.broadcast_to(_to_u8(bias), (8, 4, 3)))
    assert np.array_equal(pixels[:, :4], np.broadcast_to(_to_u8(lit), (8, 4, 3)))


def _to_u8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb / 2 + 0.5, 0, 1) * 255).astype(np.uint8)


def test_a_tiny_autoencoder_that_does_not_fit_the_latents_is_not_used(catalog, loaded):
    """TAEF1 (16 channels) offered to SD 1.5 (4): not used; SD has no projection: none."""
    taef1 = catalog.component("tiny-taef1")
    stray = ComponentSpec("stray", taef1.kind, taef1.source)  # no families: fits any
    engine = loaded["tiny-sd15"]
    assert PreviewDecoder.for_model(LoadedModel(engine.spec, engine.pipe, [stray])) is None


@pytest.mark.parametrize("every", [-1, 1001])
def test_preview_every_out_of_range_is_refused_naming_it(catalog, every):
    with pytest.raises(ParamError) as refused:
        params(catalog, "tiny-sd15", 1, every=every)
    assert refused.value.param == "preview_every"


def test_preview_steps_and_the_server_default(catalog):
    from pipelines.params import GenerationDefaults

    assert [s + 1 for s in range(10) if previews_at(s, 5)] == [5, 10]
    # OpenAI's partial_images: N previews spread before the last step (fewer if short).
    assert [spread_every(30, n) for n in (0, 1, 2, 3)] == [0, 15, 10, 7]
    assert spread_every(4, 3) == 1 and spread_every(2, 3) == 1
    assert not any(previews_at(s, 0) for s in range(10))
    spec = catalog.get("tiny-sd15")
    served = GenerationDefaults(preview_every=3)
    assert GenerationParams.build(spec, prompt="a", defaults=served).preview_every == 3
    assert (
        GenerationParams.build(spec, prompt="a", defaults=served, preview_every=0).preview_every
        == 0
    )
    assert GenerationParams.build(spec, prompt="a").preview_every == 0  # off by default


def test_tiny_autoencoders_build_byte_identical(tmp_path):
    from weights.tiny import build_tiny_component, file_hashes

    first = build_tiny_component("taef1", tmp_path / "a" / "taef1")
    second = build_tiny_component("taef1", tmp_path / "b" / "taef1")
    assert file_hashes(first) == file_hashes(second)
