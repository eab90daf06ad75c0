"""The schedulers a request may name, by Kiln's short name: ``SCHEDULERS`` is the
discrete-time table the SD families take (``pipelines/families``); a family names its
own table and ``make_scheduler`` builds from it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# name -> (diffusers class name, config overrides). Kept to classes that work with a list
# of per-image generators, so every image of a batch is reproducible from its own seed.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
}


def make_scheduler(
    name: str, base_config: Any, table: Mapping[str, tuple[str, dict[str, Any]]]
) -> Any:
    """A fresh scheduler of the named kind (from ``table``, the model family's) from a
    pipeline's scheduler config."""
    import diffusers

    try:
        class_name, overrides = table[name]
    except KeyError:
        raise KeyError(f"unknown scheduler {name!r}; known: {', '.join(table)}") from None
    cls = getattr(diffusers, class_name)
    return cls.from_config(base_config, **overrides)
