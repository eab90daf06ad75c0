"""Single-file FLUX transformers (BFL's layout, and civitai's ``model.diffusion_model.``
bundles) load with the rest of the pipeline from a diffusers folder, offline; files of
another architecture, shape or with weights missing are refused naming ``source``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _bfl_layout import flux1_original, write_transformer_file
from safetensors.torch import save_file

from pipelines.families import load_pipeline
from weights.catalog import CatalogError, load_catalog
from weights.checks import ModelLoadError
from weights.transformer_file import architecture_of, convert_flux1_transformer

FP32 = torch.float32
TINY = {"flux1": "tiny-flux1", "flux2": "tiny-flux2-klein"}


@pytest.fixture(scope="module")
def folders(catalog) -> dict:
    """The tiny FLUX pipelines as loaded from their diffusers folders, by family."""
    return {family: load_pipeline(catalog.get(model), "cpu", FP32)
            for family, model in TINY.items()}  # fmt: skip


def _spec(tmp_path: Path, family: str, source: Path, config: Path | None):
    """A catalog entry for a transformer file, read from a models.toml as a studio writes it."""
    lines = [
        "[models.single-flux]",
        'kind = "base"',
        f'family = "{family}"',
        f'source = "{source}"',
        'aspect_ratios = ["1:1"]',
        'resolutions = { "64px" = 64 }',
        'credits = { "64px" = 1 }',
    ]
    if config is not None:
        lines.append(f'config = "{config}"')
    (tmp_path / "models.toml").write_text("\n".join(lines) + "\n")
    return load_catalog(tmp_path, tmp_path / "models.toml").get("single-flux")


def _shifted_transformer(pipe):
    """The folder's transformer with every weight moved, so the file's weights are
    told apart from the folder's (which the loader must not read)."""
    import copy

    transformer = copy.deepcopy(pipe.transformer)
    with torch.no_grad():
        for p in transformer.parameters():
            p.add_(0.25)
    return transformer


@pytest.mark.parametrize("bundled", [False, True], ids=["bfl", "civitai-bundle"])
@pytest.mark.parametrize("family", ["flux1", "flux2"])
def test_a_transformer_file_loads_with_the_rest_from_the_folder(
    catalog, folders, tmp_path, no_network, family, bundled
) -> None:
    reference = folders[family]
    shifted = _shifted_transformer(reference)
    # A civitai bundle carries other components too; the folder's are used, not those.
    extra = {"vae.decoder.conv_in.weight": torch.ones(2, 2)} if bundled else None
    source = write_transformer_file(shifted, tmp_path / "t.safetensors", bundled=bundled,
                                    extra=extra)  # fmt: skip
    spec = _spec(tmp_path, family, source, catalog.get(TINY[family]).source)

    pipe = load_pipeline(spec, "cpu", FP32)

    assert type(pipe) is type(reference)
    want, got = shifted.state_dict(), pipe.transformer.state_dict()
    assert got.keys() == want.keys()
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    for name in ("vae", "text_encoder"):
        ref = getattr(reference, name).state_dict()
        assert all(torch.equal(t, ref[k]) for k, t in getattr(pipe, name).state_dict().items())
    # And it runs: the folder's pipeline's pixels with the same transformer (to float
    # noise: two runs of one tiny FLUX pipeline on CPU differ by ~2e-5).
    reference_with_file = type(reference)(**{**reference.components, "transformer": shifted})
    call = {"prompt": "a kiln", "height": 64, "width": 64, "num_inference_steps": 2,
            "output_type": "np"}  # fmt: skip
    a = pipe(**call, generator=torch.Generator().manual_seed(3)).images
    b = reference_with_file(**call, generator=torch.Generator().manual_seed(3)).images
    assert abs(a - b).max() < 1e-3


def _full_width_flux1_checkpoint() -> dict[str, torch.Tensor]:
    """A FLUX.1 [dev]-width transformer (3072 wide, one block of each kind) in BFL's
    layout, each row a distinct byte pattern (uint8, built without allocating the model)."""
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(num_layers=1, num_single_layers=1, guidance_embeds=True)
    shapes = flux1_original(dict(model.state_dict()))
    checkpoint = {}
    for n, (key, meta) in enumerate(sorted(shapes.items())):
        rows = (torch.arange(meta.shape[0]) * 7 + n) % 251
        checkpoint[key] = (
            rows.to(torch.uint8).reshape(-1, *[1] * (meta.dim() - 1)).expand(meta.shape)
        )
    return checkpoint


def test_kilns_flux1_conversion_is_diffusers_at_full_width() -> None:
    # diffusers' converter is fixed at FLUX.1's 3072 width; Kiln's reads the width from the
    # file (so the tiny ones load) and must map a real-width file exactly as diffusers does.
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers,
    )

    checkpoint = _full_width_flux1_checkpoint()
    ours = convert_flux1_transformer(checkpoint)
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(checkpoint))
    assert ours.keys() == theirs.keys()
    differ = [k for k in theirs if not torch.equal(ours[k], theirs[k])]
    assert not differ, differ[:5]


