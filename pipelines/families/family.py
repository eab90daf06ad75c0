"""What a model family is, as one record: everything that differs between SD 1.5, SDXL
and the families to come (FLUX.1, FLUX.2 [klein], Qwen-Image, Z-Image), so that the
engine, styles, the fast path and the benchmarks ask the family instead of testing its
name. One module per family in this package fills one ``Family``; ``pipelines.families``
holds the registry.

Decided where the issue is silent:

- The size grid stays on ``weights.catalog.ModelFamily`` (``size_multiple``): the
  catalog lists each model's sizes and sits below ``pipelines``; ``Family.size_multiple``
  reads it from there, so it is still said once.
- Default steps, guidance and scheduler stay per catalog entry (FLUX.1 dev and schnell
  are one family with different defaults); the catalog's fallbacks when an entry names
  none are the same for SD 1.5 and SDXL, FLUX.1's are [dev]'s reference (28 steps,
  guidance 3.5, ``flow_euler``), [klein]'s its distilled 4 steps
  (``weights.catalog.ModelFamily.entry_defaults``, beside the grid). What the family
  decides is which server-wide default applies to its models:
  ``pipelines.params.GenerationDefaults.resolved`` keeps the server's scheduler only
  where ``schedulers`` has it.
- Resolution tiers and aspect ratios stay per catalog entry; the family's grid rounds them.
- A request's scheduler is checked against its model's family (``GenerationParams.build``),
  so a scheduler of another family is a 400 naming ``scheduler`` and the valid ones. An
  entry may keep fewer (``schedulers = ["flow_euler"]``: FLUX.1 [schnell], whose fixed
  shift DPM-Solver's flow sigmas do not take in diffusers 0.42).
- How a model takes guidance (``GuidanceKind``) is its family's default, and a catalog
  entry may say otherwise (``guidance_kind = "none"`` on FLUX.1 [schnell], ``"cfg"`` on a
  [klein] base checkpoint): dev and schnell, distilled and base [klein] share a family.
  A request's ``guidance`` on a model that takes none is a 400 naming ``guidance``, and a
  ``negative_prompt`` where there is no classifier-free guidance a 400 naming it. The
  server's default guidance (a CFG scale) holds only on CFG models; an embedded guidance
  keeps the model's default (3.5 on [dev]); a model without guidance records 0.
- Prompt limits: an encoder without windows (T5, Qwen3) is padded and cut at the model's
  ``max_sequence_length`` (the family's default, or the entry's: 256 on [schnell]); a
  prompt past it is refused naming ``prompt`` (``PromptEncoding.check``), never cut. Every
  call of a model is padded to that one length, as the reference pipelines do, so an image
  does not depend on the prompts it shares a call with; the length is in the batch key.
  FLUX.1's CLIP prompt (pooled) is cut at 77 tokens by design, as the reference does: not
  an error.
- A1111 emphasis on an encoder that does not read it (``Family.emphasis`` false): explicit
  weights ``(word:1.3)`` and ``BREAK`` are a 400 naming ``prompt`` (T5 and Qwen3 would read
  them as words); plain brackets are ordinary text in a natural-language prompt and pass.
- Single files: SD 1.5 and SDXL read a whole pipeline in the original layout
  (``SingleFileLayout``); FLUX.1 and FLUX.2 read the transformer alone, the rest from the
  entry's ``config`` folder (``TransformerFileLayout``, ``weights.transformer_file``). A
  family whose ``single_file`` is None loads diffusers folders only.
- Edits (issue 21): ``pipelines`` are what a *base* model runs (loaded or derived with
  ``from_pipe``); ``checkpoints`` what a dedicated checkpoint of a kind loads as where a
  base model does not derive it (SD's InstructPix2Pix, FLUX.1 Kontext and Fill: their
  transformers differ). [klein]'s base model edits by instruction through its own image
  input, so its ``pipelines`` have ``instruct``. How an instruct call takes its image is
  ``instruct_input``; a family without an img2img pipeline (FLUX.2) runs img2img as its
  inpaint pipeline under a mask that covers the whole image (``img2img_by_mask``): with
  nothing to keep, inpainting at a strength is img2img.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from pipelines.task import Task
from weights.catalog import CatalogError, ModelFamily, ModelKind, ModelSpec
from weights.single_file import SingleFileLayout
from weights.transformer_file import TransformerFileLayout

# The task a model kind's loaded pipeline serves; a base model derives the others from it.
LOADED_TASK: dict[ModelKind, Task] = {
    ModelKind.BASE: Task.TEXT_TO_IMAGE,
    ModelKind.INSTRUCT: Task.INSTRUCT,
    ModelKind.INPAINT: Task.INPAINT,
}


class GuidanceKind(StrEnum):
    """How a model takes ``guidance``: classifier-free guidance (two forwards a step: SD,
    a [klein] base checkpoint), a conditioning value the transformer embeds (one forward:
    FLUX.1 [dev]), or none at all (FLUX.1 [schnell], step-distilled [klein])."""

    CFG = "cfg"
    EMBEDDED = "embedded"
    NONE = "none"


class InstructInput(StrEnum):
    """How a family's instruction edit takes its input image. ``image_guidance``:
    InstructPix2Pix (one image per generated image and an image guidance scale);
    ``context_image``: FLUX.1 Kontext (one image per generated image, its tokens beside
    the latents, at the call's size: Kiln turns Kontext's resize to its preferred sizes
    off, the work size is on its grid already); ``reference_images``: FLUX.2 [klein]
    (one list of reference images for the whole call). Only ``image_guidance`` takes an
    ``image_guidance``."""

    IMAGE_GUIDANCE = "image_guidance"
    CONTEXT_IMAGE = "context_image"
    REFERENCE_IMAGES = "reference_images"


class PromptEncoding(Protocol):
    """A family's prompt encoder, made once per loaded pipeline (``Family.prompt_encoder``).

    ``chunk_count``: how many encoder windows a prompt takes; the engine runs prompts of
    different counts in different calls, so nothing is padded because of a neighbour
    (1 for an encoder without windows). ``check``: refuse a prompt the encoder would cut
    (``ParamError`` naming the field; nothing for CLIP, whose windows take any length).
    ``encode``: the call's embedding keyword arguments, one row per prompt."""

    def chunk_count(self, prompt: str) -> int: ...

    def check(self, prompt: str, field: str = "prompt") -> None: ...

    def encode(self, prompts: list[str], negative_prompts: list[str]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LoraTargets:
    """Where a family's LoRA files go: the pipeline components they may change, and
    whether its loader reads the denoiser's config (SDXL maps kohya's SGM block numbers by
    it), so a file is read at import exactly as it will be loaded."""

    components: tuple[str, ...]
    reads_denoiser_config: bool = False


@dataclass(frozen=True)
class LatentRgb:
    """A linear latent -> RGB projection for step previews (``pipelines.previews``):
    ``rgb = latents . factors + bias`` per pixel, in [-1, 1], one ``factors`` row (R, G,
    B) per latent channel. The family says where its coefficients come from."""

    factors: tuple[tuple[float, float, float], ...]
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Family:
    """Everything family-specific, in one place (one module per family fills one)."""

    name: ModelFamily
    # Task -> the diffusers pipeline class (by name) that runs it on a base model (loaded
    # or derived); the tasks a base model of the family has.
    pipelines: Mapping[Task, str]
    # (loaded pipeline, the model's sequence length: ``sequence_length_of``) -> its prompt
    # encoder (CLIP emphasis and 75-token windows for SD; T5 or Qwen3 counted for FLUX).
    prompt_encoder: Callable[[Any, int | None], PromptEncoding]
    # Scheduler name a request may give -> (diffusers class name, config overrides).
    schedulers: Mapping[str, tuple[str, dict[str, Any]]]
    # The pipeline component that denoises (``unet``; ``transformer`` for DiTs).
    denoiser: str
    # The denoiser's repeated blocks the fast path compiles (regional compilation) when
    # the model declares no ``_repeated_blocks`` of its own.
    compile_blocks: tuple[str, ...]
    lora: LoraTargets
    # How a single-file checkpoint is read: a whole original-layout pipeline (SD), or a
    # transformer with the rest from the entry's ``config`` folder (FLUX); None: diffusers
    # folders only.
    single_file: SingleFileLayout | TransformerFileLayout | None
    # The ``weights.tiny.TINY_BUILDERS`` entry of the family's tiny base model.
    tiny_builder: str
    # (steps, strength) -> the denoising steps an image task with a strength (img2img,
    # inpaint) runs: how the family's pipelines cut the schedule (fewer than 1: the call
    # has nothing to run, and ``GenerationParams.build`` refuses it naming ``steps``).
    strength_steps: Callable[[int, float], int]
    # Whether the VAE overflows in fp16 (it then runs in fp32 when serving in fp16).
    vae_overflows_in_fp16: bool = False
    # Whether the denoiser is also conditioned on a pooled text embedding and the image's
    # size and crop (SDXL's micro-conditioning): style training passes them.
    size_conditioning: bool = False
    # Constructor arguments of the stock pipeline for the parts Kiln does not run (safety
    # checker, diffusers' own watermark): the benchmark builds stock pipelines with them.
    stock_pipeline_options: Mapping[str, Any] = field(default_factory=dict)
    # How the family's models take guidance, unless an entry's ``guidance_kind`` differs.
    guidance_kind: GuidanceKind = GuidanceKind.CFG
    # The text length calls are padded and cut to, unless an entry's
    # ``max_sequence_length`` differs; None: the encoder has windows (CLIP) and no limit.
    max_sequence_length: int | None = None
    # Whether the prompt encoder reads A1111 emphasis (``(word:1.2)``, ``BREAK``).
    emphasis: bool = True
    # Whether an image-to-image call takes the call's size (FLUX's resizes its input to
    # height x width, 1024 px when not given; SD's runs at the input image's size).
    sized_image_calls: bool = False
    # Model kind -> the pipeline class a dedicated checkpoint of that kind loads as, where
    # it is not ``pipelines``' (InstructPix2Pix; FLUX.1 Kontext and Fill).
    checkpoints: Mapping[ModelKind, str] = field(default_factory=dict)
    # How an instruction edit takes its image (``InstructInput``).
    instruct_input: InstructInput = InstructInput.IMAGE_GUIDANCE
    # Whether img2img runs the ``image_to_image`` pipeline (an inpaint one) under a mask
    # covering the whole image (FLUX.2: diffusers 0.42.1 has no img2img pipeline for it).
    img2img_by_mask: bool = False
    # The ControlNet model class (by name) a ``controlnet`` component of the family loads
    # as, and the keyword its ControlNet pipeline takes the control image by (FLUX.1:
    # ``FluxControlNetModel``, ``control_image``); the pipeline is ``pipelines``' own.
    controlnet_model: str = "ControlNetModel"
    control_image_arg: str = "image"
    # Step previews (``pipelines.previews``): how a call's latents at a step become
    # (B, C, h, w) VAE latents, ``(pipe, latents, height, width) -> latents`` (FLUX unpacks
    # its tokens; None: they are already), and the linear projection used where no tiny
    # autoencoder fits them (None: previews need one).
    preview_latents: Callable[[Any, Any, int, int], Any] | None = None
    latent_rgb: LatentRgb | None = None

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(self.pipelines)

    @property
    def size_multiple(self) -> int:
        return self.name.size_multiple

    def pipeline_class(self, task: Task) -> Any:
        """The diffusers pipeline class that runs ``task`` on this family; loud on a task
        the family does not have."""
        import diffusers

        try:
            name = self.pipelines[task]
        except KeyError:
            known = ", ".join(self.pipelines)
            raise KeyError(
                f"family {self.name} has no pipeline for task {str(task)!r}; it has: {known}"
            ) from None
        return getattr(diffusers, name)

    def guidance_of(self, spec: ModelSpec) -> GuidanceKind:
        """How the catalog model ``spec`` takes guidance (its entry, else the family)."""
        named = spec.extra.get("guidance_kind", self.guidance_kind)
        try:
            return GuidanceKind(named)
        except ValueError:
            known = ", ".join(GuidanceKind)
            raise CatalogError(
                f"catalog entry {spec.id!r}: unknown guidance_kind {named!r}; known: {known}"
            ) from None

    def schedulers_of(self, spec: ModelSpec) -> Mapping[str, tuple[str, dict[str, Any]]]:
        """The schedulers the catalog model ``spec`` takes: the family's, or those its
        entry's ``schedulers`` list keeps (FLUX.1 [schnell]: ``["flow_euler"]``)."""
        named = spec.extra.get("schedulers")
        if named is None:
            return self.schedulers
        unknown = [name for name in named if name not in self.schedulers]
        if unknown or not named:
            known = ", ".join(self.schedulers)
            raise CatalogError(
                f"catalog entry {spec.id!r}: schedulers {list(named)} must be some of: {known}"
            )
        return {name: self.schedulers[name] for name in named}

    def sequence_length_of(self, spec: ModelSpec) -> int | None:
        """The text length every call of ``spec`` is padded and cut to (None: CLIP)."""
        if self.max_sequence_length is None:
            return None
        return int(spec.extra.get("max_sequence_length", self.max_sequence_length))

    def loaded_class(self, kind: ModelKind) -> Any:
        """The class a catalog model of ``kind`` loads as (base: text-to-image; a
        dedicated checkpoint: its ``checkpoints`` class, else its task's pipeline)."""
        import diffusers

        if kind in self.checkpoints:
            return getattr(diffusers, self.checkpoints[kind])
        return self.pipeline_class(LOADED_TASK[kind])
