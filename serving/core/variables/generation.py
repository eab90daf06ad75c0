"""Generations: prompt and defaults, pins, agentic rounds, credits held per tenant.

Each field declares one environment variable (``env_field``: name, parser, help);
``Settings`` (serving/core/settings.py) inherits them, and README.md's configuration
table is generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.env_fields import (
    env_field,
    flag,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from serving.core.scheduling.fair_queue import parse_class_weights


def _class_weights(text: str) -> str:
    parse_class_weights(text)  # refuse an unknown class or a weight out of range
    return text


def _preview_every(text: str) -> int:
    from pipelines.previews import MAX_PREVIEW_EVERY

    value = non_negative_int(text)
    if value > MAX_PREVIEW_EVERY:
        raise ValueError(f"must be 0 (off) to {MAX_PREVIEW_EVERY} steps, got {value}")
    return value


def _adapter_scale(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 2.0:
        raise ValueError(f"must be an IP-Adapter scale (0-2), got {value}")
    return value


# Where the fair queue's scheduler runs (serving/ray/app.py's ``admission``).
SCHEDULER_PLACES = ("auto", "process", "actor")


def _scheduler_place(text: str) -> str:
    if text not in SCHEDULER_PLACES:
        raise ValueError(f"must be one of {', '.join(SCHEDULER_PLACES)}, got {text!r}")
    return text


@dataclass(frozen=True)
class GenerationVariables:
    """Generations: prompt and defaults, pins, agentic rounds, credits held per tenant."""

    # fmt: off
    max_prompt_chars: int = env_field(
        "KILN_MAX_PROMPT_CHARS", 4000, parse=positive_int,
        help="longest prompt, in characters (default 4000)",
    )
    default_steps: int | None = env_field(
        "KILN_DEFAULT_STEPS", None, parse=positive_int,
        help="steps of a request that does not ask (default: the model's)",
    )
    default_guidance: float | None = env_field(
        "KILN_DEFAULT_GUIDANCE", None, parse=non_negative_float,
        help="guidance of a request that does not ask (default: the model's)",
    )
    default_scheduler: str | None = env_field(
        "KILN_DEFAULT_SCHEDULER", None, parse=str,
        help="scheduler of a request that does not ask (default: the model's)",
    )
    preview_every: int = env_field(
        "KILN_PREVIEW_EVERY", 0, parse=_preview_every,
        help="a step preview every this many steps for a request that does not ask "
        "(0-1000; default 0: none; job events and OpenAI streaming carry them)",
    )
    pin_scale_character: float = env_field(
        "KILN_PIN_SCALE_CHARACTER", 0.7, parse=_adapter_scale,
        help="IP-Adapter scale of a character pin in a generation, 0-2 (default 0.7)",
    )
    pin_scale_product: float = env_field(
        "KILN_PIN_SCALE_PRODUCT", 0.6, parse=_adapter_scale,
        help="IP-Adapter scale of a product pin in a generation, 0-2 (default 0.6)",
    )
    agentic_max_candidates: int = env_field(
        "KILN_AGENTIC_MAX_CANDIDATES", 4, parse=positive_int,
        help="most candidates an agentic generation may ask per kept image (default 4)",
    )
    agentic_max_rounds: int = env_field(
        "KILN_AGENTIC_MAX_ROUNDS", 3, parse=non_negative_int,
        help="most refinement rounds an agentic generation may ask (default 3)",
    )
    tenant_max_concurrent: int | None = env_field(
        "KILN_TENANT_MAX_CONCURRENT", None, parse=positive_int,
        help="generation requests a tenant may have running at once, across all ingress replicas "
        "(counted in the database; default: no cap)",
    )
    tenant_max_queued_images: int | None = env_field(
        "KILN_TENANT_MAX_QUEUED_IMAGES", None, parse=positive_int,
        help="images a tenant may have queued or running on one model; more answer 429 with "
        "nothing reserved (default: no quota; the admin API sets a tenant's own)",
    )
    fair_queue: bool = env_field(
        "KILN_FAIR_QUEUE", True, parse=flag,
        help="admit calls to each model through its fair queue: priority classes, deficit round "
        "robin across tenants by images (default on; `0` sends calls straight to the replicas)",
    )
    scheduler: str = env_field(
        "KILN_SCHEDULER", "auto", parse=_scheduler_place,
        help="where each model's fair queue runs: `process` (in the one HTTP process: no hop), "
        "`actor` (a named Ray actor per model that every ingress replica shares), or `auto` "
        "(default: `process` under `kiln serve`'s own HTTP front, `actor` under Ray Serve's)",
    )
    scheduler_class_weights: str = env_field(
        "KILN_SCHEDULER_CLASS_WEIGHTS", "interactive=4,batch=1", parse=_class_weights,
        help="share of a model's images each priority class gets when both are queued "
        "(default `interactive=4,batch=1`: batch work gets a fifth, never starved)",
    )
    reservation_lease_s: float = env_field(
        "KILN_RESERVATION_LEASE_S", 600.0, parse=positive_float,
        help="seconds a credit reservation stays held without a renewal; live requests and jobs "
        "renew theirs, the sweeper releases expired ones (default 600)",
    )
    # fmt: on
