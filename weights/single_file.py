"""Load a single-file ``.safetensors`` checkpoint (original LDM / A1111 / civitai layout).

The checkpoint holds weights only; the architecture comes from a diffusers config folder:
the catalog entry's ``config``, else the family's full-size configs shipped in
``weights/configs/<family>``. Those folders copy the SD 1.5 and SDXL base 1.0 configs with
two deliberate changes: ``safety_checker``/``feature_extractor`` are null (Kiln runs no
safety checker) and SDXL's ``add_watermarker`` is false (Kiln applies its own watermark
policy). Tokenizers are built from open_clip's vocabulary and passed in, so diffusers never
looks for tokenizer files, and nothing asks a hub.

What diffusers' ``from_single_file`` takes from where (diffusers 0.42, read, not guessed):

- UNet and VAE: shapes from the config, weights converted from the checkpoint's keys.
- Text encoders: the key prefix is *probed* (``create_diffusers_clip_model_from_ldm``). For
  SDXL's second encoder the probe tries the first encoder's keys whenever both have the
  same width, which the tiny models do, and would load the wrong weights. So each text
  encoder is built here from only its own keys, where the probe has one answer.
- A component whose keys are absent either stays on the meta device without a word, or is
  loaded from weights sitting in the config folder (a tiny model's folder has some). Both
  would ignore the checkpoint, so missing components are refused before loading and meta
  parameters after it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from weights.catalog import ModelSpec
from weights.checks import ModelLoadError, check_safetensors_source

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SingleFileLayout:
    """Where a family's original-layout checkpoint keeps each component, and what the
    loader builds itself. A family module (``pipelines/families``) declares its layout."""

    # Component -> the key prefixes of its weights in the checkpoint.
    prefixes: dict[str, tuple[str, ...]]
    # Text encoder component -> transformers class name (built from its own keys only).
    text_encoders: dict[str, str]
    # Tokenizer component -> pad token (as the original checkpoints' tokenizers).
    tokenizer_pads: dict[str, str]


def shipped_config_dir(family: str) -> Path:
    """The full-size diffusers config folder shipped for a family (``sd15``, ``sdxl``)."""
    folder = Path(str(resources.files("weights").joinpath("configs", family)))
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"no shipped config for family {str(family)!r} under {folder.parent}")
    return folder


def config_dir(spec: ModelSpec) -> Path:
    """The config folder a single-file model is built with: its own, or the family's."""
    folder = spec.config if spec.config is not None else shipped_config_dir(spec.family)
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(
            f"model {spec.id!r}: config {folder} is not a diffusers folder (no model_index.json)"
        )
    return folder


def load_single_file(
    spec: ModelSpec, pipeline_cls: Any, layout: SingleFileLayout, dtype: Any
) -> Any:
    """The pipeline of a single-file checkpoint in ``layout`` (its family's), built from
    local configs only."""
    source = spec.source
    check_safetensors_source(spec.id, source)
    config = config_dir(spec)
    _check_components_present(spec, layout.prefixes)

    logger.info("loading %s from single file %s with config %s", spec.id, source, config)
    try:
        pipe = _from_single_file(source, config, layout, pipeline_cls, dtype)
    except ValueError as exc:
        # diffusers raises ValueError for a tensor whose shape the config does not expect.
        raise ModelLoadError(
            f"model {spec.id!r}: {source.name} does not fit the {spec.family} "
            f"config {config}: {exc}"
        ) from exc
    _check_no_meta(spec, pipe)
    return pipe


def _from_single_file(
    source: Path,
    config: Path,
    layout: SingleFileLayout,
    pipeline_cls: Any,
    dtype: Any,
) -> Any:
    """diffusers' pipeline loader, given our tokenizers and our text encoders."""
    from weights.tokenizer import clip_tokenizer

    components: dict[str, Any] = {
        name: clip_tokenizer(pad) for name, pad in layout.tokenizer_pads.items()
    }
    for name, class_name in layout.text_encoders.items():
        components[name] = _text_encoder(
            source, config, name, class_name, layout.prefixes[name], dtype
        )
    return pipeline_cls.from_single_file(
        str(source), config=str(config), local_files_only=True, dtype=dtype, **components
    )


def _check_components_present(spec: ModelSpec, prefixes: dict[str, tuple[str, ...]]) -> None:
    """Refuse a checkpoint that lacks a component's weights (or is of another family)."""
    from safetensors import safe_open

    with safe_open(str(spec.source), framework="pt") as f:
        keys = list(f.keys())
    missing = [
        f"{name} (keys starting with {' or '.join(p)})"
        for name, p in prefixes.items()
        if not any(k.startswith(p) for k in keys)
    ]
    if missing:
        raise ModelLoadError(
            f"model {spec.id!r}: {spec.source.name} has no weights for {', '.join(missing)}; "
            f"is it a {spec.family} checkpoint in the original (LDM / A1111) layout?"
        )


def _text_encoder(
    source: Path, config: Path, name: str, class_name: str, prefixes: tuple[str, ...], dtype: Any
) -> Any:
    """One text encoder, converted by diffusers from only the keys under its own prefix."""
    import transformers
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as f:
        names = list(f.keys())  # a safe_open handle is not iterable
        own = {k: f.get_tensor(k) for k in names if k.startswith(prefixes)}
    return create_diffusers_clip_model_from_ldm(
        getattr(transformers, class_name),
        checkpoint=own,
        subfolder=name,
        config=str(config),
        torch_dtype=dtype,
        local_files_only=True,
    )


def _check_no_meta(spec: ModelSpec, pipe: Any) -> None:
    """diffusers leaves parameters missing from a checkpoint on the meta device; refuse."""
    import torch

    for name, module in pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        tensors = list(module.named_parameters()) + list(module.named_buffers())
        missing = [n for n, t in tensors if t.is_meta]
        if missing:
            raise ModelLoadError(
                f"model {spec.id!r}: {spec.source.name} lacks {len(missing)} {name} "
                f"weight(s) the config expects, e.g. {', '.join(missing[:3])}"
            )
