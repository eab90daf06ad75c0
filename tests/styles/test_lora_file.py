"""LoRA file validation: both key layouts accepted (and loadable by diffusers), every bad
file refused with a reason, the fit to the base model checked from its config."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from lora_makers import fresh_pipeline, kohya_tensors
from safetensors.torch import save_file

from styles.lora_file import (
    DEFAULT_MAX_BYTES,
    StyleFileError,
    StyleFileTooLarge,
    sha256_of,
    store_lora_file,
)
from styles.lora_fit import inspect_lora, module_shapes
from styles.record import style_file_path
from weights.single_file import shipped_config_dir

LIMITS = {"max_bytes": DEFAULT_MAX_BYTES, "max_rank": 64}


def inspect(path: Path, catalog, model: str, **limits):
    return inspect_lora(path, catalog.get(model), **{**LIMITS, **limits})


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_both_layouts_are_accepted_and_load_in_diffusers(family, catalog, lora_files, tmp_path):
    spec = catalog.get(f"tiny-{family}")
    encoders = ("text_encoder",) if family == "sd15" else ("text_encoder", "text_encoder_2")
    stored = {}
    for layout in ("diffusers", "kohya"):
        path = lora_files[(family, layout)]
        info = inspect(path, catalog, spec.id)
        assert (info.family, info.layout, info.rank) == (family, layout, 4)
        assert info.text_encoder_layers == encoders
        assert info.denoiser_layers > 0 and info.layers > info.denoiser_layers
        assert (info.bytes, info.sha256) == (path.stat().st_size, sha256_of(path))
        stored[layout], created = store_lora_file(path, tmp_path / "styles", info.sha256)
        assert created and stored[layout] == style_file_path(tmp_path / "styles", info.sha256)
        assert stored[layout].read_bytes() == path.read_bytes()

    # What was accepted is what diffusers loads: every component gets the adapter.
    pipe = fresh_pipeline(str(spec.source), family)
    for layout, path in stored.items():
        pipe.load_lora_weights(str(path), adapter_name=layout)
    adapters = pipe.get_list_adapters()
    assert set(adapters) == {"unet", *encoders}
    assert all(sorted(names) == ["diffusers", "kohya"] for names in adapters.values())


@pytest.mark.parametrize(
    ("family", "model"),
    [("sd15", "tiny-sdxl"), ("sdxl", "tiny-sd15")],
    ids=["sd15-on-sdxl", "sdxl-on-sd15"],
)
@pytest.mark.parametrize("layout", ["diffusers", "kohya"])
def test_a_lora_of_the_other_family_is_refused(family, model, layout, catalog, lora_files):
    with pytest.raises(StyleFileError, match=f"does not fit model '{model}'"):
        inspect(lora_files[(family, layout)], catalog, model)


def test_a_full_size_sd15_lora_on_sdxl_names_the_family_it_fits(catalog, tmp_path):
    # One layer shaped like real SD 1.5's first attention (320 features): SDXL's first
    # down block has no attention at all, and the shipped SD 1.5 config takes it.
    path = tmp_path / "sd15-real.safetensors"
    base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file(
        {
            f"{base}.lora_down.weight": torch.zeros(8, 320),
            f"{base}.lora_up.weight": torch.zeros(320, 8),
        },
        str(path),
    )
    with pytest.raises(StyleFileError, match="it fits the sd15 family, not sdxl"):
        inspect(path, catalog, "tiny-sdxl")


def test_wrong_features_in_a_module_are_refused(catalog, tmp_path):
    tensors = kohya_tensors(str(catalog.get("tiny-sd15").source), "sd15")
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
    tensors[key] = torch.zeros(4, 48)  # cross-attention takes 32 features here
    save_file(tensors, str(tmp_path / "bad.safetensors"))
    with pytest.raises(StyleFileError, match=r"attn2\.to_k is 32 in, 32 out in the model, 48 in"):
        inspect(tmp_path / "bad.safetensors", catalog, "tiny-sd15")


def test_rank_over_the_limit_is_refused(catalog, lora_files):
    with pytest.raises(StyleFileError, match="rank 4, over the limit of 2"):
        inspect(lora_files[("sd15", "kohya")], catalog, "tiny-sd15", max_rank=2)
    assert inspect(lora_files[("sd15", "kohya")], catalog, "tiny-sd15", max_rank=4).rank == 4


def test_size_is_checked_before_reading(catalog, lora_files, tmp_path):
    path = lora_files[("sd15", "diffusers")]
    size = path.stat().st_size
    with pytest.raises(StyleFileTooLarge, match="over the limit"):
        inspect(path, catalog, "tiny-sd15", max_bytes=size - 1)
    # Random bytes over the limit are refused for their size, unread.
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(StyleFileTooLarge):
        inspect(junk, catalog, "tiny-sd15", max_bytes=4095)


def test_pickles_are_refused_unopened(catalog, tmp_path):
    zipped = tmp_path / "lora.safetensors"  # the name does not matter, the bytes do
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(4, 4)}, zipped)
    with pytest.raises(StyleFileError, match="zip archive.*torch.save.*pickle"):
        inspect(zipped, catalog, "tiny-sd15")
    plain = tmp_path / "lora.ckpt"
    plain.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    with pytest.raises(StyleFileError, match="Python pickle"):
        inspect(plain, catalog, "tiny-sd15")


@pytest.mark.parametrize("size", [0, 5, 4096])
def test_random_bytes_are_refused(size, catalog, tmp_path):
    path = tmp_path / "random.safetensors"
    path.write_bytes(os.urandom(size))
    with pytest.raises(StyleFileError, match="not a safetensors file"):
        inspect(path, catalog, "tiny-sd15")


def test_truncated_files_are_refused(catalog, lora_files, tmp_path):
    data = lora_files[("sd15", "kohya")].read_bytes()
    for cut, where in (
        (len(data) - 1, "tensors need"),
        (len(data) // 2, "tensors need"),
        (64, "header alone"),
    ):
        path = tmp_path / f"cut-{cut}.safetensors"
        path.write_bytes(data[:cut])
        with pytest.raises(StyleFileError, match=f"truncated: .*{where}"):
            inspect(path, catalog, "tiny-sd15")


def test_files_that_are_not_loras_are_refused(catalog, tmp_path):
    q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    cases = {
        "a checkpoint": ({"model.diffusion_model.conv_in.weight": torch.zeros(4)}, "neither"),
        "no tensors": ({}, "holds no tensors"),
        "integers": ({f"{q}.lora_down.weight": torch.zeros(4, 32, dtype=torch.int64)}, "floating"),
        "NaN": ({f"{q}.lora_down.weight": torch.full((4, 32), float("nan"))}, "NaN"),
        "a LoHa": ({f"{q}.hada_w1_a": torch.zeros(4, 4)}, "cannot read this LoRA"),
        "no up matrix": ({f"{q}.lora_down.weight": torch.zeros(4, 32)}, "cannot read"),
    }
    for name, (tensors, reason) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path))
        with pytest.raises(StyleFileError, match=reason):
            inspect(path, catalog, "tiny-sd15")


def test_importing_the_same_bytes_twice_stores_one_file(lora_files, tmp_path):
    path = lora_files[("sdxl", "kohya")]
    digest = sha256_of(path)
    first, created = store_lora_file(path, tmp_path, digest)
    second, again = store_lora_file(path, tmp_path, digest)
    assert (first, created, again) == (second, True, False)
    assert [p.name for p in tmp_path.iterdir()] == [f"{digest}.safetensors"]


def test_model_shapes_come_from_configs_without_weights():
    shapes = module_shapes(str(shipped_config_dir("sdxl")))
    # Real SDXL: 2048-wide cross-attention, two text encoders, no weights read.
    to_k = shapes["unet"]["down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"]
    assert (to_k.in_features, to_k.out_features) == (2048, 640)
    assert set(shapes) == {"unet", "text_encoder", "text_encoder_2"}
