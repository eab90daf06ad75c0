"""A request's style: resolved once, for the caller, against the model it runs on.

    chosen = await styles.choose(tenant.id, "sty_…", strength=None, spec=spec)
    chosen.ref      # StyleRef for the pipeline (adapter name, file, strength)
    chosen.prompt("a harbour")  # the prompt with the style's trigger words

Rules, decided here:

- Another tenant's private style is unknown (404), as DESIGN.md §5 wants.
- A style runs on the model it was imported or trained for: a LoRA is shaped for one
  architecture, and checkpoints of one family may still differ (the tiny models do).
  Naming another model is a 400 on ``style``.
- ``style_strength`` defaults to the style's ``default_strength``.
- Trigger words are put in front of the prompt unless the prompt already has one of them,
  as LoRA trainers expect and a user would otherwise forget.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from pipelines.params import ParamError, StyleRef
from serving.core.styles.service import Styles
from styles.record import StyleRecord, style_file_path
from weights.catalog import ModelKind, ModelSpec

# Asset kind of a model's own images: instruct-edit and inpaint models make base-kind images.
MODEL_ASSET_KINDS = {ModelKind.BASE: "base", ModelKind.INSTRUCT: "base", ModelKind.INPAINT: "base"}


@dataclass(frozen=True)
class ChosenStyle:
    """A style resolved for one request."""

    record: StyleRecord
    ref: StyleRef

    def prompt(self, prompt: str) -> str:
        """``prompt`` with the trigger words in front, unless it already has one."""
        words = [w for w in self.record.trigger_words if w.strip()]
        lowered = prompt.lower()
        if not words or any(w.lower() in lowered for w in words):
            return prompt
        return f"{', '.join(words)}, {prompt}"


def asset_kind(spec: ModelSpec, style: ChosenStyle | None) -> str:
    """The asset kind of a generation: the style's (watermarked, licensed) or the model's."""
    return style.record.asset_kind if style is not None else MODEL_ASSET_KINDS[spec.kind]


class StyleChooser:
    """Styles as a request may use them: the caller's own and the shared ones."""

    def __init__(self, styles: Styles, styles_dir: Path) -> None:
        self.styles = styles
        self.styles_dir = styles_dir

    async def find(self, tenant_id: str, style_id: str) -> StyleRecord:
        """The style ``style_id`` as the caller may use it (404 otherwise)."""
        return await asyncio.to_thread(self.styles.resolve, tenant_id, style_id)

    def fit(self, record: StyleRecord, strength: float | None, spec: ModelSpec) -> ChosenStyle:
        """Check ``record`` fits ``spec``; the pipeline's reference to it at ``strength``."""
        if record.base_model != spec.id:
            raise ParamError(
                "style",
                f"style {record.id!r} is for model {record.base_model!r}, not {spec.id!r}",
            )
        path = style_file_path(self.styles_dir, record.sha256)
        strength = record.default_strength if strength is None else strength
        return ChosenStyle(record, StyleRef(record.id, str(path), float(strength)))

    async def choose(
        self, tenant_id: str, style_id: str, strength: float | None, spec: ModelSpec
    ) -> ChosenStyle:
        """``find`` then ``fit``."""
        return self.fit(await self.find(tenant_id, style_id), strength, spec)
