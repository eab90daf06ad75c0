"""Frozen parameter objects: what a pipeline call needs, resolved once from a request.

Precedence for every optional field: the request, then server settings, then the model's
catalog defaults. ``GenerationParams.build`` applies it; after that nothing re-reads the
request.

A call's task is a value, not a string with optional fields beside it: ``GenerationParams.
task`` holds one frozen dataclass per task, each with exactly the inputs its task needs
(``TaskInputs``). Text-to-image, the default, is defined here; the others, with their call
builders, are one module each in ``pipelines/tasks/`` (``image_to_image.py``,
``inpaint.py``, ``instruct.py``, ``controlnet.py``), which build on this module: it cannot
import them without a cycle, hence the protocol.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from pipelines.families import FAMILIES, GuidanceKind, family_of
from pipelines.param_error import ParamError, check_text
from pipelines.previews import check_preview_every
from pipelines.prompt_syntax import emphasis_mark
from pipelines.task import Task
from weights.catalog import ModelSpec

MAX_IMAGES = 12
# Classifier-free guidance past this saturates every pixel; real work stays under 20.
MAX_GUIDANCE = 50.0
MAX_SEED = 2**32 - 1
# Every scheduler some family takes; a model's family says which of them it takes.
KNOWN_SCHEDULERS = tuple(dict.fromkeys(s for f in FAMILIES.values() for s in f.schedulers))


def expand_seeds(seed: int | None, n: int) -> tuple[int, ...]:
    """One seed per image: ``seed, seed+1, ...`` (mod 2**32), random when ``seed`` is None.

    Image *i* of a batch is reproduced alone by asking for ``seeds[i]`` with ``n=1``.
    """
    base = secrets.randbelow(MAX_SEED + 1) if seed is None else seed
    return tuple((base + i) % (MAX_SEED + 1) for i in range(n))


def resolve_size(
    spec: ModelSpec,
    resolution: str | None = None,
    aspect_ratio: str | None = None,
    size: str | None = None,
) -> tuple[str, int, int]:
    """(resolution tier, width, height) from a tier + aspect ratio or an OpenAI ``"WxH"``.

    ``size`` must be one of the model's listed sizes; it may not be combined with
    ``resolution``/``aspect_ratio``. Missing values default to the model's default tier
    and its first aspect ratio.
    """
    if size is not None and size != "auto":
        if resolution is not None or aspect_ratio is not None:
            raise ParamError("size", "give either size or resolution/aspect_ratio, not both")
        offered = spec.sizes
        if size not in offered:
            raise ParamError(
                "size",
                f"size {size!r} is not offered by model {spec.id!r}; offered: {', '.join(offered)}",
            )
        resolution, aspect_ratio = offered[size]
    resolution = resolution if resolution is not None else spec.default_resolution
    if resolution not in spec.resolutions:
        raise ParamError(
            "resolution",
            f"resolution {resolution!r} is not offered by model {spec.id!r}; "
            f"offered: {', '.join(spec.resolutions)}",
        )
    aspect_ratio = aspect_ratio if aspect_ratio is not None else spec.aspect_ratios[0]
    if aspect_ratio not in spec.aspect_ratios:
        raise ParamError(
            "aspect_ratio",
            f"aspect ratio {aspect_ratio!r} is not offered by model {spec.id!r}; "
            f"offered: {', '.join(spec.aspect_ratios)}",
        )
    width, height = spec.size(resolution, aspect_ratio)
    return resolution, width, height


class ImageData:
    """An image handed to a pipeline call: uint8 pixels (HxWx3 RGB, or HxW for a mask),
    compared and hashed by a digest of its content so params stay frozen and hashable
    and requests with equal inputs can share a call."""

    __slots__ = ("digest", "pixels")

    def __init__(self, pixels: np.ndarray) -> None:
        pixels = np.ascontiguousarray(pixels)
        if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
            raise ValueError(
                f"expected uint8 HxW or HxWxC pixels, got {pixels.dtype} {pixels.shape}"
            )
        pixels.setflags(write=False)
        self.pixels = pixels
        digest = hashlib.sha256(str(pixels.shape).encode())
        digest.update(pixels.tobytes())
        self.digest = digest.hexdigest()

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageData) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"ImageData({self.pixels.shape}, {self.digest[:12]})"

    def __getstate__(self) -> tuple[np.ndarray, str]:
        return self.pixels, self.digest

    def __setstate__(self, state: tuple[np.ndarray, str]) -> None:
        self.pixels, self.digest = state


@dataclass(frozen=True)
class ControlRef:
    """Structure guidance by a ControlNet component: its catalog id, the control image
    (at the call's size) and the conditioning scale."""

    component: str
    image: ImageData
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.scale <= 2.0:
            raise ParamError("control_scale", f"control scale must be 0-2, got {self.scale}")


@dataclass(frozen=True)
class AdapterImage:
    """One IP-Adapter conditioning source (a pin or a reference image): its image
    embeddings for one IP-Adapter component and the scale to apply them at."""

    name: str  # pin id or "reference", for logs and traces
    embeds: np.ndarray = field(compare=False, repr=False)  # float32, as the adapter takes them
    scale: float = 1.0
    digest: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.scale <= 2.0:
            raise ParamError("scale", f"adapter scale must be 0-2, got {self.scale}")
        if not self.digest:
            embeds = np.ascontiguousarray(self.embeds, dtype=np.float32)
            object.__setattr__(self, "embeds", embeds)
            digest = hashlib.sha256(str(embeds.shape).encode() + embeds.tobytes()).hexdigest()
            object.__setattr__(self, "digest", digest)


@dataclass(frozen=True)
class AdapterConditioning:
    """IP-Adapter conditioning of a call: the component and the sources, in order.

    Built by serving/ (pins from their saved embeddings; a reference image embedded by the
    model's replica); applied by ``pipelines.ip_adapter`` at the start of the call, and
    reset after, so scales never leak into the next call (DESIGN.md §3)."""

    component: str
    sources: tuple[AdapterImage, ...]

    @property
    def key(self) -> tuple:
        return (self.component, tuple((s.digest, s.scale) for s in self.sources))


@dataclass(frozen=True)
class StyleRef:
    """A LoRA style as a pipeline call needs it: its id (the adapter name), its file and
    the strength to apply it at. Resolved by serving/ from the style registry."""

    id: str
    path: str
    strength: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 2.0:
            raise ParamError("style_strength", f"style_strength must be 0-2, got {self.strength}")


class TaskInputs(Protocol):
    """What ``GenerationParams`` needs of its task's inputs (one frozen dataclass a task:
    ``TextToImage`` here, the others in ``pipelines/tasks/``)."""

    # Which task these are the inputs of.
    name: ClassVar[Task]
    # False where a call may run without words (a variation is an img2img of nothing).
    prompt_required: ClassVar[bool]

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(width, height) of the image the task starts from; None: none (its size is the
        model's)."""
        ...

    @property
    def variant(self) -> str | None:
        """Which sibling pipeline of the task runs it (a ControlNet's component id); None
        where the task has one."""
        ...

    @property
    def denoise_strength(self) -> float | None:
        """The share of the noise schedule the call runs from its input image (img2img's
        and inpaint's ``strength``: fewer steps run than asked); None: the whole."""
        ...

    @property
    def batch_key(self) -> tuple:
        """Everything of the inputs that requests sharing a call must have equal: settings
        and the digests of the input images."""
        ...

    def check_size(self, width: int, height: int) -> None:
        """Refuse input images that are not at the call's size."""
        ...

    def recorded(self) -> dict[str, Any]:
        """The task's settings an asset records (``task`` aside), in their order."""
        ...


@dataclass(frozen=True)
class TextToImage:
    """From noise, no inputs: the default task (its call: ``pipelines/tasks/text_to_image``)."""

    name: ClassVar[Task] = Task.TEXT_TO_IMAGE
    prompt_required: ClassVar[bool] = True

    @property
    def input_size(self) -> None:
        return None

    @property
    def variant(self) -> None:
        return None

    @property
    def denoise_strength(self) -> None:
        return None

    @property
    def batch_key(self) -> tuple:
        return ()

    def check_size(self, width: int, height: int) -> None:
        return None

    def recorded(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class BatchKey:
    """Every call argument but prompt and seed: requests with equal keys share a call.

    A style and its strength are part of the key: batches never mix styles."""

    model: str
    task: Task
    width: int
    height: int
    steps: int
    guidance: float
    scheduler: str
    style: str | None = None
    style_strength: float = 0.0
    # The task's settings and input digests (``TaskInputs.batch_key``): requests share a
    # call only with equal inputs.
    inputs: tuple = ()
    adapter: tuple | None = None
    # The text length the call pads prompts to (T5, Qwen3); None: CLIP windows, grouped
    # by the engine.
    sequence_length: int | None = None


@dataclass(frozen=True)
class GenerationParams:
    """A text-to-image call, fully resolved: no field is left to a default downstream."""

    model: str
    prompt: str
    negative_prompt: str
    n: int
    resolution: str
    width: int
    height: int
    seeds: tuple[int, ...]
    steps: int
    guidance: float
    scheduler: str
    # The task and its inputs, at width x height (``TaskInputs``).
    task: TaskInputs = TextToImage()
    style: StyleRef | None = None
    adapter: AdapterConditioning | None = None
    # The model's text length (``Family.sequence_length_of``); None: CLIP windows.
    sequence_length: int | None = None
    # A step preview every this many steps (``pipelines.previews``; 0: none). Not in the
    # batch key: a call previews at a step where any of its requests asks.
    preview_every: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n <= MAX_IMAGES:
            raise ParamError("n", f"n must be between 1 and {MAX_IMAGES}, got {self.n}")
        if len(self.seeds) != self.n:
            raise ParamError("seed", f"need {self.n} seeds, got {len(self.seeds)}")
        if self.steps < 1:
            raise ParamError("steps", f"steps must be at least 1, got {self.steps}")
        if not (math.isfinite(self.guidance) and 0 <= self.guidance <= MAX_GUIDANCE):
            raise ParamError(
                "guidance", f"guidance must be between 0 and {MAX_GUIDANCE:g}, got {self.guidance}"
            )
        check_text("prompt", self.prompt)
        check_text("negative_prompt", self.negative_prompt)
        if self.scheduler not in KNOWN_SCHEDULERS:
            raise ParamError(
                "scheduler",
                f"unknown scheduler {self.scheduler!r}; known: {', '.join(KNOWN_SCHEDULERS)}",
            )
        self.task.check_size(self.width, self.height)
        check_preview_every(self.preview_every)

    @property
    def batch_key(self) -> BatchKey:
        style = self.style
        return BatchKey(
            self.model, self.task.name, self.width, self.height, self.steps, self.guidance,
            self.scheduler, style.id if style else None, style.strength if style else 0.0,
            self.task.batch_key, self.adapter.key if self.adapter else None,
            self.sequence_length,
        )  # fmt: skip

    @classmethod
    def build(
        cls,
        spec: ModelSpec,
        *,
        prompt: str,
        negative_prompt: str | None = None,
        n: int = 1,
        resolution: str | None = None,
        aspect_ratio: str | None = None,
        size: str | None = None,
        seed: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        scheduler: str | None = None,
        defaults: GenerationDefaults | None = None,
        style: StyleRef | None = None,
        task: TaskInputs = TextToImage(),
        adapter: AdapterConditioning | None = None,
        width: int | None = None,
        height: int | None = None,
        preview_every: int | None = None,
    ) -> GenerationParams:
        """Resolve a request against server defaults, then the model's catalog defaults.

        ``task``: the task and its inputs (``pipelines/tasks/``), text-to-image by default.
        ``width``/``height`` fix the call's size for image tasks whose size comes from the
        input image (edits); otherwise the size is resolved from the model's list.
        ``preview_every``: step previews (None: the server's default, else none)."""
        defaults = defaults or GenerationDefaults()
        if preview_every is not None:
            check_preview_every(preview_every)
        # A variation (image_to_image) may run without words; every other task needs them.
        if not prompt.strip() and task.prompt_required:
            raise ParamError("prompt", f"prompt must not be empty for {task.name}")
        if not 1 <= n <= MAX_IMAGES:
            raise ParamError("n", f"n must be between 1 and {MAX_IMAGES}, got {n}")
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise ParamError("seed", f"seed must be between 0 and {MAX_SEED}, got {seed}")
        if width is None and height is None and task.input_size is not None and size is None:
            # An image task without a size runs at its input's size.
            width, height = task.input_size
        if width is not None and height is not None:
            tier = resolution or spec.default_resolution
            grid = spec.family.size_multiple
            if width % grid or height % grid:
                raise ParamError(
                    "size",
                    f"{width}x{height} is off model {spec.id!r}'s grid: "
                    f"sides must be multiples of {grid} px",
                )
        else:
            tier, width, height = resolve_size(spec, resolution, aspect_ratio, size)

        family = family_of(spec.family)
        check_family_fields(spec, prompt, negative_prompt, guidance)
        model = defaults.resolved(spec)
        steps = int(steps if steps is not None else model.steps)
        check_strength_steps(spec, steps, task)
        schedulers = family.schedulers_of(spec)
        chosen = scheduler if scheduler is not None else model.scheduler
        if chosen not in schedulers:
            raise ParamError(
                "scheduler", f"unknown scheduler {chosen!r}; known: {', '.join(schedulers)}"
            )

        return cls(
            model=spec.id,
            prompt=prompt,
            negative_prompt=negative_prompt or "",
            n=n,
            resolution=tier,
            width=width,
            height=height,
            seeds=expand_seeds(seed, n),
            steps=steps,
            guidance=float(guidance if guidance is not None else model.guidance),
            scheduler=chosen,
            style=style,
            task=task,
            adapter=adapter,
            sequence_length=family.sequence_length_of(spec),
            preview_every=preview_every if preview_every is not None else defaults.preview_every,
        )


def check_strength_steps(spec: ModelSpec, steps: int, task: TaskInputs) -> None:
    """Refuse an image task whose strength leaves its call no denoising step to run (SD and
    SDXL run ``steps × strength`` rounded down: 1 step at 0.6 is none, and the pipeline
    would fail on an empty batch), naming ``steps`` and the fewest that run one."""
    strength = task.denoise_strength
    strength_steps = family_of(spec.family).strength_steps
    if strength is None or steps < 1 or strength_steps(steps, strength) >= 1:
        return
    fewest = max(1, int(1 / strength))  # int(): 1 / 0.1 is 10.000000000000002
    while strength_steps(fewest, strength) < 1:
        fewest += 1
    raise ParamError(
        "steps",
        f"{steps} step(s) at strength {strength:g} leave model {spec.id!r} no denoising step "
        f"to run: ask for at least {fewest} steps, or a higher strength",
    )


def check_family_fields(
    spec: ModelSpec, prompt: str, negative_prompt: str | None, guidance: float | None
) -> None:
    """Refuse what ``spec``'s family would ignore or misread, naming the field: guidance on
    a model that takes none, a negative prompt without classifier-free guidance, A1111
    emphasis on an encoder that reads it as words (``pipelines/families/family.py``)."""
    family = family_of(spec.family)
    kind = family.guidance_of(spec)
    if guidance is not None and kind is GuidanceKind.NONE:
        raise ParamError("guidance", f"model {spec.id!r} takes no guidance; leave guidance out")
    if negative_prompt and kind is not GuidanceKind.CFG:
        raise ParamError(
            "negative_prompt",
            f"model {spec.id!r} runs without classifier-free guidance: "
            "a negative prompt would be ignored; leave it out",
        )
    if not family.emphasis:
        for name, text in (("prompt", prompt), ("negative_prompt", negative_prompt or "")):
            mark = emphasis_mark(text)
            if mark is not None:
                raise ParamError(
                    name,
                    f"{name} has emphasis syntax {mark!r}, which model {spec.id!r}'s text "
                    "encoder would read as words; write it as plain text",
                )


@dataclass(frozen=True)
class GenerationDefaults:
    """Server-wide defaults that sit between the request and the model's own defaults."""

    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    # Step previews of a request that does not ask (0: none; ``KILN_PREVIEW_EVERY``).
    preview_every: int = 0

    def resolved(self, spec: ModelSpec) -> GenerationDefaults:
        """What a request to ``spec`` that names none of these gets: the server's value
        where the model's family takes it, else the model's own (``/v1/models`` shows it).
        A server scheduler that no family takes is kept, so requests fail naming it."""
        scheduler = self.scheduler
        family = family_of(spec.family)
        takes = family.schedulers_of(spec)
        if scheduler is None or (scheduler in KNOWN_SCHEDULERS and scheduler not in takes):
            scheduler = spec.default_scheduler
        # The server's guidance is a CFG scale: an embedded guidance keeps the model's own,
        # a model without guidance records none (0).
        kind = family.guidance_of(spec)
        if kind is GuidanceKind.NONE:
            guidance = 0.0
        elif self.guidance is not None and kind is GuidanceKind.CFG:
            guidance = self.guidance
        else:
            guidance = spec.default_guidance
        return GenerationDefaults(
            steps=self.steps if self.steps is not None else spec.default_steps,
            guidance=guidance,
            scheduler=scheduler,
            preview_every=self.preview_every,
        )
