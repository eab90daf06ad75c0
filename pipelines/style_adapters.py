"""LoRA styles on a loaded pipeline: named adapters, an LRU of them, selection per call.

    adapters = StyleAdapters(pipe, capacity=8)
    adapters.activate(StyleRef("sty_a", "/k/styles/…safetensors", 0.8))  # loads if needed
    ...pipeline call...
    adapters.activate(None)                                            # base model again

A style is loaded once (``load_lora_weights(adapter_name=style id)``, the file read as
its import checked it: ``pipelines.lora_layouts.lora_source``; FLUX styles go into the
transformer, SD styles into the UNet and text encoders) and then switched by
adapter *selection* (``set_adapters`` with the strength as the adapter weight): the base
model is never reloaded and a switch moves no weights. ``activate`` runs at the start of
every pipeline call, so the previous call's style never leaks into the next. Past
``capacity`` loaded styles, the least recently used one is deleted (``delete_adapters``);
a style evicted and asked for again is loaded again from its file.

Under a compiled denoiser (pipelines/fast_path.py) styles are *hot-swapped* instead:
``enable_hotswap(target_rank)`` — before the first style loads and before compiling —
gives the denoiser (the UNet; FLUX's transformer: the family's ``denoiser``) ONE fixed
adapter slot (``HOTSWAP_SLOT``, diffusers' ``enable_lora_hotswap``: rank padded to the
target, scalings as tensors). The LRU then keeps each style's denoiser LoRA as a state
dict on the device, and a switch copies it into the slot
(``load_lora_adapter(..., hotswap=True)``): same modules, same shapes, same graph, so
nothing recompiles. Decisions:

- Strength is part of the swapped state: each style is normalised at load (its alpha/rank
  scale folded into ``lora_B``, ranks zero-padded to one rank) and ``lora_B`` is
  multiplied by the strength when swapped in, so the slot's scaling stays 1.0 — setting
  a scale with ``set_adapters`` would replace the tensor scaling by a float and recompile.
- The base model (no style) zeroes the slot's ``lora_B`` weights (exactly what peft does
  to slot layers a style does not touch).
- The slot covers the attention projections (``to_q/k/v/out.0``, the recipe of our
  trainers and of most styles; on FLUX the joint blocks' context projections too). A
  style adapting other layers grows the slot to the union once: that one load recompiles,
  logged as a warning; the next switches do not.
- Text-encoder LoRA layers (text encoders are not compiled) stay ordinary named adapters,
  selected per call with ``set_adapters`` as in eager mode.

Blocking torch work: call from the engine's thread, one call at a time.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from pipelines.lora_layouts import lora_source
from pipelines.params import StyleRef

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY = 8
HOTSWAP_SLOT = "kiln_style"
# The denoiser layers the hotswap slot starts with: every attention projection (FLUX's
# joint blocks also project the text stream: add_*_proj, to_add_out).
SLOT_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"
)  # fmt: skip


class StyleLoadError(ValueError):
    """A style's LoRA file that this pipeline cannot take (missing, or not for it)."""