def test_the_architecture_is_read_from_key_names() -> None:
    assert architecture_of(["double_blocks.0.img_attn.norm.key_norm.scale"]) == "flux1"
    assert architecture_of(["model.diffusion_model.single_stream_modulation.lin.weight",
                            "double_blocks.0.img_attn.norm.key_norm.scale"]) == "flux2"  # fmt: skip
    assert architecture_of(["model.diffusion_model.input_blocks.0.0.weight"]) == "sd"
    assert architecture_of(["time_text_embed.timestep_embedder.linear_1.weight"]) == "flux1"
    assert architecture_of(["lora_unet_down.alpha"]) is None


def _save(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def _bfl(pipe) -> dict[str, torch.Tensor]:
    return flux1_original({k: v.clone() for k, v in pipe.transformer.state_dict().items()})


def _config_with(tmp_path: Path, folder: Path, **transformer_config) -> Path:
    """A copy of a diffusers folder (components linked) whose transformer config differs."""
    config = tmp_path / "config"
    config.mkdir(parents=True)
    for item in folder.iterdir():
        if item.name != "transformer":
            (config / item.name).symlink_to(item)
    (config / "transformer").mkdir()
    original = json.loads((folder / "transformer" / "config.json").read_text())
    (config / "transformer" / "config.json").write_text(
        json.dumps({**original, **transformer_config})
    )
    return config


def test_files_that_do_not_fit_are_refused_naming_source(catalog, folders, tmp_path) -> None:
    flux1_folder = catalog.get("tiny-flux1").source
    cases = []
    # A FLUX.2 file under a FLUX.1 entry, an SD checkpoint, a file of no known layout.
    flux2_file = write_transformer_file(folders["flux2"].transformer, tmp_path / "f2.safetensors")
    cases.append((flux2_file, flux1_folder, "is a flux2 checkpoint; family flux1 takes a flux1"))
    sd = _save(tmp_path / "sd.safetensors",
               {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4)})  # fmt: skip
    cases.append((sd, flux1_folder, "is a sd checkpoint"))
    lora = _save(tmp_path / "lora.safetensors", {"lora_unet_x.alpha": torch.ones(1)})
    cases.append((lora, flux1_folder, "not a checkpoint of a known layout"))
    # A FLUX.1 file missing one of its tensors, and one wider than its config.
    bfl = _bfl(folders["flux1"])
    lacking = {k: v for k, v in bfl.items() if k != "double_blocks.0.txt_mlp.0.weight"}
    partial = _save(tmp_path / "partial.safetensors", lacking)
    cases.append((partial, flux1_folder, "does not fit the transformer config.*txt_mlp"))
    whole = _save(tmp_path / "whole.safetensors", bfl)
    narrow = _config_with(tmp_path, flux1_folder, num_attention_heads=1)
    cases.append((whole, narrow, "does not fit the transformer config"))
    # A [schnell] file (no guidance embedder) under a [dev] config, and the reverse.
    schnell = _save(tmp_path / "schnell.safetensors",
                    {k: v for k, v in bfl.items() if not k.startswith("guidance_in.")})  # fmt: skip
    cases.append((schnell, flux1_folder, "lacks 4 transformer weight.*guidance_embedder"))
    schnell_config = _config_with(tmp_path / "s", flux1_folder, guidance_embeds=False)
    cases.append((whole, schnell_config, "has weights the config does not expect: 4"))
    # The rest of the pipeline must come from somewhere, and be a FLUX folder.
    cases.append((whole, None, "set `config` to the model's diffusers folder"))
    cases.append((whole, catalog.get("tiny-sd15").source, "no transformer/config.json"))

    for source, config, message in cases:
        spec = _spec(tmp_path, "flux1", source, config)
        with pytest.raises(ModelLoadError, match=message) as caught:
            load_pipeline(spec, "cpu", FP32)
        assert "single-flux" in str(caught.value)


def test_pickles_and_other_suffixes_are_refused(tmp_path, catalog) -> None:
    folder = catalog.get("tiny-flux1").source
    pickle = tmp_path / "t.ckpt"
    pickle.write_bytes(b"\0" * 16)
    with pytest.raises(CatalogError, match="pickle"):
        _spec(tmp_path, "flux1", pickle, folder)
    gguf = tmp_path / "t.gguf"
    gguf.write_bytes(b"\0" * 16)
    with pytest.raises(ModelLoadError, match="neither a diffusers folder"):
        load_pipeline(_spec(tmp_path, "flux1", gguf, folder), "cpu", FP32)


def test_kiln_serve_refuses_a_wrong_transformer_file_before_it_starts(
    catalog, kiln_home, folders, tmp_path, monkeypatch, capsys
) -> None:
    from serving.cli import main

    (tmp_path / "models").symlink_to(kiln_home / "models")  # the session's tiny models
    flux2_file = write_transformer_file(folders["flux2"].transformer, tmp_path / "f2.safetensors")
    _spec(tmp_path, "flux1", flux2_file, catalog.get("tiny-flux1").source)  # writes models.toml
    monkeypatch.setenv("KILN_HOME", str(tmp_path))
    monkeypatch.setenv("KILN_PORT", "0")

    assert main(["serve"]) == 1
    err = capsys.readouterr().err
    assert "kiln: model 'single-flux': source f2.safetensors is a flux2 checkpoint" in err
