"""What a generation asks, as the core takes it: frozen, typed, free of any wire format.

The HTTP wire models convert themselves into these once (``to_order()``); batch lines
and jobs build them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from serving.core.generations.params import Sampling
from serving.core.image_inputs import ImageSource
from serving.core.image_to_prompt.orders import ExtractOrder


@dataclass(frozen=True)
class ReferenceOrder:
    """A reference image that guides a generation: ``img2img`` starts from it at
    ``strength`` (0 keeps it, 1 ignores it); ``ip_adapter`` steers by its look at
    ``scale``."""

    source: ImageSource
    mode: str = "img2img"
    strength: float = 0.6
    scale: float = 0.6


@dataclass(frozen=True)
class GenerationOrder:
    """A generation (native ``POST /v1/generations``, a batch line; OpenAI's too).

    ``model`` None: the model of ``style`` where one is named, else the catalog's first
    (OpenAI's rule: its ``model`` may name a style). ``size`` (``"WxH"`` or ``"auto"``) is
    OpenAI's alternative to ``resolution`` and ``aspect_ratio``."""

    model: str | None
    prompt: str | None
    n: int = 1
    resolution: str | None = None
    aspect_ratio: str | None = None
    size: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    style: str | None = None
    style_strength: float | None = None
    reference: ReferenceOrder | None = None
    pins: tuple[str, ...] = ()
    image_to_prompt: ExtractOrder | None = None
