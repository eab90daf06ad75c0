"""The shipped full-size configs build the real SD 1.5 and SDXL architectures.

Models are instantiated on the meta device (no memory, no weights) and their parameter
counts compared with the published figures of the original checkpoints, so a wrong field
in a shipped config fails here rather than as a shape error when a user's checkpoint loads.
"""

from __future__ import annotations

import json

import pytest
import torch

from weights.single_file import shipped_config_dir

# Exact parameter counts of the released models (diffusers / transformers classes).
SD15_UNET = 859_520_964
SDXL_UNET = 2_567_463_684
SD_VAE = 83_653_863
CLIP_L_TEXT = 123_060_480
BIGG_TEXT_WITH_PROJECTION = 694_659_840


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _unet(family: str) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    config = UNet2DConditionModel.load_config(shipped_config_dir(family), subfolder="unet")
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(config)


def _vae(family: str) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    config = AutoencoderKL.load_config(shipped_config_dir(family), subfolder="vae")
    with torch.device("meta"):
        return AutoencoderKL.from_config(config)


def _text(family: str, subfolder: str, cls_name: str) -> torch.nn.Module:
    import transformers

    cls = getattr(transformers, cls_name)
    config = transformers.CLIPTextConfig.from_pretrained(
        shipped_config_dir(family), subfolder=subfolder, local_files_only=True
    )
    with torch.device("meta"):
        return cls(config)


@pytest.mark.parametrize(("family", "expected"), [("sd15", SD15_UNET), ("sdxl", SDXL_UNET)])
def test_unet_parameter_count(family: str, expected: int) -> None:
    assert _count(_unet(family)) == expected


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_vae_parameter_count(family: str) -> None:
    assert _count(_vae(family)) == SD_VAE


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_clip_l_text_encoder_parameter_count(family: str) -> None:
    assert _count(_text(family, "text_encoder", "CLIPTextModel")) == CLIP_L_TEXT


def test_sdxl_bigg_text_encoder_parameter_count() -> None:
    model = _text("sdxl", "text_encoder_2", "CLIPTextModelWithProjection")
    assert _count(model) == BIGG_TEXT_WITH_PROJECTION


def test_sdxl_vae_scaling_factor_differs_from_sd15() -> None:
    # SDXL's VAE was retrained; its latent scale is 0.13025, SD 1.5 keeps the default.
    assert _vae("sdxl").config.scaling_factor == pytest.approx(0.13025)
    assert _vae("sd15").config.scaling_factor == pytest.approx(0.18215)


@pytest.mark.parametrize(
    ("family", "scheduler"), [("sd15", "PNDMScheduler"), ("sdxl", "EulerDiscreteScheduler")]
)
def test_scheduler_config_loads(family: str, scheduler: str) -> None:
    import diffusers

    cls = getattr(diffusers, scheduler)
    loaded = cls.from_pretrained(shipped_config_dir(family), subfolder="scheduler")
    assert loaded.config.num_train_timesteps == 1000
    assert loaded.config.beta_schedule == "scaled_linear"


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_model_index_names_no_safety_checker_or_weightless_folders(family: str) -> None:
    folder = shipped_config_dir(family)
    index = json.loads((folder / "model_index.json").read_text())
    for name in ("safety_checker", "feature_extractor"):
        assert index.get(name, [None, None]) == [None, None]
    # Every component with a class but no tokenizer has its config shipped.
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        if name.startswith("tokenizer"):
            continue
        assert (folder / name).is_dir(), name
    assert not list(folder.rglob("*.safetensors"))
