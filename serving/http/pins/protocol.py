"""Wire shapes of the pin routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from serving.core.pins.record import PinRecord


class PinCreate(BaseModel):
    """``POST /v1/pins``: 1-4 pictures of one character or product, as base64 (PNG, JPEG,
    WebP; a ``data:`` URL works) and/or ids of the caller's assets."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: str = Field(description="character | product")
    name: str = Field(description="1-200 characters")
    images: list[str] = Field(default_factory=list, description="base64 images")
    asset_ids: list[str] = Field(default_factory=list, description="the caller's asset ids")


class PinObject(BaseModel):
    """A pin of the caller: name it in ``pins`` of a generation on one of ``models``."""

    object: str = "pin"
    id: str
    kind: str
    name: str
    images: int = Field(description="how many pictures it was made from")
    pictures_kept: int = Field(
        description="how many of its pictures the pin keeps for models that take images "
        "(multi-reference); 0 for a pin made before Kiln kept them: create it again to "
        "use it on such a model"
    )
    models: list[str] = Field(
        description="models it applies to: those with its IP-Adapter, and, where it keeps "
        "its pictures, those that take them (FLUX)"
    )
    created: datetime

    @classmethod
    def of(cls, record: PinRecord, models: list[str]) -> PinObject:
        return cls(
            id=record.id,
            kind=record.kind,
            name=record.name,
            images=record.images,
            pictures_kept=len(record.pictures),
            models=models,
            created=record.created,
        )


class PinList(BaseModel):
    """The caller's pins, newest first."""

    object: str = "list"
    data: list[PinObject]
    has_more: bool = False


class DeletedPin(BaseModel):
    object: str = "pin.deleted"
    id: str
    deleted: bool = True
