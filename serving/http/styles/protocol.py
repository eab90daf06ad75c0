"""Wire shapes of the style routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from serving.core.objects import style_object
from styles.record import StyleRecord


class StyleObject(BaseModel):
    """A LoRA style the caller may use: name it as ``style`` in a generation (or as
    ``model`` on the OpenAI routes); it runs on ``base_model``."""

    object: str = "style"
    id: str
    name: str
    kind: str = Field(description="artist (everyone's) | private (the owner's alone)")
    owner: str | None = Field(description="the owning tenant of a private style")
    base_model: str = Field(description="the catalog model the style runs on")
    family: str
    rank: int = Field(description="the LoRA's largest rank")
    trigger_words: list[str] = Field(description="put in front of prompts that lack them")
    default_strength: float = Field(description="style_strength unless a request says")
    sha256: str = Field(description="SHA-256 of the LoRA .safetensors file")
    created: datetime

    @classmethod
    def of(cls, record: StyleRecord) -> StyleObject:
        # From the core's shape, which a training job's result stores: they cannot drift.
        return cls.model_validate(style_object(record))


class StyleList(BaseModel):
    """Every style the caller may use, newest first: artist styles and its own."""

    object: str = "list"
    data: list[StyleObject]
    has_more: bool = False


class DeletedStyle(BaseModel):
    object: str = "style.deleted"
    id: str
    deleted: bool = True