class StyleAdapters:
    """The LoRA adapters loaded on one pipeline, least recently used first."""

    def __init__(self, pipe: Any, capacity: int = DEFAULT_CAPACITY, denoiser: str = "unet") -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.pipe = pipe
        # The pipeline component styles adapt and the hotswap slot lives on (the family's).
        self.denoiser = denoiser
        self.capacity = capacity
        self._loaded: OrderedDict[str, str] = OrderedDict()  # style id -> file path
        self._active: tuple[str, float] | None = None
        self._disabled = False  # disable_lora() was the last word: enable before selecting
        self._slot: HotswapSlot | None = None
        self._states: dict[str, dict[str, Any]] = {}  # hotswap: style id -> denoiser LoRA
        self._text_styles: set[str] = set()  # hotswap: styles with text-encoder layers
        self._refusal: str | None = None

    @property
    def hotswap(self) -> bool:
        """Whether styles swap into one compiled slot (``enable_hotswap``)."""
        return self._slot is not None

    @property
    def slot(self) -> HotswapSlot | None:
        """The hotswap slot, when enabled."""
        return self._slot

    def enable_hotswap(self, target_rank: int) -> None:
        """From now on styles of rank up to ``target_rank`` swap into one denoiser slot.

        Must come before the first style loads and before the denoiser is compiled."""
        if self._loaded:
            raise RuntimeError("enable_hotswap must come before the first style is loaded")
        if self._slot is None:
            self._slot = HotswapSlot(getattr(self.pipe, self.denoiser), target_rank)

    def refuse(self, reason: str) -> None:
        """Refuse every style load from now on (a replica with fused QKV projections)."""
        self._refusal = reason

    @property
    def loaded(self) -> list[str]:
        """Loaded style ids, least recently used first."""
        return list(self._loaded)

    def load(self, style: StyleRef) -> bool:
        """Load ``style``'s adapter unless it is loaded; True when this call loaded it."""
        if style.id in self._loaded:
            self._loaded.move_to_end(style.id)
            return False
        while len(self._loaded) >= self.capacity:
            self.unload(next(iter(self._loaded)))
        if self._refusal is not None:
            raise StyleLoadError(f"style {style.id!r}: styles are off here: {self._refusal}")
        started = time.perf_counter()
        try:
            if self._slot is None:
                source = lora_source(self.pipe, style.path)
                self.pipe.load_lora_weights(source, adapter_name=style.id)
            else:
                self._load_for_hotswap(style)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            # A half-registered adapter must not linger under this name.
            self._forget(style.id)
            raise StyleLoadError(f"style {style.id!r}: cannot load {style.path}: {exc}") from exc
        self._loaded[style.id] = style.path
        self._active = None  # loading may have made the new adapter active
        logger.info("style %s loaded in %.3fs", style.id, time.perf_counter() - started)
        return True

    def unload(self, style_id: str) -> None:
        """Delete ``style_id``'s adapter (no-op when it is not loaded)."""
        if self._loaded.pop(style_id, None) is None:
            return
        self._forget(style_id)
        self._states.pop(style_id, None)
        self._text_styles.discard(style_id)
        if self._active is not None and self._active[0] == style_id:
            self._active = None
        logger.info("style %s unloaded", style_id)

    def activate(self, style: StyleRef | None) -> None:
        """Make ``style`` (at its strength) the only active adapter; None: none at all."""
        if self._slot is not None:
            self._activate_hotswap(style)
            return
        if style is None:
            if self._loaded and self._active != ("", 0.0):
                self.pipe.disable_lora()
                self._disabled = True
            self._active = ("", 0.0)
            return
        self.load(style)
        wanted = (style.id, style.strength)
        if self._active == wanted:
            return
        if self._disabled:
            self.pipe.enable_lora()
            self._disabled = False
        self.pipe.set_adapters([style.id], adapter_weights=[style.strength])
        self._active = wanted

    def _forget(self, style_id: str) -> None:
        try:
            self.pipe.delete_adapters(style_id)
        except (ValueError, KeyError, AttributeError) as exc:
            logger.debug("no adapter %s to delete: %s", style_id, exc)

    def _load_for_hotswap(self, style: StyleRef) -> None:
        """Keep the style's denoiser LoRA (normalised, on the device) for swapping; load
        its text-encoder layers, if any, as an ordinary adapter."""
        assert self._slot is not None
        pipe, denoiser = self.pipe, self.denoiser
        state, alphas, metadata = _read_lora(pipe, lora_source(pipe, style.path))
        denoiser_state = _prefixed(state, denoiser) or {}
        text_prefixes = [m for m in pipe._lora_loadable_modules if m != denoiser]
        has_text = any(k.startswith(f"{p}.") for k in state for p in text_prefixes)
        if not denoiser_state and not has_text:
            raise ValueError(f"no LoRA layers for this model's {denoiser} or text encoders")
        self._states[style.id] = self._slot.normalise(
            denoiser_state, _prefixed(alphas, denoiser), _prefixed(metadata, denoiser)
        )
        if has_text:
            for name in text_prefixes:
                if any(k.startswith(f"{name}.") for k in state):
                    pipe.load_lora_into_text_encoder(
                        state,
                        network_alphas=alphas,
                        text_encoder=getattr(pipe, name),
                        prefix=name,
                        lora_scale=pipe.lora_scale,
                        adapter_name=style.id,
                        _pipeline=pipe,
                        metadata=metadata,
                    )
            self._text_styles.add(style.id)

    def _activate_hotswap(self, style: StyleRef | None) -> None:
        assert self._slot is not None
        if style is None:
            if self._active != ("", 0.0):
                self._slot.clear()
                self._select_text_adapter(None, 0.0)
            self._active = ("", 0.0)
            return
        self.load(style)
        wanted = (style.id, style.strength)
        if self._active == wanted:
            return
        try:
            self._slot.swap(self._states[style.id], style.strength)
        except (ValueError, RuntimeError) as exc:
            self._active = None  # the slot may hold part of it: swap again next time
            raise StyleLoadError(f"style {style.id!r}: cannot swap it in: {exc}") from exc
        self._select_text_adapter(
            style.id if style.id in self._text_styles else None, style.strength
        )
        self._active = wanted

    def _select_text_adapter(self, style_id: str | None, strength: float) -> None:
        """Text encoders: the style's own adapter at its strength, or none."""
        from diffusers.loaders.lora_base import (
            disable_lora_for_text_encoder,
            enable_lora_for_text_encoder,
            set_adapters_for_text_encoder,
        )

        if not self._text_styles:
            return
        for name in self.pipe._lora_loadable_modules:
            encoder = getattr(self.pipe, name, None)
            if (
                name == self.denoiser
                or encoder is None
                or not getattr(encoder, "peft_config", None)
            ):
                continue
            if style_id is not None and style_id in encoder.peft_config:
                enable_lora_for_text_encoder(encoder)
                set_adapters_for_text_encoder([style_id], encoder, [strength])
            else:
                disable_lora_for_text_encoder(encoder)


