"""Whether a LoRA file is one Kiln may serve on a base model, and what it is.

    info = inspect_lora(path, spec, max_bytes=256 << 20, max_rank=64)   # StyleFileError

What is checked, in order, so that the cheap checks refuse a bad file before any parsing:

1. Size, from the file system, before a byte is read (``StyleFileTooLarge``).
2. Format: safetensors only, its header checked against the file (both
   ``styles.lora_file``).
3. Layout: diffusers' own converters read it, exactly as ``load_lora_weights`` will
   (``pipelines.lora_layouts.lora_state``, which serving loads through too) —
   ``<Pipeline>.lora_state_dict`` turns kohya/civitai keys (``lora_unet_…``,
   ``lora_te_…``, ``lora_te1_…``/``lora_te2_…``, with SDXL's SGM block numbers mapped by
   the UNet config as SDXL's loader does; FLUX's ``lora_unet_double_blocks_…``), XLabs'
   and BFL's FLUX keys into diffusers keys, then the denoiser and text encoder keys go
   through the same ``convert_*_to_peft`` steps the loaders take. No key map is written
   here; where diffusers' FLUX.1 converter is fixed at full width, Kiln's reading is in
   ``pipelines.lora_layouts`` (documented there).
4. Fit: every targeted module must exist in a component the family's styles go in
   (``Family.lora``: SD's UNet and text encoder(s), FLUX's transformer), with the
   in/out features (and conv kernel) the LoRA's matrices need. The modules come from the
   model's *config*, built on the meta device: no weights are read and nothing is
   downloaded. So an SD 1.5 LoRA on an SDXL model, an SD LoRA on FLUX or a FLUX LoRA on
   SD (or a FLUX.2 one on FLUX.1) is refused with the first layer that does not fit or
   that the family's loader cannot read, and where the LoRA fits another family the
   message says so: a family with a shipped full-size config (SD 1.5, SDXL) is matched
   by names and shapes; one without (FLUX.1, FLUX.2: their models differ in width,
   [klein] 4B and 9B) by layer names on its denoiser class's default configuration.
5. Rank: the largest rank over all layers must not exceed ``max_rank``. It is the same
   number the GPU fast path gives ``enable_lora_hotswap(target_rank=…)``, so any
   imported style can be swapped into a compiled model without recompiling.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pipelines.families import FAMILIES, family_of
from pipelines.lora_layouts import BFL_PREFIX, BFL_ROOTS, lora_state
from pipelines.task import Task
from styles.lora_file import StyleFileError, check_size, load_tensors, read_header, sha256_of
from weights.catalog import ModelSpec
from weights.checks import ModelLoadError

DEFAULT_MAX_RANK = 64
# The components some family's LoRA loader takes (the UNet and the text encoders for SD,
# the transformer for FLUX): a key of any other component is no LoRA key at all; one of a
# component the model's family does not take is a misfit, reported with the family the
# file fits.
_COMPONENTS = tuple(dict.fromkeys(c for f in FAMILIES.values() for c in f.lora.components))
# Denoisers: their LoRA keys convert to peft as a UNet's do (``load_lora_adapter``).
_DENOISERS = frozenset(f.denoiser for f in FAMILIES.values())
# The text-encoder modules diffusers' loader reads a LoRA's rank from.
_TEXT_RANKED = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
_KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")


@dataclass(frozen=True)
class LoraInfo:
    """What an accepted LoRA file is: for which family, how big, which layers."""

    sha256: str
    bytes: int
    family: str
    # "kohya" (lora_unet_…/lora_te_…), "xlabs" (…processor.qkv_lora1…), "bfl" (FLUX's
    # original names: double_blocks.…, diffusion_model.…) or "diffusers" (unet.…,
    # transformer.…, text_encoder.…; peft's and ai-toolkit's FLUX.1 files)
    layout: str
    rank: int  # the largest rank over all layers
    layers: int  # modules the LoRA changes, denoiser and text encoders together
    denoiser_layers: int  # of the UNet (SD) or the transformer (FLUX)
    text_encoder_layers: tuple[str, ...]  # components with layers: text_encoder(_2)


class _Unreadable(StyleFileError):
    """The family's loader cannot read the file's keys (they may be another family's)."""


class _Layer(StrEnum):
    """The module types a LoRA may change: a linear layer or a 2-D convolution."""

    LINEAR = "linear"
    CONV = "conv"


@dataclass(frozen=True)
class _Module:
    kind: _Layer
    in_features: int
    out_features: int
    kernel: tuple[int, ...] = ()


# 3: layout, through diffusers' converters


def layout_of(keys: list[str]) -> str:
    """The layout a file's keys are in (``LoraInfo.layout``)."""
    if all(k.startswith(_KOHYA_PREFIXES) for k in keys):
        return "kohya"
    if any(".processor." in k for k in keys):
        return "xlabs"
    if any(k.startswith(BFL_PREFIX) or k.startswith(BFL_ROOTS) for k in keys):
        return "bfl"
    return "diffusers"


def to_peft_layers(
    tensors: dict[str, Any],
    family: str,
    denoiser_config: Any,
    flat: frozenset[str],
    widths: dict[str, int] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """component -> module name -> {"lora_A": tensor, "lora_B": tensor}, as diffusers'
    loaders see the file: ``lora_state_dict`` (kohya/XLabs/BFL conversion), then the
    denoiser's and the text encoders' own ``convert_*_to_peft`` steps. ``flat``: the text
    encoders whose modules have no ``text_model.`` level (``flat_text_encoders``);
    ``widths``: the denoiser's Linear out-features (FLUX.1's fused single-block split)."""
    from diffusers.utils import (
        convert_state_dict_to_diffusers,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )

    cls = _pipeline_cls(family)
    # As the family's load_lora_weights reads the file (SDXL's maps kohya's SGM block
    # numbers by the UNet config; SD 1.5's and FLUX's take none).
    config = denoiser_config if family_of(family).lora.reads_denoiser_config else None
    try:
        state_dict = lora_state(cls, tensors, denoiser_config=config, widths=widths)
    except (ValueError, KeyError, IndexError, AssertionError) as exc:
        first = next(iter(tensors), "")
        raise _Unreadable(
            f"diffusers' {family} loader cannot read this LoRA's layers (e.g. {first!r}): {exc}"
        ) from None
    by_component: dict[str, dict[str, Any]] = {}
    stray = []
    for key, value in state_dict.items():
        component, _, rest = key.partition(".")
        if component in _COMPONENTS and rest:
            by_component.setdefault(component, {})[rest] = value
        else:
            stray.append(key)
    if stray:
        raise _Unreadable(
            f"not a LoRA for a {family} pipeline: {len(stray)} key(s) belong to neither "
            f"its {family_of(family).denoiser} nor a text encoder, e.g. {stray[0]!r}"
        )
    takes = family_of(family).lora.components
    for component, sd in by_component.items():
        if component not in takes:
            raise _Unreadable(
                f"{component}.{min(sd)}: a {family} model takes LoRA layers in "
                f"{', '.join(takes)}, not in a {component}"
            )
    layers: dict[str, dict[str, dict[str, Any]]] = {}
    for component, sd in by_component.items():
        try:
            if component in _DENOISERS:
                # As the denoiser's load_lora_adapter: converted unless already peft.
                if "lora_A" not in next(iter(sd)):
                    sd = convert_unet_state_dict_to_peft(sd)
            else:
                # As diffusers' _load_lora_into_text_encoder.
                sd = convert_state_dict_to_peft(convert_state_dict_to_diffusers(sd))
                if component in flat:
                    sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
        except ValueError as exc:
            raise StyleFileError(f"diffusers cannot read the {component} layers: {exc}") from None
        layers[component] = _pair_up(component, sd)
        # diffusers sizes a text encoder's adapter from these layers alone; with none of
        # them it cannot load the encoder's LoRA at all.
        if component not in _DENOISERS and not any(
            n.endswith(_TEXT_RANKED) for n in layers[component]
        ):
            raise StyleFileError(
                f"its {component} layers include none of {', '.join(_TEXT_RANKED)}, "
                "which diffusers needs to load text-encoder LoRA layers"
            )
    if not layers:
        raise StyleFileError(f"the file holds no LoRA layers a {family} model takes")
    return layers


def _pair_up(component: str, sd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    modules: dict[str, dict[str, Any]] = {}
    for key, value in sd.items():
        for part in ("lora_A", "lora_B"):
            suffix = f".{part}.weight"
            if key.endswith(suffix):
                modules.setdefault(key.removesuffix(suffix), {})[part] = value
                break
        else:
            raise StyleFileError(
                f"{component}.{key}: only plain LoRA layers (lora_A/lora_B, lora_down/lora_up) "
                "are supported, not LoHa, LoKr, DoRA or other adapter kinds"
            )
    for name, pair in modules.items():
        if len(pair) != 2:
            missing = "lora_B (up)" if "lora_B" not in pair else "lora_A (down)"
            raise StyleFileError(f"{component}.{name}: the LoRA layer has no {missing} matrix")
    return modules


# 4: fit against the base model, on the meta device


def model_config_dir(spec: ModelSpec) -> Path:
    """The diffusers folder whose configs describe ``spec``'s architecture."""
    if spec.source.is_dir():
        if not (spec.source / "model_index.json").is_file():
            raise ModelLoadError(f"model {spec.id!r}: {spec.source} has no model_index.json")
        return spec.source
    if spec.source.suffix.lower() == ".safetensors":
        from weights.single_file import config_dir

        return config_dir(spec)
    raise ModelLoadError(f"model {spec.id!r}: {spec.source} does not exist")


@functools.lru_cache(maxsize=16)
def module_shapes(
    config_dir: str, components: tuple[str, ...] = _COMPONENTS
) -> dict[str, dict[str, _Module]]:
    """component -> module name -> shape of every Linear and Conv2d a LoRA may target in
    ``components`` (the family's ``lora.components``), from the folder's configs on the
    meta device (no weights read, cached per folder)."""
    import diffusers
    import torch
    import transformers

    folder = Path(config_dir)
    index = json.loads((folder / "model_index.json").read_text())
    shapes: dict[str, dict[str, _Module]] = {}
    for component in components:
        if not isinstance(index.get(component), list) or index[component][1] is None:
            continue
        library, class_name = index[component]
        sub = folder / component
        with torch.device("meta"):
            if library == "diffusers":
                cls = getattr(diffusers, class_name)
                model = cls.from_config(cls.load_config(sub))
            else:
                cls = getattr(transformers, class_name)
                model = cls(cls.config_class.from_pretrained(sub))
        shapes[component] = _shapes_of(model)
    return shapes


def _shapes_of(model: Any) -> dict[str, _Module]:
    import torch

    out: dict[str, _Module] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            out[name] = _Module(_Layer.LINEAR, module.in_features, module.out_features)
        elif isinstance(module, torch.nn.Conv2d):
            kernel = tuple(module.kernel_size)
            out[name] = _Module(_Layer.CONV, module.in_channels, module.out_channels, kernel)
    return out


@functools.lru_cache(maxsize=16)
def _denoiser_config(config_dir: str, denoiser: str) -> Any:
    """The denoiser's config, for loaders that read it (SDXL's ``unet_config``)."""
    # lora_state_dict reads attributes (``layers_per_block``) from a model's config.
    return _Attrs(json.loads((Path(config_dir) / denoiser / "config.json").read_text()))


def _linear_widths(shapes: dict[str, dict[str, _Module]], denoiser: str) -> dict[str, int]:
    return {
        name: m.out_features
        for name, m in shapes.get(denoiser, {}).items()
        if m.kind == _Layer.LINEAR
    }


class _Attrs(dict):
    """A config dict that also answers attribute access, as a model's ``config`` does."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def flat_text_encoders(shapes: dict[str, dict[str, _Module]]) -> frozenset[str]:
    """Text encoders without a ``text_model.`` level: transformers 5 flattened
    ``CLIPTextModel`` (not ``CLIPTextModelWithProjection``). LoRA files still carry the
    prefix, which diffusers' loader strips for such an encoder, as ``to_peft_layers`` does."""
    return frozenset(
        c
        for c, names in shapes.items()
        if c not in _DENOISERS and not any(n.startswith("text_model.") for n in names)
    )


def misfit(
    layers: dict[str, dict[str, dict[str, Any]]],
    shapes: dict[str, dict[str, _Module]],
    *,
    names_only: bool = False,
) -> str | None:
    """Why ``layers`` do not fit a model of ``shapes`` (the first reason), or None.
    ``names_only``: every module exists, whatever its width."""
    for component, modules in layers.items():
        if component not in shapes:
            first = f"{component}.{min(modules)}"
            takes = ", ".join(shapes) or "none"
            return f"{first}: the model takes LoRA layers in {takes}, not in its {component}"
        targets = shapes[component]
        for name, pair in sorted(modules.items()):
            a, b = pair["lora_A"], pair["lora_B"]
            where = f"{component}.{name}"
            module = targets.get(name)
            if module is None:
                return f"{where} is not a module of the model's {component}"
            if names_only:
                continue
            if a.ndim < 2 or b.ndim < 2 or a.shape[0] != b.shape[1]:
                return (
                    f"{where}: down/up matrices {tuple(a.shape)} and {tuple(b.shape)} "
                    "do not form a LoRA"
                )
            kernel = tuple(a.shape[2:]) if module.kind == _Layer.CONV else ()
            fits = (
                a.shape[1] == module.in_features
                and b.shape[0] == module.out_features
                and (module.kind == _Layer.LINEAR) == (a.ndim == 2)
                and kernel == module.kernel
            )
            if not fits:
                want = f"{module.in_features} in, {module.out_features} out"
                if module.kind == _Layer.CONV:
                    want += f", kernel {module.kernel}"
                got = f"{a.shape[1]} in, {b.shape[0]} out"
                if a.ndim > 2:
                    got += f", kernel {tuple(a.shape[2:])}"
                return f"{where} is {want} in the model, {got} in the LoRA"
    return None


def _pipeline_cls(family: str) -> Any:
    """The family's text-to-image pipeline: its LoRA loader reads the file."""
    return family_of(family).pipeline_class(Task.TEXT_TO_IMAGE)


def _other_family_fit(
    tensors: dict[str, Any], family: str, installed: Iterable[ModelSpec] = ()
) -> str | None:
    """The family the LoRA fits, other than ``family``: first an ``installed`` model of
    another family it fits exactly; then by names and shapes on a shipped full-size
    config (SD 1.5, SDXL), by layer names on the denoiser class's default configuration
    where none is shipped (FLUX.1, FLUX.2: their original key names are shared, so the
    installed models decide between them where they can)."""
    for spec in installed:
        if spec.family == family:
            continue
        try:
            shapes = _model_shapes(spec)
            layers = _layers_for(tensors, spec, shapes)
        except (StyleFileError, ModelLoadError, OSError):
            continue
        if misfit(layers, shapes) is None:
            return spec.family
    for other in FAMILIES:
        if other == family:
            continue
        try:
            shapes, config, names_only = _reference_shapes(other)
            layers = to_peft_layers(
                tensors,
                other,
                config,
                flat_text_encoders(shapes),
                _linear_widths(shapes, family_of(other).denoiser),
            )
        except (StyleFileError, ModelLoadError):
            continue
        if misfit(layers, shapes, names_only=names_only) is None:
            return other
    return None


def _model_shapes(spec: ModelSpec) -> dict[str, dict[str, _Module]]:
    """The module shapes of the components ``spec``'s family takes LoRA layers in."""
    return module_shapes(str(model_config_dir(spec)), family_of(spec.family).lora.components)


def _layers_for(
    tensors: dict[str, Any], spec: ModelSpec, shapes: dict[str, dict[str, _Module]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """``to_peft_layers`` as ``spec``'s loader reads the file (its denoiser's config and
    widths)."""
    denoiser = family_of(spec.family).denoiser
    return to_peft_layers(
        tensors,
        spec.family,
        _denoiser_config(str(model_config_dir(spec)), denoiser),
        flat_text_encoders(shapes),
        _linear_widths(shapes, denoiser),
    )


@functools.lru_cache(maxsize=8)
def _reference_shapes(family: str) -> tuple[dict[str, dict[str, _Module]], Any, bool]:
    """(module shapes, denoiser config, names only) of ``family``'s reference model."""
    from weights.single_file import shipped_config_dir

    fam = family_of(family)
    model_class = getattr(fam.single_file, "model_class", None)
    try:
        folder = str(shipped_config_dir(family))
    except ModelLoadError:
        if model_class is None:
            raise
    else:
        shapes = module_shapes(folder, fam.lora.components)
        return shapes, _denoiser_config(folder, fam.denoiser), False
    import diffusers
    import torch

    with torch.device("meta"):
        model = getattr(diffusers, model_class)()
    return {fam.denoiser: _shapes_of(model)}, None, True


# The whole check


def inspect_lora(
    path: Path,
    spec: ModelSpec,
    *,
    max_bytes: int,
    max_rank: int,
    installed: Iterable[ModelSpec] = (),
) -> LoraInfo:
    """Check that ``path`` is a LoRA Kiln may serve on ``spec``; raises ``StyleFileError``
    (``StyleFileTooLarge`` for size) with the reason, or ``ModelLoadError`` when the
    model's own files are missing (a server problem, not the upload's). ``installed``:
    the catalog's base models, which a refusal's hint names a family by first."""
    size = path.stat().st_size
    check_size(size, max_bytes)
    header = read_header(path, size)
    tensors = load_tensors(path, header)
    layout = layout_of(list(tensors))

    family = family_of(spec.family)
    shapes = _model_shapes(spec)
    try:
        layers = _layers_for(tensors, spec, shapes)
    except _Unreadable as exc:
        reason, layers = str(exc), None
    else:
        reason = misfit(layers, shapes)
    if reason is not None or layers is None:
        other = _other_family_fit(tensors, spec.family, installed)
        hint = (
            f"; it fits the {other} family, not {spec.family}"
            if other
            else f"; is it a LoRA for another model or family than {spec.family}?"
        )
        raise StyleFileError(f"the LoRA does not fit model {spec.id!r}: {reason}{hint}")

    rank = max(int(p["lora_A"].shape[0]) for m in layers.values() for p in m.values())
    if rank > max_rank:
        raise StyleFileError(
            f"the LoRA has rank {rank}, over the limit of {max_rank} (KILN_STYLE_MAX_RANK, "
            "also the GPU fast path's hotswap target rank)"
        )
    text = tuple(c for c in _COMPONENTS if c not in _DENOISERS and c in layers)
    return LoraInfo(
        sha256=sha256_of(path),
        bytes=size,
        family=spec.family,
        layout=layout,
        rank=rank,
        layers=sum(len(m) for m in layers.values()),
        denoiser_layers=len(layers.get(family.denoiser, {})),
        text_encoder_layers=text,
    )
