"""IP-Adapters on an engine: image embeddings for pins and references, and the per-call
conditioning (DESIGN.md §3: scales are set at the start of every call, never left over).

    embeds = embed_images(engine, "tiny-ip-adapter-sd15", [pixels, ...])  # (n, dim) float32
    kwargs = adapter_call_kwargs(engine, params.adapter, images=4)         # by Engine._run

Component layout (``weights/tiny_ip_adapter.py``, h94/IP-Adapter's ``models/``): the
adapter's ``.safetensors`` (``options.weight_name``, else the only one at the folder's
root) and a ``CLIPVisionModelWithProjection`` in ``image_encoder/`` (``options.image_encoder``).
Only the plain IP-Adapter (one CLIP image embedding projected to 4 tokens) is supported;
Plus/FaceID variants are refused by name. Pickle files are refused.

Decisions:

- The vision encoder is the replica's, kept beside the engine (never registered on the
  pipelines): calls pass ``ip_adapter_image_embeds`` only, so every sibling pipeline
  (text-to-image, image-to-image, inpaint, ControlNet) conditions alike without an
  image encoder of its own, and a pin's images are encoded once, at its creation.
- Several sources (pins of two kinds, a reference) each keep their own scale: diffusers'
  scale is per loaded adapter, so the adapter is loaded once and then given one *slot* per
  source whose layers are the same modules (``to_k_ip``/``to_v_ip`` and the image
  projection tied, no weight copied). Each slot's image tokens get their own attention,
  added at its scale: ``out = attn(text) + sum_i scale_i * attn(image_i)``. Pre-weighting
  embeddings in one slot would not work: the projection ends in a LayerNorm that undoes
  any weight, and tokens concatenated in one softmax blend rather than add. Slots grow on
  demand and stay; unused ones run at scale 0, which diffusers skips.
- A source of several images (a pin of 1-4 pictures) puts all of them in its slot: their
  tokens share one attention, so a pin with four views weighs as much as one with one.
- The negative (unconditional) half is zeros, as diffusers' own ``encode_image`` makes it
  for the plain IP-Adapter.
- A call without conditioning on an engine that has an adapter loaded runs every slot at
  scale 0 with zero embeddings: the image tokens are skipped and the result is bit-equal
  to a model that never loaded the adapter (tested).
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.loaded_model import LoadedModel
from pipelines.params import AdapterConditioning
from weights.catalog import ComponentKind, ComponentSpec, ModelKind
from weights.checks import refuse_pickle, refuse_pickle_folder

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_ENCODER = "image_encoder"
PLAIN_ADAPTER_KEY = "image_proj.proj.weight"


class IPAdapterError(ValueError):
    """An IP-Adapter component that cannot be used (missing, wrong family, unsupported)."""


@dataclass
class _EngineAdapters:
    """What this module keeps per engine: vision encoders by component, and slots."""

    encoders: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    slots: int = 0


_STATE: weakref.WeakKeyDictionary[LoadedModel, _EngineAdapters] = weakref.WeakKeyDictionary()


def _state(engine: LoadedModel) -> _EngineAdapters:
    if engine not in _STATE:
        _STATE[engine] = _EngineAdapters()
    return _STATE[engine]


def _component(engine: LoadedModel, component_id: str) -> ComponentSpec:
    component = engine.components.get(component_id)
    if component is None or component.kind != ComponentKind.IP_ADAPTER:
        known = ", ".join(c.id for c in engine.components_of(ComponentKind.IP_ADAPTER)) or "none"
        raise IPAdapterError(
            f"no IP-Adapter {component_id!r} for model {engine.spec.id!r}; known: {known}"
        )
    if engine.spec.kind != ModelKind.BASE:
        raise IPAdapterError(f"model {engine.spec.id!r} ({engine.spec.kind}) takes no IP-Adapter")
    return component


def adapter_files(component: ComponentSpec) -> tuple[Path, Path]:
    """(adapter weights file, image encoder folder) of an IP-Adapter component."""
    source = component.source
    if not source.is_dir():
        raise IPAdapterError(f"IP-Adapter {component.id!r}: {source} is not a folder")
    name = component.options.get("weight_name")
    if name is None:
        found = sorted(source.glob("*.safetensors"))
        if len(found) != 1:
            raise IPAdapterError(
                f"IP-Adapter {component.id!r}: expected one .safetensors in {source}, found "
                f"{len(found)}; name it with weight_name"
            )
        weights = found[0]
    else:
        weights = source / name
    refuse_pickle(weights)
    if weights.suffix.lower() != ".safetensors" or not weights.is_file():
        raise IPAdapterError(f"IP-Adapter {component.id!r}: {weights} is not a .safetensors file")
    encoder = source / component.options.get("image_encoder", DEFAULT_IMAGE_ENCODER)
    if not (encoder / "config.json").is_file():
        raise IPAdapterError(f"IP-Adapter {component.id!r}: no image encoder in {encoder}")
    refuse_pickle_folder(encoder)
    return weights, encoder


def _image_encoder(engine: LoadedModel, component_id: str) -> tuple[Any, Any]:
    """The component's CLIP vision encoder and image processor, loaded once per engine."""
    state = _state(engine)
    if component_id not in state.encoders:
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        _, folder = adapter_files(_component(engine, component_id))
        model = CLIPVisionModelWithProjection.from_pretrained(
            folder, dtype=engine.pipe.unet.dtype, local_files_only=True, use_safetensors=True
        ).to(engine.device)
        model.eval()
        if (folder / "preprocessor_config.json").is_file():
            processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
        else:  # as diffusers' load_ip_adapter makes one
            size = model.config.image_size
            processor = CLIPImageProcessor(size=size, crop_size=size)
        state.encoders[component_id] = (model, processor)
    return state.encoders[component_id]


