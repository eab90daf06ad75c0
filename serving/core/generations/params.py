"""A request's sampling knobs and their one conversion into ``GenerationParams``.

Every image request (native and OpenAI generations, edits, variations, batch lines)
resolves its pipeline call here, once, with the precedence *request → server settings →
model defaults* (DESIGN.md §3); no later layer reads the request again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pipelines.params import GenerationParams, ParamError, StyleRef
from pipelines.previews import spread_every
from serving.core.settings import Settings
from weights.catalog import ModelSpec

# A ceiling on steps so one request cannot hold a replica for an hour (the wire models
# bound their ``steps`` fields by it).
MAX_STEPS = 200


def check_prompt(prompt: str | None, param: str, max_chars: int) -> None:
    """Reject prompts longer than the server allows (before tokenising anything)."""
    if prompt is not None and len(prompt) > max_chars:
        raise ParamError(param, f"{param} is {len(prompt)} characters; the limit is {max_chars}")


@dataclass(frozen=True)
class Sampling:
    """Kiln's sampling knobs, shared by every image request; None: the server's or the
    model's default."""

    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    # A step preview every this many steps (0: none; None: ``KILN_PREVIEW_EVERY``).
    preview_every: int | None = None
    # OpenAI's ``partial_images`` of a streamed answer: previews spread over the call's
    # resolved steps (``pipelines.previews.spread_every``); wins over the above.
    partial_images: int | None = None


def build_params(
    spec: ModelSpec,
    settings: Settings,
    sampling: Sampling,
    *,
    prompt: str,
    n: int,
    style: StyleRef | None = None,
    **call: Any,
) -> GenerationParams:
    """Check prompt lengths, then resolve everything once into ``GenerationParams``
    (``ParamError`` names the bad field).

    ``call``: the size (``resolution``/``aspect_ratio``/``size``, or ``width`` and
    ``height`` for image tasks) and the task's fields (``GenerationParams.build``)."""
    check_prompt(prompt, "prompt", settings.max_prompt_chars)
    check_prompt(sampling.negative_prompt, "negative_prompt", settings.max_prompt_chars)
    params = GenerationParams.build(
        spec,
        prompt=prompt,
        negative_prompt=sampling.negative_prompt,
        n=n,
        seed=sampling.seed,
        steps=sampling.steps,
        guidance=sampling.guidance,
        scheduler=sampling.scheduler,
        preview_every=sampling.preview_every,
        defaults=settings.generation_defaults,
        style=style,
        **call,
    )
    if sampling.partial_images is not None:
        # An image task at a strength runs that share of its steps (as diffusers counts).
        strength = getattr(params.task, "strength", None)
        runs = params.steps if strength is None else max(1, int(params.steps * strength))
        every = spread_every(runs, sampling.partial_images)
        params = dataclasses.replace(params, preview_every=every)
    return params
