"""Single-file checkpoints in the original (LDM / A1111) layout load through the loader.

The tiny models are written as one original-layout ``.safetensors`` (``_original_layout``)
and loaded back through ``pipelines.families.load_pipeline`` with every socket refused, so a
hub request fails the test rather than silently succeeding on a machine with network.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import pytest
import torch
from _original_layout import (
    apply_rules,
    original_state_dict,
    unet_rules,
    vae_rules,
    write_single_file,
)
from safetensors.torch import save_file

from pipelines.families import family_of, load_pipeline
from weights.catalog import PICKLE_SUFFIXES, CatalogError, load_catalog
from weights.checks import ModelLoadError
from weights.single_file import config_dir, load_single_file, shipped_config_dir

FP32 = torch.float32


@pytest.fixture(scope="module")
def tiny(catalog) -> dict:
    """The tiny pipelines as loaded from their diffusers folders, by family."""
    return {
        family: load_pipeline(catalog.get(f"tiny-{family}"), "cpu", FP32)
        for family in ("sd15", "sdxl")
    }


def _spec(tmp_path: Path, family: str, source: Path, config: Path | None):
    """A catalog spec for a single file, read from a models.toml as a user would write it."""
    lines = [
        f"[models.single-{family}]",
        'kind = "base"',
        f'family = "{family}"',
        f'source = "{source}"',
        'aspect_ratios = ["1:1"]',
        'resolutions = { "128px" = 128 }',
        'credits = { "128px" = 1 }',
    ]
    if config is not None:
        lines.append(f'config = "{config}"')
    extra = tmp_path / "models.toml"
    extra.write_text("\n".join(lines) + "\n")
    return load_catalog(tmp_path, extra).get(f"single-{family}")


def _tiny_config(catalog, family: str) -> Path:
    return catalog.get(f"tiny-{family}").source


def _assert_same_weights(loaded, reference, names: tuple[str, ...]) -> None:
    for name in names:
        want = getattr(reference, name).state_dict()
        got = getattr(loaded, name).state_dict()
        assert got.keys() == want.keys(), name
        differ = [k for k in want if not torch.equal(got[k], want[k])]
        assert not differ, f"{name}: {len(differ)} tensors differ, e.g. {differ[:3]}"


@pytest.mark.parametrize(
    ("family", "components"),
    [
        ("sd15", ("unet", "vae", "text_encoder")),
        # Both tiny SDXL text encoders have the same width: diffusers' own key probe
        # would load the first encoder's weights into the second.
        ("sdxl", ("unet", "vae", "text_encoder", "text_encoder_2")),
    ],
)
def test_single_file_round_trips_offline(
    catalog, tiny, tmp_path, no_network, family, components
) -> None:
    source = write_single_file(tiny[family], tmp_path / f"tiny-{family}.safetensors")
    spec = _spec(tmp_path, family, source, _tiny_config(catalog, family))
    pipe = load_pipeline(spec, "cpu", FP32)
    assert type(pipe) is type(tiny[family])
    _assert_same_weights(pipe, tiny[family], components)
    assert pipe.tokenizer("a red fox").input_ids == tiny[family].tokenizer("a red fox").input_ids
    if family == "sdxl":
        assert pipe.tokenizer_2.pad_token_id == 0


def test_weights_come_from_the_file_not_the_config_folder(
    catalog, tiny, tmp_path, no_network
) -> None:
    # The tiny config folder holds weights too; a loader that fell back to them would
    # still "round-trip". Shifted weights in the file must come back shifted.
    original = original_state_dict(tiny["sd15"])
    shifted = {k: v + 1 if v.is_floating_point() else v for k, v in original.items()}
    source = tmp_path / "shifted.safetensors"
    save_file({k: v.contiguous() for k, v in shifted.items()}, str(source))
    spec = _spec(tmp_path, "sd15", source, _tiny_config(catalog, "sd15"))
    pipe = load_single_file(spec, type(tiny["sd15"]), family_of("sd15").single_file, FP32)
    for name in ("unet", "vae", "text_encoder"):
        want = getattr(tiny["sd15"], name).state_dict()
        got = getattr(pipe, name).state_dict()
        key = next(k for k in want if want[k].is_floating_point())
        assert torch.equal(got[key], want[key] + 1), name


def test_without_a_config_the_shipped_full_size_config_is_used(tiny, tmp_path) -> None:
    source = write_single_file(tiny["sd15"], tmp_path / "tiny.safetensors")
    spec = _spec(tmp_path, "sd15", source, None)
    assert config_dir(spec) == shipped_config_dir("sd15")
    # A toy-width file cannot fill the full-size architecture: a clear error, not a crash.
    with pytest.raises(ModelLoadError, match="does not fit the sd15 config"):
        load_pipeline(spec, "cpu", FP32)


def test_a_checkpoint_of_another_family_is_refused(catalog, tiny, tmp_path) -> None:
    source = write_single_file(tiny["sdxl"], tmp_path / "xl.safetensors")
    spec = _spec(tmp_path, "sd15", source, _tiny_config(catalog, "sd15"))
    with pytest.raises(ModelLoadError, match="no weights for text_encoder.*sd15 checkpoint"):
        load_pipeline(spec, "cpu", FP32)


def test_a_checkpoint_without_a_vae_is_refused(catalog, tiny, tmp_path) -> None:
    # Else diffusers would take the VAE from the tiny config folder's weights.
    tensors = original_state_dict(tiny["sd15"])
    tensors = {k: v.contiguous() for k, v in tensors.items() if not k.startswith("first_stage")}
    source = tmp_path / "novae.safetensors"
    save_file(tensors, str(source))
    spec = _spec(tmp_path, "sd15", source, _tiny_config(catalog, "sd15"))
    with pytest.raises(ModelLoadError, match="no weights for vae"):
        load_pipeline(spec, "cpu", FP32)


def test_a_missing_tensor_is_refused_not_left_on_meta(catalog, tiny, tmp_path) -> None:
    tensors = original_state_dict(tiny["sdxl"])
    del tensors["conditioner.embedders.1.model.text_projection"]
    source = tmp_path / "noproj.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(source))
    spec = _spec(tmp_path, "sdxl", source, _tiny_config(catalog, "sdxl"))
    with pytest.raises(ModelLoadError, match="lacks 1 text_encoder_2 weight.*text_projection"):
        load_pipeline(spec, "cpu", FP32)


@pytest.mark.parametrize("suffix", PICKLE_SUFFIXES)
def test_pickle_checkpoints_are_refused(catalog, tmp_path, suffix) -> None:
    source = tmp_path / f"model{suffix}"
    source.write_bytes(b"not read: refused by name before any byte is loaded")
    spec = dataclasses.replace(catalog.get("tiny-sd15"), source=source)
    with pytest.raises(ModelLoadError, match="pickle"):
        load_pipeline(spec, "cpu", FP32)
    with pytest.raises(ModelLoadError, match="pickle"):
        load_single_file(spec, object, family_of("sd15").single_file, FP32)
    with pytest.raises(CatalogError, match="pickle"):
        _spec(tmp_path, "sd15", source, None)


# Keys and shapes of the released checkpoints (v1-5-pruned-emaonly, sd_xl_base_1.0), under
# "model.diffusion_model." and "first_stage_model.": they anchor the layout map to real files.
REAL_KEYS = {
    "sd15": {
        "input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
        "input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "middle_block.1.transformer_blocks.0.attn2.to_k.weight": (1280, 768),
        "output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "out.2.weight": (4, 320, 3, 3),
    },
    "sdxl": {
        "label_emb.0.0.weight": (1280, 2816),
        "input_blocks.4.1.proj_in.weight": (640, 640),
        "input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight": (1280, 2048),
        "output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
        "output_blocks.8.0.skip_connection.weight": (320, 640, 1, 1),
    },
    "vae": {
        "encoder.down.0.block.0.conv1.weight": (128, 128, 3, 3),
        "encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
        "decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
        "decoder.norm_out.weight": (128,),
    },
}


def _meta_round_trip(cls, family: str, subfolder: str, rules, convert, prefix: str, real: dict):
    config = cls.load_config(shipped_config_dir(family), subfolder=subfolder)
    with torch.device("meta"):
        model = cls.from_config(config)
    want = model.state_dict()
    original = apply_rules(want, rules(config))
    for key, shape in real.items():
        assert tuple(original[key].shape) == shape, key
    back = convert({prefix + k: v for k, v in original.items()}, config=config)
    assert back.keys() == want.keys()
    assert all(back[k].shape == want[k].shape for k in want)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_unet_layout_fits_full_size_checkpoints(family) -> None:
    """At full size, on meta: real key names, and diffusers' converter maps them back."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    _meta_round_trip(
        UNet2DConditionModel, family, "unet", unet_rules, convert_ldm_unet_checkpoint,
        "model.diffusion_model.", REAL_KEYS[family],
    )  # fmt: skip


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_vae_layout_fits_full_size_checkpoints(family) -> None:
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    _meta_round_trip(
        AutoencoderKL, family, "vae", vae_rules, convert_ldm_vae_checkpoint,
        "first_stage_model.", REAL_KEYS["vae"],
    )  # fmt: skip


