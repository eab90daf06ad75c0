"""Frozen parameter objects: what a pipeline call needs, resolved once from a request.

Precedence for every optional field: the request, then server settings, then the model's
catalog defaults. ``GenerationParams.build`` applies it; after that nothing re-reads the
request.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from pipelines.schedulers import SCHEDULERS
from weights.catalog import ModelSpec

MAX_IMAGES = 12
MAX_SEED = 2**32 - 1


class ParamError(ValueError):
    """An invalid generation parameter; ``param`` names the request field."""

    def __init__(self, param: str, message: str):
        self.param = param
        super().__init__(message)


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


@dataclass(frozen=True)
class BatchKey:
    """Every call argument but prompt and seed: requests with equal keys share a call.

    A style and its strength are part of the key: batches never mix styles."""

    model: str
    task: str
    width: int
    height: int
    steps: int
    guidance: float
    scheduler: str
    style: str | None = None
    style_strength: float = 0.0


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
    task: str = "text_to_image"
    style: StyleRef | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.n <= MAX_IMAGES:
            raise ParamError("n", f"n must be between 1 and {MAX_IMAGES}, got {self.n}")
        if len(self.seeds) != self.n:
            raise ParamError("seed", f"need {self.n} seeds, got {len(self.seeds)}")
        if self.steps < 1:
            raise ParamError("steps", f"steps must be at least 1, got {self.steps}")
        if self.guidance < 0:
            raise ParamError("guidance", f"guidance must not be negative, got {self.guidance}")
        if self.scheduler not in SCHEDULERS:
            raise ParamError(
                "scheduler",
                f"unknown scheduler {self.scheduler!r}; known: {', '.join(SCHEDULERS)}",
            )

    @property
    def batch_key(self) -> BatchKey:
        style = self.style
        return BatchKey(
            self.model, self.task, self.width, self.height, self.steps, self.guidance,
            self.scheduler, style.id if style else None, style.strength if style else 0.0,
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
    ) -> GenerationParams:
        """Resolve a request against server defaults, then the model's catalog defaults."""
        defaults = defaults or GenerationDefaults()
        if not prompt.strip():
            raise ParamError("prompt", "prompt must not be empty for text-to-image")
        if not 1 <= n <= MAX_IMAGES:
            raise ParamError("n", f"n must be between 1 and {MAX_IMAGES}, got {n}")
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise ParamError("seed", f"seed must be between 0 and {MAX_SEED}, got {seed}")
        tier, width, height = resolve_size(spec, resolution, aspect_ratio, size)

        def pick(value, server, model):
            return value if value is not None else server if server is not None else model

        return cls(
            model=spec.id,
            prompt=prompt,
            negative_prompt=negative_prompt or "",
            n=n,
            resolution=tier,
            width=width,
            height=height,
            seeds=expand_seeds(seed, n),
            steps=int(pick(steps, defaults.steps, spec.default_steps)),
            guidance=float(pick(guidance, defaults.guidance, spec.default_guidance)),
            scheduler=str(pick(scheduler, defaults.scheduler, spec.default_scheduler)),
            style=style,
        )


@dataclass(frozen=True)
class GenerationDefaults:
    """Server-wide defaults that sit between the request and the model's own defaults."""

    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