def _read_lora(pipe: Any, source: str | dict[str, Any]) -> tuple[dict, dict | None, dict | None]:
    """A LoRA's state dict in diffusers keys, its network alphas and metadata, however the
    pipeline's loader returns them (SD: all three; FLUX.1 when asked for alphas; FLUX.2:
    no alphas, its converters fold them in)."""
    import inspect

    if "return_alphas" in inspect.signature(pipe.lora_state_dict).parameters:
        return pipe.lora_state_dict(source, return_alphas=True, return_lora_metadata=True)
    out = pipe.lora_state_dict(source, return_lora_metadata=True)
    if len(out) == 3:
        return out
    state, metadata = out
    return state, None, metadata


def _prefixed(mapping: dict | None, prefix: str) -> dict | None:
    """The entries of ``mapping`` under ``prefix.``, the prefix dropped; None if none."""
    if not mapping:
        return None
    out = {k[len(prefix) + 1 :]: v for k, v in mapping.items() if k.startswith(f"{prefix}.")}
    return out or None


class HotswapSlot:
    """One LoRA adapter slot on a (to be) compiled denoiser that styles are copied into.
    ``unet`` is the denoiser module: a UNet, or a DiT's transformer."""

    def __init__(self, unet: Any, target_rank: int) -> None:
        self.unet = unet
        self.rank = target_rank
        self.modules: set[str] = set()
        self.swaps = 0
        self.rebuilds = 0
        self._build({name for name, _ in unet.named_modules() if name.endswith(SLOT_TARGETS)})

    def _build(self, modules: set[str]) -> None:
        """(Re)create the slot over ``modules``, zeroed, padded to the target rank."""
        import torch

        unet = self.unet
        if HOTSWAP_SLOT in getattr(unet, "peft_config", {}):
            unet.delete_adapters(HOTSWAP_SLOT)
        zeros: dict[str, Any] = {}
        for name in sorted(modules):
            layer = unet.get_submodule(name)
            base = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
            weight = base.weight
            if isinstance(base, torch.nn.Conv2d):
                a_shape = (self.rank, base.in_channels, *base.kernel_size)
                b_shape = (base.out_channels, self.rank, 1, 1)
            elif isinstance(base, torch.nn.Linear):
                a_shape, b_shape = (self.rank, base.in_features), (base.out_features, self.rank)
            else:
                raise ValueError(f"{name}: LoRA slots go on Linear and Conv2d layers only")
            kwargs = {"dtype": weight.dtype, "device": weight.device}
            zeros[f"{name}.lora_A.weight"] = torch.zeros(a_shape, **kwargs)
            zeros[f"{name}.lora_B.weight"] = torch.zeros(b_shape, **kwargs)
        unet.enable_lora_hotswap(target_rank=self.rank)
        unet.load_lora_adapter(zeros, prefix=None, adapter_name=HOTSWAP_SLOT)
        unet.set_adapters([HOTSWAP_SLOT])
        self.modules = set(modules)

    def normalise(
        self, state: dict[str, Any], alphas: dict | None, metadata: dict | None
    ) -> dict[str, Any]:
        """A style's UNet LoRA in the slot's form: peft keys, ``lora_B`` scaled by the
        layer's alpha/rank, every layer zero-padded to the style's highest rank, on the
        UNet's device and dtype."""
        import math

        import torch
        from diffusers.utils.peft_utils import _create_lora_config
        from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft
        from peft.utils.other import get_pattern_key

        if state and "lora_A" not in next(iter(state)):
            state = convert_unet_state_dict_to_peft(state)
        odd = [k for k in state if not k.endswith((".lora_A.weight", ".lora_B.weight"))]
        if odd:
            raise ValueError(f"only plain LoRA layers can be hot-swapped; found {odd[0]}")
        ranks = {f"^{k}": v.shape[1] for k, v in state.items() if ".lora_B." in k}
        if not ranks:
            return {}
        config = _create_lora_config(
            state, alphas, metadata, ranks, model_state_dict=self.unet.state_dict()
        )
        top = max(ranks.values())
        if top > self.rank:
            raise ValueError(f"LoRA rank {top} is above this replica's limit {self.rank}")
        device, dtype = self.unet.device, self.unet.dtype
        out: dict[str, Any] = {}
        for key, value in state.items():
            value = value.to(device=device, dtype=torch.float32)
            # The rank dimension: A's first, B's second; moved last to pad it.
            dim = 0 if ".lora_A." in key else 1
            rank = value.shape[dim]
            if dim == 1:
                alpha_key = get_pattern_key(config.alpha_pattern.keys(), key)
                alpha = config.alpha_pattern.get(alpha_key, config.lora_alpha)
                value = value * (alpha / (math.sqrt(rank) if config.use_rslora else rank))
            padded = torch.nn.functional.pad(value.movedim(dim, -1), [0, top - rank])
            value = padded.movedim(-1, dim)
            out[key] = value.to(dtype).contiguous()
        return out

    def swap(self, state: dict[str, Any], strength: float) -> None:
        """Copy a normalised style into the slot at ``strength``; no recompilation unless
        the style adapts layers outside the slot (the slot grows once)."""
        modules = {k.rsplit(".lora_", 1)[0] for k in state}
        if not modules <= self.modules:
            logger.warning(
                "style adapts %d layers outside the hotswap slot: growing it (recompiles once)",
                len(modules - self.modules),
            )
            self._build(self.modules | modules)
            self.rebuilds += 1
        if strength != 1.0:
            state = {k: v * strength if ".lora_B." in k else v for k, v in state.items()}
        if not state:
            self.clear()
            return
        self.unet.load_lora_adapter(
            dict(state), prefix=None, adapter_name=HOTSWAP_SLOT, hotswap=True
        )
        self.swaps += 1

    def clear(self) -> None:
        """Zero the slot: the base model, with the slot's graph unchanged."""
        import torch

        with torch.no_grad():
            for module in self.unet.modules():
                lora_b = getattr(module, "lora_B", None)
                if lora_b is not None and HOTSWAP_SLOT in lora_b:
                    lora_b[HOTSWAP_SLOT].weight.zero_()
