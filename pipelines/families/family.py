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
  none are the same for SD 1.5 and SDXL. What the family decides is which server-wide
  default applies to its models: ``pipelines.params.GenerationDefaults.resolved`` keeps
  the server's scheduler only where ``schedulers`` has it.
- Resolution tiers and aspect ratios stay per catalog entry; the family's grid rounds them.
- A request's scheduler is checked against its model's family (``GenerationParams.build``),
  so a scheduler of another family is a 400 naming ``scheduler`` and the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipelines.task import Task
from weights.catalog import ModelFamily, ModelKind
from weights.single_file import SingleFileLayout

# The task a model kind's loaded pipeline serves; a base model derives the others from it.
LOADED_TASK: dict[ModelKind, Task] = {
    ModelKind.BASE: Task.TEXT_TO_IMAGE,
    ModelKind.INSTRUCT: Task.INSTRUCT,
    ModelKind.INPAINT: Task.INPAINT,
}


class PromptEncoding(Protocol):
    """A family's prompt encoder, made once per loaded pipeline (``Family.prompt_encoder``).

    ``chunk_count``: how many encoder windows a prompt takes; the engine runs prompts of
    different counts in different calls, so nothing is padded because of a neighbour
    (1 for an encoder without windows). ``encode``: the call's embedding keyword
    arguments, one row per prompt."""

    def chunk_count(self, prompt: str) -> int: ...

    def encode(self, prompts: list[str], negative_prompts: list[str]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LoraTargets:
    """Where a family's LoRA files go: the pipeline components they may change, and
    whether its loader reads the denoiser's config (SDXL maps kohya's SGM block numbers by
    it), so a file is read at import exactly as it will be loaded."""

    components: tuple[str, ...]
    reads_denoiser_config: bool = False


@dataclass(frozen=True)
class Family:
    """Everything family-specific, in one place (one module per family fills one)."""

    name: ModelFamily
    # Task -> the diffusers pipeline class (by name) that runs it; the tasks the family has.
    pipelines: Mapping[Task, str]
    # Loaded pipeline -> its prompt encoder (CLIP emphasis and 75-token windows for SD).
    prompt_encoder: Callable[[Any], PromptEncoding]
    # Scheduler name a request may give -> (diffusers class name, config overrides).
    schedulers: Mapping[str, tuple[str, dict[str, Any]]]
    # The pipeline component that denoises (``unet``; ``transformer`` for DiTs).
    denoiser: str
    # The denoiser's repeated blocks the fast path compiles (regional compilation) when
    # the model declares no ``_repeated_blocks`` of its own.
    compile_blocks: tuple[str, ...]
    lora: LoraTargets
    single_file: SingleFileLayout
    # The ``weights.tiny.TINY_BUILDERS`` entry of the family's tiny base model.
    tiny_builder: str
    # Whether the VAE overflows in fp16 (it then runs in fp32 when serving in fp16).
    vae_overflows_in_fp16: bool = False
    # Whether the denoiser is also conditioned on a pooled text embedding and the image's
    # size and crop (SDXL's micro-conditioning): style training passes them.
    size_conditioning: bool = False
    # Constructor arguments of the stock pipeline for the parts Kiln does not run (safety
    # checker, diffusers' own watermark): the benchmark builds stock pipelines with them.
    stock_pipeline_options: Mapping[str, Any] = field(default_factory=dict)

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

    def loaded_class(self, kind: ModelKind) -> Any:
        """The class a catalog model of ``kind`` loads as (base: text-to-image)."""
        return self.pipeline_class(LOADED_TASK[kind])
