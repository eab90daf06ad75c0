"""Load a single-file diffusion-transformer checkpoint (FLUX.1, FLUX.2 [klein]) as Black
Forest Labs and civitai ship them: the transformer's weights alone in one ``.safetensors``,
the rest of the pipeline (VAE, text encoders, tokenizers, scheduler, and the transformer's
own ``config.json``) from a diffusers folder, the catalog entry's ``config``:

    [models.my-flux-finetune]
    family = "flux1"
    source = "/data/models/my-flux-finetune.safetensors"   # the transformer
    config = "/data/models/FLUX.1-dev"                      # everything else

Decided where the issue is silent:

- ``config`` is required: a transformer file holds no VAE or text encoder, and Kiln ships
  no FLUX weights to fall back on. The folder's own transformer weights, if it has any,
  are not read (the file's are), so a folder of configs and the other components is enough.
- Layouts read: BFL's original keys (``double_blocks.0.img_attn.qkv.weight``), the same
  under ``model.diffusion_model.`` (ComfyUI / civitai exports; other components bundled
  in the same file, ``vae.``/``text_encoders.``, are ignored: the folder's are used), and a
  file already in diffusers' layout. FLUX.2 is converted by diffusers' own converter.
  FLUX.1's converter in diffusers 0.42 assumes the full 3072 width when it splits a single
  block's fused projection, so Kiln converts FLUX.1 itself
  (``convert_flux1_transformer``): the same mapping with the widths read from the file;
  a test proves it equal to diffusers' at full width, and tiny models load through it.
- The architecture is read from the file's key names before any tensor is loaded: a
  FLUX.2 file under a FLUX.1 entry, an SD checkpoint under either, or a file of no known
  layout is refused naming ``source`` and what the file looks like. A file of the right
  architecture whose shapes differ from the config is refused naming both; one that lacks
  weights the config expects is refused naming them (diffusers would leave them on the
  meta device without a word).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weights.catalog import ModelSpec
from weights.checks import ModelLoadError, check_safetensors_source, refuse_pickle_folder

logger = logging.getLogger(__name__)

# The key prefix ComfyUI and civitai exports put the diffusion model under.
BUNDLE_PREFIX = "model.diffusion_model."

# Architecture -> a key only its checkpoints have (without BUNDLE_PREFIX; diffusers'
# ``CHECKPOINT_KEY_NAMES`` for the DiTs, and the UNet's first conv for SD).
ARCHITECTURE_KEYS: dict[str, tuple[str, ...]] = {
    "flux2": ("single_stream_modulation.lin.weight",),
    "flux1": ("double_blocks.0.img_attn.norm.key_norm.scale",),
    "sd": ("input_blocks.0.0.weight",),
}
# Architecture -> a key of the same model already in diffusers' layout.
DIFFUSERS_KEYS: dict[str, tuple[str, ...]] = {
    "flux2": ("single_stream_modulation.linear.weight",),
    "flux1": ("time_text_embed.timestep_embedder.linear_1.weight",),
    "sd": ("conv_in.weight",),
}


@dataclass(frozen=True)
class TransformerFileLayout:
    """A family's single-file transformer: its diffusers class and architecture name (a
    key of ``ARCHITECTURE_KEYS``). ``kiln_converter``: Kiln converts the original layout
    itself (FLUX.1, see the module docstring); otherwise diffusers' converter does."""

    model_class: str
    architecture: str
    kiln_converter: bool = False


def architecture_of(keys: list[str]) -> str | None:
    """The architecture a checkpoint's keys say it is (``ARCHITECTURE_KEYS``), whether in
    the original or in diffusers' layout; None when none fits."""
    names = {k.removeprefix(BUNDLE_PREFIX) for k in keys}
    for table in (ARCHITECTURE_KEYS, DIFFUSERS_KEYS):
        for architecture, markers in table.items():
            if any(marker in names for marker in markers):
                return architecture
    return None


def load_transformer_file(
    spec: ModelSpec, pipeline_cls: Any, layout: TransformerFileLayout, dtype: Any
) -> Any:
    """The pipeline of ``spec``: its transformer from the single file ``spec.source``,
    every other component from the diffusers folder ``spec.config``; never asks a hub."""
    keys = check_transformer_file(spec, layout)
    config = _config_folder(spec)
    transformer = _load_transformer(spec, config, layout, keys, dtype)
    refuse_pickle_folder(config)
    logger.info("loading %s: transformer from %s, the rest from %s", spec.id, spec.source, config)
    return pipeline_cls.from_pretrained(
        config,
        transformer=transformer,
        dtype=dtype,
        local_files_only=True,
        use_safetensors=True,
    )


