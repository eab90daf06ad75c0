"""Tiny FLUX.1 and FLUX.2 [klein]: the real pipeline classes load them offline and make
images; building gives the same bytes in any process; the T5 and Qwen tokenizers count and
round-trip prompts; [klein] reads Qwen3's hidden layers 9, 18 and 27."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from weights.tiny import MANIFEST, verify_manifest
from weights.tiny_flux import (
    FLUX1_LATENT_CHANNELS,
    FLUX2_LATENT_CHANNELS,
    KLEIN_TEXT_LAYERS,
    build_tiny_flux1,
    build_tiny_flux1_schnell,
    build_tiny_flux2_klein,
    build_tiny_flux2_klein_base,
)
from weights.tiny_text_encoders import (
    QWEN_CHAT_TEMPLATE,
    QWEN_LAYERS,
    T5_MAX_LENGTH,
    qwen_tokenizer,
    t5_tokenizer,
)

BUILDERS = {
    "flux1": build_tiny_flux1,
    "flux1_schnell": build_tiny_flux1_schnell,
    "flux2_klein": build_tiny_flux2_klein,
    "flux2_klein_base": build_tiny_flux2_klein_base,
}
PIPELINE_CLASSES = {
    "flux1": "FluxPipeline",
    "flux1_schnell": "FluxPipeline",
    "flux2_klein": "Flux2KleinPipeline",
    "flux2_klein_base": "Flux2KleinPipeline",
}
# What each model is called with: [dev] takes guidance as a conditioning value, schnell
# none, distilled [klein] ignores it (1.0 keeps diffusers from warning), base uses CFG.
CALL_KWARGS = {
    "flux1": {"guidance_scale": 3.5},
    "flux1_schnell": {"guidance_scale": 0.0, "max_sequence_length": 256},
    "flux2_klein": {"guidance_scale": 1.0},
    "flux2_klein_base": {"guidance_scale": 4.0},
}
PROMPT = "A red fox in the snow, golden hour, 35mm film, highly detailed"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_flux")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def pipelines(folders):
    import diffusers

    loaded = {}
    for name, folder in folders.items():
        cls = getattr(diffusers, PIPELINE_CLASSES[name])
        pipe = cls.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        pipe.set_progress_bar_config(disable=True)
        loaded[name] = pipe
    return loaded


def _image(pipe, name: str, seed: int, steps: int = 4):
    import torch

    return pipe(
        prompt=PROMPT,
        height=64,
        width=64,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
        **CALL_KWARGS[name],
    ).images


def test_every_folder_is_safetensors_and_matches_its_manifest(folders):
    for folder in folders.values():
        names = json.loads((folder / MANIFEST).read_text())
        assert any(name.endswith(".safetensors") for name in names)
        assert not any(name.endswith((".bin", ".pt", ".ckpt")) for name in names)
        assert verify_manifest(folder) == []


def test_a_fresh_process_builds_the_same_bytes(folders, tmp_path):
    """Another interpreter, another hash seed: the tokenizer trainers and the weights must
    not depend on either."""
    code = (
        "import sys; from pathlib import Path; from weights import tiny_flux; "
        "tiny_flux.build_tiny_flux1(Path(sys.argv[1]) / 'flux1'); "
        "tiny_flux.build_tiny_flux2_klein(Path(sys.argv[1]) / 'flux2_klein')"
    )
    env = {**os.environ, "PYTHONHASHSEED": "7", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env=env)
    for name in ("flux1", "flux2_klein"):
        ours = json.loads((folders[name] / MANIFEST).read_text())
        theirs = json.loads((tmp_path / name / MANIFEST).read_text())
        assert ours == theirs, name


def test_flux1_is_built_from_the_real_classes(pipelines):
    dev, schnell = pipelines["flux1"], pipelines["flux1_schnell"]
    assert type(dev.text_encoder).__name__ == "CLIPTextModel"
    assert type(dev.text_encoder_2).__name__ == "T5EncoderModel"
    assert type(dev.transformer).__name__ == "FluxTransformer2DModel"
    assert type(dev.vae).__name__ == "AutoencoderKL"
    assert type(dev.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert dev.vae.config.latent_channels == FLUX1_LATENT_CHANNELS
    assert (dev.vae.config.scaling_factor, dev.vae.config.shift_factor) == (0.3611, 0.1159)
    assert dev.vae_scale_factor == 8
    assert dev.tokenizer.model_max_length == 77
    assert dev.tokenizer_2.model_max_length == T5_MAX_LENGTH
    assert dev.transformer.config.guidance_embeds
    assert dev.scheduler.config.use_dynamic_shifting
    assert not schnell.transformer.config.guidance_embeds
    assert not schnell.scheduler.config.use_dynamic_shifting


def test_flux2_klein_is_built_from_the_real_classes(pipelines):
    klein, base = pipelines["flux2_klein"], pipelines["flux2_klein_base"]
    assert type(klein.text_encoder).__name__ == "Qwen3ForCausalLM"
    assert type(klein.transformer).__name__ == "Flux2Transformer2DModel"
    assert type(klein.vae).__name__ == "AutoencoderKLFlux2"
    assert klein.vae.config.latent_channels == FLUX2_LATENT_CHANNELS
    assert klein.tokenizer.chat_template == QWEN_CHAT_TEMPLATE
    assert klein.config.is_distilled
    assert not base.config.is_distilled


@pytest.mark.parametrize("name", list(BUILDERS))
def test_the_same_seed_makes_the_same_pixels(pipelines, name):
    pipe = pipelines[name]
    first = _image(pipe, name, seed=1)
    assert first.shape == (1, 64, 64, 3)
    assert (first == _image(pipe, name, seed=1)).all()
    assert not (first == _image(pipe, name, seed=2)).all()


def test_klein_base_uses_classifier_free_guidance_and_distilled_does_not(pipelines):
    for name, expected in (("flux2_klein_base", True), ("flux2_klein", False)):
        pipe = pipelines[name]
        _image(pipe, name, seed=1, steps=1)
        assert pipe.do_classifier_free_guidance is expected, name


def test_klein_reads_qwen3_hidden_layers_9_18_27(pipelines):
    """The tiny Qwen3 is as deep as the real 4B, so [klein]'s default selection reads the
    same intermediate layers there and here, not the last (normed) state."""
    import torch

    pipe = pipelines["flux2_klein"]
    encoder = pipe.text_encoder
    assert encoder.config.num_hidden_layers == QWEN_LAYERS > max(KLEIN_TEXT_LAYERS)
    hidden = encoder.config.hidden_size
    assert pipe.transformer.config.joint_attention_dim == len(KLEIN_TEXT_LAYERS) * hidden

    length = 32
    embeds, _ = pipe.encode_prompt(PROMPT, device="cpu", max_sequence_length=length)
    assert embeds.shape == (1, length, len(KLEIN_TEXT_LAYERS) * hidden)
    text = pipe.tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    inputs = pipe.tokenizer(
        text, return_tensors="pt", padding="max_length", truncation=True, max_length=length
    )
    with torch.no_grad():
        states = encoder(**inputs, output_hidden_states=True, use_cache=False).hidden_states
    assert len(states) == QWEN_LAYERS + 1  # the embeddings, then each layer's output
    for slot, layer in enumerate(KLEIN_TEXT_LAYERS):
        torch.testing.assert_close(
            embeds[0, :, slot * hidden : (slot + 1) * hidden], states[layer][0]
        )
    shifted, _ = pipe.encode_prompt(
        PROMPT, device="cpu", max_sequence_length=length, text_encoder_out_layers=(8, 17, 26)
    )
    assert not torch.equal(shifted, embeds)


def test_t5_counts_its_end_of_sequence_token_and_round_trips():
    tokenizer = t5_tokenizer()
    ids = tokenizer(PROMPT).input_ids
    assert ids[-1] == tokenizer.eos_token_id == 1
    assert tokenizer.convert_ids_to_tokens(ids)[-1] == "</s>"
    assert len(ids) == len(tokenizer.tokenize(PROMPT)) + 1
    assert tokenizer.unk_token_id not in ids
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id) == (0, 2)
    for text in (PROMPT, "Café au lait in Paris — naïve watercolour, 1920s poster"):
        assert tokenizer.decode(tokenizer(text).input_ids, skip_special_tokens=True) == text
    long_prompt = " ".join(["fox"] * 600)
    cut = tokenizer(long_prompt, truncation=True, max_length=T5_MAX_LENGTH).input_ids
    assert len(tokenizer(long_prompt).input_ids) > T5_MAX_LENGTH == len(cut)


def test_qwen_tokenizer_round_trips_and_wraps_the_prompt_as_qwen3_does():
    tokenizer = qwen_tokenizer()
    for text in (PROMPT, "Café au lait — 東京の夜景, 8k"):
        ids = tokenizer(text).input_ids  # byte level: no bos, no eos, nothing unknown
        assert tokenizer.decode(ids) == text
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    assert text == (
        f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text).input_ids)
    assert tokens.count("<|im_start|>") == 2 and tokens.count("<think>") == 1
    assert len(tokens) == len(tokenizer(PROMPT).input_ids) + len(
        tokenizer(text.replace(PROMPT, "")).input_ids
    )
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"


def test_the_saved_tokenizers_tokenize_as_the_built_ones(pipelines):
    assert pipelines["flux1"].tokenizer_2(PROMPT).input_ids == t5_tokenizer()(PROMPT).input_ids
    qwen = pipelines["flux2_klein"].tokenizer
    assert qwen(PROMPT).input_ids == qwen_tokenizer()(PROMPT).input_ids


def test_the_folders_serve_the_reference_tasks_too(pipelines):
    """FLUX.1's img2img sibling (``from_pipe``, no new weights) and [klein]'s reference
    image run on the tiny folders at 64 px."""
    import diffusers
    import torch
    from PIL import Image

    reference = Image.new("RGB", (64, 64), (200, 30, 30))
    img2img = diffusers.FluxImg2ImgPipeline.from_pipe(pipelines["flux1"])
    img2img.set_progress_bar_config(disable=True)
    images = [
        img2img(
            prompt=PROMPT,
            image=reference,
            height=64,
            width=64,
            strength=0.6,
            num_inference_steps=4,
            generator=torch.Generator().manual_seed(1),
            output_type="np",
        ).images,
        pipelines["flux2_klein"](
            prompt=PROMPT,
            image=reference,
            height=64,
            width=64,
            num_inference_steps=2,
            guidance_scale=1.0,
            generator=torch.Generator().manual_seed(1),
            output_type="np",
        ).images,
    ]
    assert [image.shape for image in images] == [(1, 64, 64, 3)] * 2