@pytest.mark.gpu
@pytest.mark.slow
def test_full_size_sd15_single_file_loads_on_gpu_with_shipped_config(tmp_path) -> None:
    """A full-size SD 1.5 checkpoint in the original layout, built from the shipped config."""
    import diffusers
    import transformers

    folder = shipped_config_dir("sd15")
    bf16 = torch.bfloat16
    previous = torch.get_default_dtype()
    torch.set_default_dtype(bf16)
    try:
        with torch.device("cuda"):
            unet_cls, vae_cls = diffusers.UNet2DConditionModel, diffusers.AutoencoderKL
            reference = types.SimpleNamespace(
                unet=unet_cls.from_config(unet_cls.load_config(folder, subfolder="unet")),
                vae=vae_cls.from_config(vae_cls.load_config(folder, subfolder="vae")),
                text_encoder=transformers.CLIPTextModel(
                    transformers.CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder")
                ),
            )
    finally:
        torch.set_default_dtype(previous)
    source = write_single_file(reference, tmp_path / "sd15-full.safetensors")
    spec = _spec(tmp_path, "sd15", source, None)
    pipe = load_pipeline(spec, "cuda", bf16)
    _assert_same_weights(pipe, reference, ("unet", "vae", "text_encoder"))
    images = pipe("a red fox", num_inference_steps=2, output_type="np").images
    assert images.shape == (1, 512, 512, 3)