def check_transformer_file(spec: ModelSpec, layout: TransformerFileLayout) -> list[str]:
    """What can be told without loading a tensor (the file's header, the config folder):
    raises ``ModelLoadError`` naming ``source`` or ``config``; the file's keys otherwise.
    ``kiln serve`` asks this of every entry at start, so a wrong file is refused there
    rather than when a request first wakes the model."""
    from safetensors import SafetensorError, safe_open

    source = spec.source
    check_safetensors_source(spec.id, source)
    _config_folder(spec)
    try:
        with safe_open(str(source), framework="pt") as f:
            keys = list(f.keys())
    except SafetensorError as exc:
        raise ModelLoadError(
            f"model {spec.id!r}: source {source.name} is not a readable safetensors file: {exc}"
        ) from exc
    found = architecture_of(keys)
    if found != layout.architecture:
        what = f"a {found} checkpoint" if found else "not a checkpoint of a known layout"
        raise ModelLoadError(
            f"model {spec.id!r}: source {source.name} is {what}; family {spec.family} "
            f"takes a {layout.architecture} transformer"
        )
    return keys


def _config_folder(spec: ModelSpec) -> Path:
    folder = spec.config
    if folder is None:
        raise ModelLoadError(
            f"model {spec.id!r}: source {spec.source.name} is a single-file transformer; "
            "set `config` to the model's diffusers folder (VAE, text encoders, tokenizers, "
            "scheduler and transformer/config.json)"
        )
    for needed in ("model_index.json", "transformer/config.json"):
        if not (folder / needed).is_file():
            raise ModelLoadError(
                f"model {spec.id!r}: config {folder} is not a diffusers folder for "
                f"{spec.family} (no {needed})"
            )
    return folder


def _load_transformer(
    spec: ModelSpec, config: Path, layout: TransformerFileLayout, keys: list[str], dtype: Any
) -> Any:
    import diffusers

    state = _transformer_keys(spec.source, keys)
    model_cls = getattr(diffusers, layout.model_class)
    try:
        if layout.kiln_converter and not _in_diffusers_layout(state, layout.architecture):
            state = convert_flux1_transformer(state)
        if _in_diffusers_layout(state, layout.architecture):
            # diffusers converts again any dict whose keys differ from the model's at all.
            _check_keys(spec, state, _expected_keys(model_cls, config))
        model = model_cls.from_single_file(
            state,
            config=str(config),
            subfolder="transformer",
            local_files_only=True,
            torch_dtype=dtype,
        )
    except (ValueError, KeyError, RuntimeError) as exc:
        # A tensor whose shape the config does not expect (ValueError, RuntimeError), or a
        # key a converter needs and the file lacks (KeyError).
        raise ModelLoadError(
            f"model {spec.id!r}: source {spec.source.name} does not fit the transformer "
            f"config in {config}: {exc}"
        ) from exc
    _check_no_meta(spec, model)
    return model


def _transformer_keys(source: Path, keys: list[str]) -> dict[str, Any]:
    """The file's transformer tensors, without the bundle prefix; a bundle's other
    components (``vae.``, ``text_encoders.``) are left unread."""
    from safetensors import safe_open

    bundled = any(k.startswith(BUNDLE_PREFIX) for k in keys)
    with safe_open(str(source), framework="pt") as f:
        if not bundled:
            return {k: f.get_tensor(k) for k in keys}
        return {
            k.removeprefix(BUNDLE_PREFIX): f.get_tensor(k)
            for k in keys
            if k.startswith(BUNDLE_PREFIX)
        }


def _in_diffusers_layout(state: dict[str, Any], architecture: str) -> bool:
    return any(marker in state for marker in DIFFUSERS_KEYS[architecture])


def _expected_keys(model_cls: Any, config: Path) -> set[str]:
    """The state-dict keys of the transformer ``config`` describes (built on meta)."""
    import torch

    with torch.device("meta"):
        empty = model_cls.from_config(model_cls.load_config(str(config), subfolder="transformer"))
    return set(empty.state_dict())


def _check_keys(spec: ModelSpec, state: dict[str, Any], expected: set[str]) -> None:
    """Refuse a converted file that lacks weights the config expects (a [schnell] file
    under a [dev] config) or holds weights it does not (the reverse)."""
    for what, keys in (
        ("lacks", sorted(expected - state.keys())),
        ("has weights the config does not expect:", sorted(state.keys() - expected)),
    ):
        if keys:
            raise ModelLoadError(
                f"model {spec.id!r}: source {spec.source.name} {what} {len(keys)} "
                f"transformer weight(s), e.g. {', '.join(keys[:3])}"
            )


def _check_no_meta(spec: ModelSpec, model: Any) -> None:
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    missing = [name for name, t in tensors if t.is_meta]
    if missing:
        raise ModelLoadError(
            f"model {spec.id!r}: source {spec.source.name} lacks {len(missing)} transformer "
            f"weight(s) the config expects, e.g. {', '.join(missing[:3])}"
        )


