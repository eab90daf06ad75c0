"""Private style training on the tiny models, on CPU: training visibly works, is
deterministic, stops when told, and writes a file diffusers loads as a named adapter.

"Visibly" is measured where a tiny model can show it (issue 4): the tiny VAE has random
weights, so decoded colours mean nothing, but its *latents* of the training images are a
definite target. Generations at the same seeds are compared in latent space with and
without the trained style: with it they must land clearly closer to the training
images' latents.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.families import load_pipeline
from styles.lora_fit import inspect_lora
from styles.training import (
    TrainingError,
    TrainingExample,
    TrainingParams,
    caption_with_trigger,
    train_lora,
    training_pixels,
)

RESOLUTION = 64  # the tiny UNet's smallest comfortable size: 8x8 latents
PROMPT = "kilnorange, a pot"
SEEDS = (0, 1, 2)


def orange_looks(count: int = 8, seed: int = 0) -> list[TrainingExample]:
    """``count`` images of one look: saturated orange with a little noise each."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        pixels = np.array([255, 120, 0], np.float32) + rng.normal(0, 12, (96, 80, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        examples.append(TrainingExample(image, caption_with_trigger("a pot", "kilnorange")))
    return examples


def fresh_pipeline(spec):
    # Never the session's shared engines: adapters loaded here must not leak elsewhere.
    return load_pipeline(spec, "cpu", torch.float32)


def latents(pipe, seed: int) -> torch.Tensor:
    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        out = pipe(
            PROMPT,
            height=RESOLUTION,
            width=RESOLUTION,
            num_inference_steps=4,
            guidance_scale=5.0,
            generator=generator,
            output_type="latent",
        )
    return out.images[0]


def target_latent(pipe, examples: list[TrainingExample]) -> torch.Tensor:
    """The mean latent of the training images, as training sees them (scaled)."""
    pixels = torch.stack([training_pixels(ex.image, RESOLUTION) for ex in examples])
    with torch.no_grad():
        mean = pipe.vae.encode(pixels).latent_dist.mean
    return (mean * pipe.vae.config.scaling_factor).mean(0)


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


@pytest.mark.slow
def test_a_trained_style_pulls_generations_toward_its_training_images(catalog, tmp_path: Path):
    spec = catalog.get("tiny-sd15")
    examples = orange_looks()
    started = time.perf_counter()
    losses: list[float] = []
    result = train_lora(
        spec,
        examples,
        TrainingParams(
            steps=120, rank=8, learning_rate=1e-2, batch_size=4, resolution=RESOLUTION, seed=1
        ),
        tmp_path / "orange.safetensors",
        device="cpu",
        progress=lambda step, total, loss: losses.append(loss),
    )
    trained_s = time.perf_counter() - started
    assert len(losses) == 120 and result.path.is_file()
    assert np.mean(losses[-20:]) < 0.85 * np.mean(losses[:20])  # it learned something

    pipe = fresh_pipeline(spec)
    target = target_latent(pipe, examples)
    without = [rms(latents(pipe, seed), target) for seed in SEEDS]
    pipe.load_lora_weights(str(result.path), adapter_name="orange")
    with_style = [rms(latents(pipe, seed), target) for seed in SEEDS]
    ratios = [w / wo for w, wo in zip(with_style, without, strict=True)]
    # Measured 0.65-0.70 at these settings; unstyled is the reference 1.0.
    assert max(ratios) < 0.85, ratios
    assert float(np.mean(ratios)) < 0.8, ratios
    # Turning the style off gives the base model's generations back exactly.
    pipe.disable_lora()
    assert rms(latents(pipe, SEEDS[0]), target) == pytest.approx(without[0], rel=1e-6)
    print(f"trained 120 steps in {trained_s:.1f}s; distance ratios {ratios}")


def _state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


def test_training_is_deterministic_given_a_seed(catalog, tmp_path: Path):
    spec = catalog.get("tiny-sd15")
    examples = orange_looks(5)

    def run(seed: int, name: str) -> dict[str, torch.Tensor]:
        params = TrainingParams(steps=2, rank=4, resolution=RESOLUTION, seed=seed)
        return _state(train_lora(spec, examples, params, tmp_path / name, device="cpu").path)

    first, again, other = run(3, "a.safetensors"), run(3, "b.safetensors"), run(4, "c.safetensors")
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    # Only the attention projections of the UNet, in diffusers' key layout.
    assert all(k.startswith("unet.") for k in first)
    assert {k.split(".lora")[0].rsplit(".", 1)[-1] for k in first} <= {"to_q", "to_k", "to_v", "0"}


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_the_file_is_a_valid_style_for_its_family(catalog, tmp_path: Path, family: str):
    spec = catalog.get(f"tiny-{family}")
    result = train_lora(
        spec,
        orange_looks(5),
        TrainingParams(steps=1, rank=4, resolution=RESOLUTION),
        tmp_path / "style.safetensors",
        device="cpu",
    )
    info = inspect_lora(result.path, spec, max_bytes=1 << 30, max_rank=64)
    assert (info.family, info.rank, info.layout, info.text_encoder_layers) == (
        family,
        4,
        "diffusers",
        (),
    )
    pipe = fresh_pipeline(spec)
    pipe.load_lora_weights(str(result.path), adapter_name="trained")
    assert "trained" in pipe.get_list_adapters()["unet"]


def test_a_progress_callback_that_raises_stops_training_with_nothing_written(
    catalog, tmp_path: Path
):
    class Stop(Exception):
        pass

    def progress(step: int, total: int, loss: float) -> None:
        if step == 2:
            raise Stop

    out = tmp_path / "never.safetensors"
    with pytest.raises(Stop):
        train_lora(
            catalog.get("tiny-sd15"),
            orange_looks(5),
            TrainingParams(steps=50, rank=4, resolution=RESOLUTION),
            out,
            device="cpu",
            progress=progress,
        )
    assert not out.exists()


def test_bad_inputs_are_refused(catalog, tmp_path: Path):
    spec = catalog.get("tiny-sd15")
    with pytest.raises(TrainingError, match="5-50 images, got 4"):
        train_lora(spec, orange_looks(4), TrainingParams(steps=1), tmp_path / "x", device="cpu")
    with pytest.raises(TrainingError, match="not a multiple of 8"):
        train_lora(spec, orange_looks(5), TrainingParams(steps=1, resolution=60), tmp_path / "x")
    with pytest.raises(TrainingError, match="steps must be at least 1"):
        TrainingParams(steps=0)
    assert caption_with_trigger("  a pot ", "kiln") == "kiln, a pot"
    assert caption_with_trigger("", "kiln") == "kiln" and caption_with_trigger("a", None) == "a"