def embed_images(engine: LoadedModel, component_id: str, images: list[np.ndarray]) -> np.ndarray:
    """CLIP image embeddings of ``images`` (uint8 HxWx3) for IP-Adapter ``component_id``:
    float32 ``(len(images), dim)``, what ``AdapterImage.embeds`` carries. Blocking torch
    work; on a replica's engine thread."""
    import torch
    from PIL import Image

    if not images:
        raise ValueError("embed_images needs at least one image")
    model, processor = _image_encoder(engine, component_id)
    pixels = processor(
        images=[Image.fromarray(np.ascontiguousarray(i)).convert("RGB") for i in images],
        return_tensors="pt",
    ).pixel_values
    with torch.inference_mode():
        embeds = model(pixels.to(engine.device, model.dtype)).image_embeds
    return embeds.float().cpu().numpy()


def load_adapter(engine: LoadedModel, component_id: str) -> None:
    """Load IP-Adapter ``component_id`` onto the engine's shared UNet (replacing another
    one); its siblings see it through the shared modules."""
    from safetensors import safe_open

    if engine.ip_adapter_loaded == component_id:
        return
    weights, _ = adapter_files(_component(engine, component_id))
    state_dict: dict[str, dict[str, Any]] = {"image_proj": {}, "ip_adapter": {}}
    with safe_open(str(weights), framework="pt", device="cpu") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            group, _, rest = key.partition(".")
            if group in state_dict:
                state_dict[group][rest] = f.get_tensor(key)
    if "proj.weight" not in state_dict["image_proj"]:
        raise IPAdapterError(
            f"IP-Adapter {component_id!r}: only the plain IP-Adapter ({PLAIN_ADAPTER_KEY}) "
            "is supported; Plus and FaceID variants are not"
        )
    pipe = engine.pipe
    if engine.ip_adapter_loaded is not None:
        pipe.unload_ip_adapter()
    # A state dict, not a path: nothing is resolved against a hub; the encoder is ours.
    pipe.load_ip_adapter(
        [state_dict], subfolder=[""], weight_name=[weights.name], image_encoder_folder=None
    )
    engine.ip_adapter_loaded = component_id
    _state(engine).slots = 1
    logger.info("loaded IP-Adapter %s on %s", component_id, engine.spec.id)


def _ip_processors(unet: Any) -> list[Any]:
    from diffusers.models.attention_processor import (
        IPAdapterAttnProcessor,
        IPAdapterAttnProcessor2_0,
    )

    return [
        p
        for p in unet.attn_processors.values()
        if isinstance(p, (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0))
    ]


def _ensure_slots(engine: LoadedModel, wanted: int) -> int:
    """At least ``wanted`` slots, each new one tied to slot 0's modules (no new weights)."""
    state = _state(engine)
    unet = engine.pipe.unet
    while state.slots < wanted:
        for processor in _ip_processors(unet):
            processor.to_k_ip.append(processor.to_k_ip[0])
            processor.to_v_ip.append(processor.to_v_ip[0])
            processor.num_tokens.append(processor.num_tokens[0])
            processor.scale.append(0.0)
        layers = unet.encoder_hid_proj.image_projection_layers
        layers.append(layers[0])
        state.slots += 1
    return state.slots


def adapter_call_kwargs(
    engine: LoadedModel,
    conditioning: AdapterConditioning | None,
    images: int,
    guidance: float | None = None,
) -> dict[str, Any]:
    """Pipeline kwargs of one call's IP-Adapter conditioning, for ``images`` images.

    Loads the component on first use and sets every slot's scale for this call. With
    ``conditioning=None`` on an engine that has an adapter loaded, every slot runs at
    scale 0 on zero embeddings, so nothing of an earlier call remains. ``guidance``: the
    call's guidance scale; at 1 or below diffusers runs no unconditional half and the
    negative embeddings are left out (None: assume classifier-free guidance).
    """
    import torch

    if conditioning is None and engine.ip_adapter_loaded is None:
        return {}
    if conditioning is not None:
        load_adapter(engine, conditioning.component)
        sources = conditioning.sources
    else:
        sources = ()
    slots = _ensure_slots(engine, max(1, len(sources)))
    unet = engine.pipe.unet
    dim = unet.encoder_hid_proj.image_projection_layers[0].image_embeds.in_features
    cfg = guidance is None or guidance > 1.0
    scales, embeds = [], []
    for slot in range(slots):
        if slot < len(sources):
            source = sources[slot]
            positive = torch.from_numpy(np.asarray(source.embeds, dtype=np.float32))
            if positive.ndim != 2 or positive.shape[1] != dim:
                raise IPAdapterError(
                    f"{source.name}: embeddings of shape {tuple(positive.shape)} do not fit "
                    f"IP-Adapter {conditioning.component!r} (n, {dim})"  # type: ignore[union-attr]
                )
            scale = float(source.scale)
        else:
            positive, scale = torch.zeros(1, dim), 0.0
        # (images, source images, dim): each image of the call gets the source's images.
        positive = positive[None].expand(images, -1, -1)
        if cfg:
            positive = torch.cat([torch.zeros_like(positive), positive])
        embeds.append(positive.to(engine.device, unet.dtype).contiguous())
        scales.append(scale)
    engine.pipe.set_ip_adapter_scale(scales)
    return {"ip_adapter_image_embeds": embeds}