def convert_flux1_transformer(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A FLUX.1 transformer's original (BFL) state dict in diffusers' layout.

    diffusers' ``convert_flux_transformer_checkpoint_to_diffusers`` mapping, with the
    model width and MLP width read from the tensors instead of fixed at 3072 / 12288, so
    that models narrower than FLUX.1 (the tiny ones) load the same way. Raises
    ``KeyError`` naming a key the file lacks.
    """
    import torch

    ckpt = dict(checkpoint)
    out: dict[str, Any] = {}

    def move(new: str, old: str) -> None:
        out[new] = ckpt.pop(old)

    def swap_scale_shift(weight: Any) -> Any:
        # Original AdaLayerNormContinuous is (shift, scale); diffusers' is (scale, shift).
        shift, scale = weight.chunk(2, dim=0)
        return torch.cat([scale, shift], dim=0)

    def block_count(prefix: str) -> int:
        return 1 + max(int(k.split(".", 2)[1]) for k in ckpt if k.startswith(prefix))

    double_layers = block_count("double_blocks.")
    single_layers = block_count("single_blocks.")
    inner_dim = ckpt["img_in.weight"].shape[0]
    mlp_dim = ckpt["double_blocks.0.img_mlp.0.weight"].shape[0]

    for side, old in (("timestep_embedder", "time_in"), ("text_embedder", "vector_in")):
        for new_layer, old_layer in (("linear_1", "in_layer"), ("linear_2", "out_layer")):
            for p in ("weight", "bias"):
                move(f"time_text_embed.{side}.{new_layer}.{p}", f"{old}.{old_layer}.{p}")
    if any(k.startswith("guidance_in.") for k in ckpt):
        for new_layer, old_layer in (("linear_1", "in_layer"), ("linear_2", "out_layer")):
            for p in ("weight", "bias"):
                move(f"time_text_embed.guidance_embedder.{new_layer}.{p}",
                     f"guidance_in.{old_layer}.{p}")  # fmt: skip
    for p in ("weight", "bias"):
        move(f"context_embedder.{p}", f"txt_in.{p}")
        move(f"x_embedder.{p}", f"img_in.{p}")

    for i in range(double_layers):
        new, old = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for p in ("weight", "bias"):
            move(f"{new}norm1.linear.{p}", f"{old}img_mod.lin.{p}")
            move(f"{new}norm1_context.linear.{p}", f"{old}txt_mod.lin.{p}")
            q, k, v = torch.chunk(ckpt.pop(f"{old}img_attn.qkv.{p}"), 3, dim=0)
            out[f"{new}attn.to_q.{p}"], out[f"{new}attn.to_k.{p}"] = q, k
            out[f"{new}attn.to_v.{p}"] = v
            q, k, v = torch.chunk(ckpt.pop(f"{old}txt_attn.qkv.{p}"), 3, dim=0)
            out[f"{new}attn.add_q_proj.{p}"], out[f"{new}attn.add_k_proj.{p}"] = q, k
            out[f"{new}attn.add_v_proj.{p}"] = v
            move(f"{new}ff.net.0.proj.{p}", f"{old}img_mlp.0.{p}")
            move(f"{new}ff.net.2.{p}", f"{old}img_mlp.2.{p}")
            move(f"{new}ff_context.net.0.proj.{p}", f"{old}txt_mlp.0.{p}")
            move(f"{new}ff_context.net.2.{p}", f"{old}txt_mlp.2.{p}")
            move(f"{new}attn.to_out.0.{p}", f"{old}img_attn.proj.{p}")
            move(f"{new}attn.to_add_out.{p}", f"{old}txt_attn.proj.{p}")
        move(f"{new}attn.norm_q.weight", f"{old}img_attn.norm.query_norm.scale")
        move(f"{new}attn.norm_k.weight", f"{old}img_attn.norm.key_norm.scale")
        move(f"{new}attn.norm_added_q.weight", f"{old}txt_attn.norm.query_norm.scale")
        move(f"{new}attn.norm_added_k.weight", f"{old}txt_attn.norm.key_norm.scale")

    split = (inner_dim, inner_dim, inner_dim, mlp_dim)
    for i in range(single_layers):
        new, old = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for p in ("weight", "bias"):
            move(f"{new}norm.linear.{p}", f"{old}modulation.lin.{p}")
            q, k, v, mlp = torch.split(ckpt.pop(f"{old}linear1.{p}"), split, dim=0)
            out[f"{new}attn.to_q.{p}"], out[f"{new}attn.to_k.{p}"] = q, k
            out[f"{new}attn.to_v.{p}"], out[f"{new}proj_mlp.{p}"] = v, mlp
            move(f"{new}proj_out.{p}", f"{old}linear2.{p}")
        move(f"{new}attn.norm_q.weight", f"{old}norm.query_norm.scale")
        move(f"{new}attn.norm_k.weight", f"{old}norm.key_norm.scale")

    for p in ("weight", "bias"):
        move(f"proj_out.{p}", f"final_layer.linear.{p}")
        out[f"norm_out.linear.{p}"] = swap_scale_shift(
            ckpt.pop(f"final_layer.adaLN_modulation.1.{p}")
        )
    return out
