"""The model catalog: which models a Kiln serves, at which sizes and prices.

A default catalog ships with the package (``default_models.toml``) and lists the tiny
models that ``weights.tiny`` builds. ``KILN_HOME/models.toml`` adds entries or overrides
shipped ones field by field (an entry with the same id replaces the fields it names).

Entry fields (TOML table ``[models.<id>]``):

- ``kind``: ``base``, or ``instruct`` (an instruction-edit checkpoint: InstructPix2Pix on
  SD, FLUX.1 Kontext: served by ``POST /v1/edits`` with ``tool: "instruct"``, never
  text-to-image), or ``inpaint`` (a dedicated inpainting checkpoint: SD's 9-channel UNet,
  FLUX.1 Fill). The kind says which pipeline the checkpoint loads as (its family's
  ``checkpoints``); a FLUX.2 [klein] base model edits by instruction itself
- ``inpaint_model`` (base models): the id of an ``inpaint`` model of the same family that
  replace, recreate-with-mask and erase use instead of deriving an inpaint pipeline
- ``pins_model`` (FLUX.1 base models): the id of the ``instruct`` model of the same family
  (a Kontext checkpoint) that a generation with pins on this base model runs on, the pins'
  pictures tiled into its one reference image (``serving.core.generations.pinned``); the
  base model lists ``pins`` only then (FLUX.2 [klein] takes pins itself, as reference
  images; SD through its family's IP-Adapter)
- ``family``: ``sd15``, ``sdxl``, ``flux1`` or ``flux2`` (``ModelFamily``; each is a module in
  ``pipelines/families``, which also reads the entry fields a family may override:
  ``guidance_kind`` (``cfg``, ``embedded``, ``none``: FLUX.1 [schnell] ``none``, a
  [klein] base ``cfg``), ``max_sequence_length`` (T5/Qwen3 tokens: [schnell] 256) and
  ``schedulers`` (those of the family's the model takes: [schnell] ``["flow_euler"]``))
- ``source``: a diffusers folder or a single-file ``.safetensors``; relative paths are
  resolved against ``KILN_HOME``
- ``config``: for a single file, the diffusers config folder to build it with; default
  the family's full-size config shipped in ``weights/configs/<family>`` (SD). A FLUX
  single file is the transformer alone: ``config`` is then required and supplies the rest
  of the pipeline (``weights.transformer_file``)
- ``tiny``: the tiny builder that creates ``source`` when it is missing
  (``weights.tiny.TINY_BUILDERS``: ``sd15``, ``sdxl``, ``flux1``, ``flux2_klein``, ...)
- ``features``: what a prompt bar may offer with this model (``text_to_image``, ...)
- ``resolutions``: a table of tier name -> long side in pixels (``"1K" = 1024``)
- ``aspect_ratios``: list of ``"W:H"``
- ``credits``: a table of tier name -> credits per image
- ``default_resolution``, ``default_steps``, ``default_guidance``, ``default_scheduler``
  (an entry that names none gets its family's: ``ModelFamily.entry_defaults``)
- ``terms`` (a table ``[models.<id>.terms]``): the model provider's stated terms,
  ``ProviderTerms``: ``license_id``, ``license_url``, ``commercial_model_use`` and
  ``commercial_outputs``, all four required when the table is given. An entry without it
  gets ``UNSPECIFIED_TERMS`` (``license_id = "unspecified"``, no URL, both commercial flags
  false): Kiln claims nothing it was not told. ``models.toml`` overriding a shipped entry
  replaces the whole table. The values are what a studio read in the provider's license,
  recorded as data (``/v1/models``, every asset, PNG ``kiln:license``); not legal advice.

Components (TOML table ``[components.<id>]``) are the non-diffusion weights features need:
``kind`` (one of ``COMPONENT_KINDS``), ``source`` (a file or folder, relative to
``KILN_HOME``), ``tiny`` (the tiny builder that creates ``source`` when missing, see
``weights.tiny.COMPONENT_BUILDERS``), ``families`` (model families it fits; empty: any)
and kind-specific fields kept in ``options``.

Prices of everything that is not a text-to-image generation (TOML table ``[prices]``,
whole credits; ``models.toml`` overrides them one by one): ``OPERATIONS`` names them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

_E = TypeVar("_E", bound=StrEnum)

PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")


class ModelFamily(StrEnum):
    """A model family (the catalog's ``family``). A ``StrEnum``: equal to its name as a
    string, so TOML, JSON, database rows and the wire carry the same text as before.

    What a family is (its pipelines, prompt encoding, schedulers, ...) is its module in
    ``pipelines/families``; here is only its name and the one fact the catalog itself
    needs, its size grid (the catalog lists each model's sizes, below ``pipelines``)."""

    SD15 = "sd15"
    SDXL = "sdxl"
    FLUX1 = "flux1"
    FLUX2 = "flux2"

    @property
    def size_multiple(self) -> int:
        """Image sides of this family are multiples of this many pixels."""
        return _SIZE_GRIDS[self]

    @property
    def entry_defaults(self) -> dict[str, Any]:
        """What an entry of this family that names no steps, guidance or scheduler gets."""
        return _ENTRY_DEFAULTS.get(self, _UNET_DEFAULTS)

    def has_feature(self, feature: str) -> bool:
        """Whether Kiln serves ``feature`` (a ``Catalog.features_of`` name) on this
        family's base models at all; installed components may still be missing."""
        only = _FAMILY_FEATURES.get(self)
        if only is None:
            return feature not in _LISTED_ONLY
        return feature in only


# SD 1.5: its VAE's factor 8; SDXL: 64, the grid of its training buckets; FLUX.1 and
# FLUX.2: 16, the VAE's factor 8 times the transformer's 2x2 latent patches.
_SIZE_GRIDS = {
    ModelFamily.SD15: 8,
    ModelFamily.SDXL: 64,
    ModelFamily.FLUX1: 16,
    ModelFamily.FLUX2: 16,
}
# An entry's default steps, guidance and scheduler where it names none: SD's discrete
# schedule; FLUX.1 [dev]'s reference (28 steps, embedded guidance 3.5); [klein]'s
# step-distilled 4 (its guidance is ignored; a base entry names its own 50 and 4.0).
_UNET_DEFAULTS = {"default_steps": 30, "default_guidance": 7.0, "default_scheduler": "euler"}
_ENTRY_DEFAULTS = {
    ModelFamily.FLUX1: {
        "default_steps": 28,
        "default_guidance": 3.5,
        "default_scheduler": "flow_euler",
    },
    ModelFamily.FLUX2: {
        "default_steps": 4,
        "default_guidance": 4.0,
        "default_scheduler": "flow_euler",
    },
}


# The base-model features a family has where Kiln does not serve all of them (absent: every
# one, SD 1.5 and SDXL, but those of ``_LISTED_ONLY``). FLUX.1 and [klein] take a
# reference image as img2img ([klein] through its inpaint pipeline under a whole-image
# mask); both FLUX families edit (replace, recreate, erase) and make variations; [klein]'s
# base model edits by instruction too (its image input); both take LoRA styles (transformer
# LoRAs: styles/lora_fit.py). Pins: by their pictures (``_PINS_BY_PICTURES``), never
# through an IP-Adapter on FLUX. Agentic runs on both: FLUX.1 steers composition through
# a FLUX.1 ControlNet where one is installed (``structure_guidance``), [klein] (no FLUX.2
# ControlNet in diffusers 0.42.1) and a FLUX.1 without one through img2img. IP-Adapter
# references are SD-only; a request for one on FLUX is a 400 naming the models that have it.
_EDITS = frozenset({"replace", "recreate", "erase", "variations"})
_FLOW_FEATURES = frozenset({"text_to_image", "reference", "image_to_prompt", "styles", "pins"})
_FAMILY_FEATURES: dict[ModelFamily, frozenset[str]] = {
    ModelFamily.FLUX1: _FLOW_FEATURES | _EDITS | {"agentic", "structure_guidance"},
    ModelFamily.FLUX2: _FLOW_FEATURES | _EDITS | {"agentic", "instruct"},
}
# How a family's base models take a generation's pins as pictures (issue 21), where no
# IP-Adapter serves them: ``self`` (FLUX.2 [klein]: extra reference images of its own
# pipeline) or ``pins_model`` (FLUX.1: on the Kontext checkpoint its entry names, the
# pictures tiled into one reference image; a FLUX.1 entry without one has no pins).
_PINS_BY_PICTURES: dict[ModelFamily, str] = {
    ModelFamily.FLUX1: "pins_model",
    ModelFamily.FLUX2: "self",
}
# Base-model features a family has only where it lists them: an instruction edit is a
# checkpoint of its own on SD (InstructPix2Pix) and FLUX.1 (Kontext), ``kind = "instruct"``.
_LISTED_ONLY = frozenset({"instruct"})


class ModelKind(StrEnum):
    """What a catalog model is (the catalog's ``kind``): a base text-to-image model, an
    instruction-edit checkpoint or a dedicated inpainting checkpoint."""

    BASE = "base"
    INSTRUCT = "instruct"
    INPAINT = "inpaint"


class ComponentKind(StrEnum):
    """What a catalog component is (``[components.<id>] kind``); ``COMPONENT_KINDS`` says
    what each is for."""

    CLIP = "clip"
    IP_ADAPTER = "ip_adapter"
    CONTROLNET = "controlnet"
    UPSCALER = "upscaler"
    BACKGROUND_REMOVAL = "background_removal"
    PREVIEW_DECODER = "preview_decoder"


# What each component kind is for.
COMPONENT_KINDS: dict[ComponentKind, str] = {
    ComponentKind.CLIP: "an open_clip model for image-to-prompt",
    ComponentKind.IP_ADAPTER: (
        "an IP-Adapter with its CLIP vision encoder (pins, reference mode ip_adapter)"
    ),
    ComponentKind.CONTROLNET: "a ControlNet for structure guidance (agentic composition)",
    ComponentKind.UPSCALER: "a super-resolution model spandrel loads (upscale, 8K download)",
    ComponentKind.BACKGROUND_REMOVAL: "an ONNX segmentation model (background removal)",
    ComponentKind.PREVIEW_DECODER: (
        "a tiny autoencoder (diffusers AutoencoderTiny folder: TAESD, TAESDXL, TAEF1) that "
        "decodes step previews of its families' models"
    ),
}
# Style ids (styles/record.py) start so, and model ids may not: the OpenAI route tells a
# style named as ``model`` from a model by it.
STYLE_ID_PREFIX = "sty_"

# Priced operations besides text-to-image (DESIGN.md §1 "Credits"). ``agentic`` is per
# generation, ``style_training`` per training run, ``license`` per image, the rest per
# image produced (the edit tools each have their own price; ``variation`` covers OpenAI's
# variations).
# The most a price may be: what a tenant can hold at most (the ledger's ``MAX_CREDITS``),
# so a price times a request's images stays far inside the ledger's 64-bit integers.
MAX_PRICE = 10**15

OPERATIONS = (
    "agentic", "instruct", "replace", "recreate", "erase", "variation", "upscale",
    "remove_background", "vectorize", "style_training",
    "license", "image_to_prompt",
)  # fmt: skip


class CatalogError(ValueError):
    """A catalog file or entry that cannot be used; the message says which and why."""


class UnknownModelError(KeyError):
    """A model id that is not in the catalog; the message names the known ones."""

    def __init__(self, model_id: str, known: list[str]):
        self.model_id = model_id
        self.known = known
        super().__init__(f"unknown model {model_id!r}; known models: {', '.join(known)}")

    def __reduce__(self) -> tuple[type[UnknownModelError], tuple[str, list[str]]]:
        # By its arguments: raised in a replica, Ray pickles it to the HTTP process.
        return type(self), (self.model_id, self.known)

    def __str__(self) -> str:
        return self.args[0]


def parse_aspect_ratio(text: str) -> tuple[int, int]:
    """``"3:2"`` -> ``(3, 2)``; raises ValueError on anything else."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"aspect ratio must look like 'W:H' with positive integers, got {text!r}")
    return int(parts[0]), int(parts[1])


def size_for(long_side: int, aspect_ratio: str, multiple: int) -> tuple[int, int]:
    """Width and height for a long side and an aspect ratio, each rounded to ``multiple``."""
    a, b = parse_aspect_ratio(aspect_ratio)
    if a >= b:
        width, height = long_side, long_side * b / a
    else:
        width, height = long_side * a / b, long_side

    def snap(x: float) -> int:
        return max(multiple, int(round(x / multiple)) * multiple)

    return snap(width), snap(height)


@dataclass(frozen=True)
class ProviderTerms:
    """A model provider's stated terms for its weights, as a catalog entry records them
    (DESIGN.md §1: base models' commercial use is subject to each provider's terms).

    ``commercial_model_use``: whether the provider allows running the model for a
    commercial service; ``commercial_outputs``: whether the images it makes may be used
    commercially. Data a studio copies from the provider's license, not legal advice."""

    license_id: str
    license_url: str | None
    commercial_model_use: bool
    commercial_outputs: bool

    def as_dict(self) -> dict[str, Any]:
        """The terms as plain JSON data (what an asset row and the wire carry)."""
        return {
            "license_id": self.license_id,
            "license_url": self.license_url,
            "commercial_model_use": self.commercial_model_use,
            "commercial_outputs": self.commercial_outputs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProviderTerms:
        """The inverse of ``as_dict`` (a stored asset's terms)."""
        return cls(
            license_id=str(data["license_id"]),
            license_url=data["license_url"],
            commercial_model_use=bool(data["commercial_model_use"]),
            commercial_outputs=bool(data["commercial_outputs"]),
        )


# What an entry that names no ``terms`` gets: nothing claimed, nothing commercial.
UNSPECIFIED_TERMS = ProviderTerms(
    license_id="unspecified",
    license_url=None,
    commercial_model_use=False,
    commercial_outputs=False,
)
TERMS_FIELDS = ("license_id", "license_url", "commercial_model_use", "commercial_outputs")


@dataclass(frozen=True)
class ModelSpec:
    """One catalog entry, validated. Sizes derive from resolutions x aspect ratios."""

    id: str
    kind: ModelKind
    family: ModelFamily
    source: Path
    resolutions: dict[str, int]
    aspect_ratios: tuple[str, ...]
    credits: dict[str, float]
    default_resolution: str
    default_steps: int
    default_guidance: float
    default_scheduler: str
    features: tuple[str, ...] = ("text_to_image",)
    config: Path | None = None
    tiny: str | None = None
    terms: ProviderTerms = UNSPECIFIED_TERMS
    extra: dict[str, Any] = field(default_factory=dict)

    def size(self, resolution: str, aspect_ratio: str) -> tuple[int, int]:
        """The (width, height) of one resolution tier and aspect ratio of this model."""
        long_side = self.resolutions[resolution]
        return size_for(long_side, aspect_ratio, self.family.size_multiple)

    @property
    def sizes(self) -> dict[str, tuple[str, str]]:
        """``"WxH"`` -> (resolution, aspect ratio), in catalog order, first pair wins."""
        out: dict[str, tuple[str, str]] = {}
        for resolution in self.resolutions:
            for aspect in self.aspect_ratios:
                w, h = self.size(resolution, aspect)
                out.setdefault(f"{w}x{h}", (resolution, aspect))
        return out

    def price(self, resolution: str, n: int) -> float:
        """Credits for ``n`` images at ``resolution``."""
        return self.credits[resolution] * n


@dataclass(frozen=True)
class ComponentSpec:
    """One ``[components.<id>]`` entry: weights a feature loads beside the base models."""

    id: str
    kind: ComponentKind
    source: Path
    tiny: str | None = None
    # Model families it fits (an IP-Adapter or ControlNet is built for one); empty: any.
    families: tuple[ModelFamily, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    def fits(self, family: ModelFamily) -> bool:
        return not self.families or family in self.families


class UnknownComponentError(KeyError):
    """A component id or kind that the catalog does not list."""

    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class Catalog:
    """All models, by id. Lookups of unknown ids fail loudly with the known ids."""

    models: dict[str, ModelSpec]
    # Operation -> whole credits; every name of ``OPERATIONS`` is present.
    prices: dict[str, int] = field(default_factory=dict)
    components: dict[str, ComponentSpec] = field(default_factory=dict)

    def component(self, component_id: str) -> ComponentSpec:
        """The component ``component_id``; loud on a miss."""
        try:
            return self.components[component_id]
        except KeyError:
            known = ", ".join(self.components) or "none"
            raise UnknownComponentError(
                f"unknown component {component_id!r}; known: {known}"
            ) from None

    def components_of(
        self, kind: ComponentKind, family: ModelFamily | None = None
    ) -> list[ComponentSpec]:
        """Components of ``kind`` (that fit ``family`` when given), in catalog order."""
        if kind not in COMPONENT_KINDS:
            known = ", ".join(COMPONENT_KINDS)
            raise UnknownComponentError(f"unknown component kind {str(kind)!r}; known: {known}")
        return [
            c
            for c in self.components.values()
            if c.kind == kind and (family is None or c.fits(family))
        ]

    def features_of(self, spec: ModelSpec) -> tuple[str, ...]:
        """What a prompt bar may offer with ``spec``, given what is installed: the entry's
        declared features, those its kind brings (those its family has: FLUX's are fewer,
        ``ModelFamily.has_feature``), and those its family's components add.
        """
        if spec.kind == ModelKind.INSTRUCT:
            derived = ["instruct"]
        elif spec.kind == ModelKind.INPAINT:
            derived = ["replace", "recreate", "erase"]  # masked edits only
        else:
            derived = ["text_to_image", "reference", "instruct"]
            derived += ["replace", "recreate", "erase", "variations"]
            if self.pins_model(spec) is not None:
                derived.append("pins")  # by their pictures, never an IP-Adapter's
            elif self.components_of(ComponentKind.IP_ADAPTER, spec.family):
                derived += ["reference_ip_adapter", "pins"]
            if self.components_of(ComponentKind.CONTROLNET, spec.family):
                derived.append("structure_guidance")
            derived += ["agentic", "styles"]
            derived = [f for f in derived if spec.family.has_feature(f)]
        if self.components_of(ComponentKind.CLIP):
            derived.append("image_to_prompt")
        return tuple(dict.fromkeys([*spec.features, *derived]))

    def pins_model(self, spec: ModelSpec) -> ModelSpec | None:
        """The model a generation's pins on ``spec`` run on as pictures (``spec`` itself
        on FLUX.2 [klein]; a FLUX.1 base entry's ``pins_model``); None where pins are an
        IP-Adapter's (SD) or not served."""
        how = _PINS_BY_PICTURES.get(spec.family) if spec.kind == ModelKind.BASE else None
        if how == "self":
            return spec
        target = spec.extra.get("pins_model") if how == "pins_model" else None
        return self.get(target) if target is not None else None

    def models_with(self, feature: str) -> list[str]:
        """The ids of the models that have ``feature`` (``features_of``), catalog order."""
        return [spec.id for spec in self if feature in self.features_of(spec)]

    def first_component(
        self, kind: ComponentKind, family: ModelFamily | None = None
    ) -> ComponentSpec | None:
        """The first installed component of ``kind`` for ``family``, or None."""
        found = self.components_of(kind, family)
        return found[0] if found else None

    def price_of(self, operation: str) -> int:
        """Credits of one ``operation`` (``license``, ``upscale``, ...); loud on a miss."""
        try:
            return self.prices[operation]
        except KeyError:
            known = ", ".join(sorted(self.prices))
            raise CatalogError(f"no price for operation {operation!r}; priced: {known}") from None

    def get(self, model_id: str) -> ModelSpec:
        try:
            return self.models[model_id]
        except KeyError:
            raise UnknownModelError(model_id, sorted(self.models)) from None

    def __contains__(self, model_id: object) -> bool:
        return model_id in self.models

    def __iter__(self):
        return iter(self.models.values())

    def ids(self) -> list[str]:
        return list(self.models)


def _spec_from_entry(model_id: str, entry: dict[str, Any], home: Path) -> ModelSpec:
    where = f"catalog entry {model_id!r}"
    if model_id.startswith(STYLE_ID_PREFIX):
        raise CatalogError(f"{where}: model ids may not start with {STYLE_ID_PREFIX!r}")
    required = ("kind", "family", "source", "resolutions", "aspect_ratios", "credits")
    missing = [k for k in required if k not in entry]
    if missing:
        raise CatalogError(f"{where}: missing field(s) {', '.join(missing)}")
    family = _member(ModelFamily, entry["family"])
    if family is None:
        raise CatalogError(
            f"{where}: unknown family {entry['family']!r}; known: {', '.join(ModelFamily)}"
        )
    kind = _member(ModelKind, entry["kind"])
    if kind is None:
        raise CatalogError(
            f"{where}: unknown kind {entry['kind']!r}; known: {', '.join(ModelKind)}"
        )
    resolutions = {str(k): int(v) for k, v in entry["resolutions"].items()}
    if not resolutions or any(v <= 0 for v in resolutions.values()):
        raise CatalogError(f"{where}: resolutions must map tier names to positive pixel sizes")
    aspect_ratios = tuple(entry["aspect_ratios"])
    try:
        for aspect in aspect_ratios:
            parse_aspect_ratio(aspect)
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    if not aspect_ratios:
        raise CatalogError(f"{where}: aspect_ratios must not be empty")
    credits = {str(k): float(v) for k, v in entry["credits"].items()}
    # The ledger counts whole credits: a fractional price could not be charged exactly.
    fractional = [
        tier
        for tier, price in credits.items()
        if not price.is_integer() or not 0 <= price <= MAX_PRICE
    ]
    if fractional:
        raise CatalogError(
            f"{where}: credits must be whole numbers from 0 to {MAX_PRICE}: {fractional}"
        )
    if set(credits) != set(resolutions):
        names = ", ".join(resolutions)
        raise CatalogError(f"{where}: credits must name exactly the resolutions {names}")
    default_resolution = str(entry.get("default_resolution", next(iter(resolutions))))
    if default_resolution not in resolutions:
        raise CatalogError(f"{where}: default_resolution {default_resolution!r} is not listed")
    source = _resolve(entry["source"], home)
    if source.suffix.lower() in PICKLE_SUFFIXES:
        raise CatalogError(
            f"{where}: {source.name} is a pickle checkpoint, which can run code when loaded; "
            "convert it to .safetensors"
        )
    config = _resolve(entry["config"], home) if "config" in entry else None
    fallback = family.entry_defaults
    known = {
        "kind", "family", "source", "config", "tiny", "features", "resolutions",
        "aspect_ratios", "credits", "default_resolution", "default_steps",
        "default_guidance", "default_scheduler", "terms",
    }  # fmt: skip
    return ModelSpec(
        id=model_id,
        kind=kind,
        family=family,
        source=source,
        config=config,
        tiny=entry.get("tiny"),
        features=tuple(entry.get("features", ("text_to_image",) if kind == ModelKind.BASE else ())),
        resolutions=resolutions,
        aspect_ratios=aspect_ratios,
        credits=credits,
        default_resolution=default_resolution,
        default_steps=int(entry.get("default_steps", fallback["default_steps"])),
        default_guidance=float(entry.get("default_guidance", fallback["default_guidance"])),
        default_scheduler=str(entry.get("default_scheduler", fallback["default_scheduler"])),
        terms=_terms_from_entry(where, entry.get("terms")),
        extra={k: v for k, v in entry.items() if k not in known},
    )


def _terms_from_entry(where: str, table: object) -> ProviderTerms:
    """An entry's ``[terms]`` table, checked key by key; ``UNSPECIFIED_TERMS`` if absent."""
    if table is None:
        return UNSPECIFIED_TERMS
    if not isinstance(table, dict):
        raise CatalogError(f"{where}: terms must be a table ([models.<id>.terms])")
    unknown = sorted(set(table) - set(TERMS_FIELDS))
    if unknown:
        known = ", ".join(TERMS_FIELDS)
        raise CatalogError(f"{where}: terms: unknown key(s) {', '.join(unknown)}; known: {known}")
    missing = [k for k in TERMS_FIELDS if k not in table]
    if missing:
        raise CatalogError(f"{where}: terms: missing key(s) {', '.join(missing)}")
    for key in ("license_id", "license_url"):
        value = table[key]
        if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
            raise CatalogError(
                f"{where}: terms.{key} must be a non-empty string without spaces, got {value!r}"
            )
    for key in ("commercial_model_use", "commercial_outputs"):
        if not isinstance(table[key], bool):
            raise CatalogError(f"{where}: terms.{key} must be true or false, got {table[key]!r}")
    return ProviderTerms(
        license_id=table["license_id"],
        license_url=table["license_url"],
        commercial_model_use=table["commercial_model_use"],
        commercial_outputs=table["commercial_outputs"],
    )


def _check_inpaint_models(models: dict[str, ModelSpec]) -> None:
    """A base model's ``inpaint_model`` must name an inpaint model of its family, and its
    ``pins_model`` an instruct model of its family, where the family takes pins so."""
    for spec in models.values():
        for field_name, kind in (("inpaint_model", ModelKind.INPAINT),
                                 ("pins_model", ModelKind.INSTRUCT)):  # fmt: skip
            target = spec.extra.get(field_name)
            if target is None:
                continue
            other = models.get(target)
            if other is None or other.kind != kind or other.family != spec.family:
                raise CatalogError(
                    f"catalog entry {spec.id!r}: {field_name} {target!r} must name an "
                    f"{kind} model of family {spec.family}"
                )
            if field_name == "pins_model" and _PINS_BY_PICTURES.get(spec.family) != field_name:
                raise CatalogError(
                    f"catalog entry {spec.id!r}: family {spec.family} takes no pins_model"
                )


def _component_from_entry(component_id: str, entry: dict[str, Any], home: Path) -> ComponentSpec:
    where = f"component entry {component_id!r}"
    missing = [k for k in ("kind", "source") if k not in entry]
    if missing:
        raise CatalogError(f"{where}: missing field(s) {', '.join(missing)}")
    kind = _member(ComponentKind, entry["kind"])
    if kind is None:
        known = ", ".join(COMPONENT_KINDS)
        raise CatalogError(f"{where}: unknown component kind {entry['kind']!r}; known: {known}")
    named = tuple(entry.get("families", ()))
    unknown = [f for f in named if _member(ModelFamily, f) is None]
    if unknown:
        raise CatalogError(f"{where}: unknown families {unknown}; known: {', '.join(ModelFamily)}")
    families = tuple(ModelFamily(f) for f in named)
    source = _resolve(entry["source"], home)
    if source.suffix.lower() in PICKLE_SUFFIXES:
        raise CatalogError(
            f"{where}: {source.name} is a pickle file, which can run code when loaded; "
            "convert it to .safetensors"
        )
    known_fields = {"kind", "source", "tiny", "families"}
    return ComponentSpec(
        id=component_id,
        kind=kind,
        source=source,
        tiny=entry.get("tiny"),
        families=families,
        options={k: v for k, v in entry.items() if k not in known_fields},
    )


def _member(enum: type[_E], value: object) -> _E | None:
    """The member of ``enum`` named ``value`` (a catalog string), or None: the caller's
    error names the field and the known values."""
    try:
        return enum(value)
    except ValueError:
        return None


def _resolve(path: str, home: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else home / p


def default_catalog_text() -> str:
    return resources.files("weights").joinpath("default_models.toml").read_text()


def load_catalog(home: Path, extra_file: Path | None = None) -> Catalog:
    """The shipped catalog, overridden by ``extra_file`` (default ``home/models.toml``)."""
    entries: dict[str, dict[str, Any]] = {}
    component_entries: dict[str, dict[str, Any]] = {}
    prices: dict[str, Any] = {}
    sources = [("default_models.toml", default_catalog_text())]
    extra_file = extra_file if extra_file is not None else home / "models.toml"
    if extra_file.exists():
        sources.append((str(extra_file), extra_file.read_text()))
    for name, text in sources:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CatalogError(f"{name}: not valid TOML: {exc}") from None
        for model_id, entry in data.get("models", {}).items():
            entries.setdefault(model_id, {}).update(entry)
        for component_id, entry in data.get("components", {}).items():
            component_entries.setdefault(component_id, {}).update(entry)
        prices.update(data.get("prices", {}))
    models = {mid: _spec_from_entry(mid, e, home) for mid, e in entries.items()}
    _check_inpaint_models(models)
    components = {cid: _component_from_entry(cid, e, home) for cid, e in component_entries.items()}
    return Catalog(models, _operation_prices(prices), components)


def _operation_prices(prices: dict[str, Any]) -> dict[str, int]:
    unknown = sorted(set(prices) - set(OPERATIONS))
    if unknown:
        raise CatalogError(
            f"[prices]: unknown operation(s) {', '.join(unknown)}; known: {', '.join(OPERATIONS)}"
        )
    missing = [op for op in OPERATIONS if op not in prices]
    if missing:
        raise CatalogError(f"[prices]: no price for {', '.join(missing)}")
    for op, price in prices.items():
        # Whole credits, as model prices: the ledger counts integers.
        if isinstance(price, bool) or not isinstance(price, int) or not 0 <= price <= MAX_PRICE:
            raise CatalogError(
                f"[prices]: {op} must be a whole number of credits from 0 to {MAX_PRICE}, "
                f"got {price!r}"
            )
    return {op: int(prices[op]) for op in OPERATIONS}
