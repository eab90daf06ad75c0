"""The style record: a LoRA on a base model, owned by everyone (artist) or one tenant
(private). ``serving/`` persists records; ``styles/`` never imports ``serving/``.

    StyleRecord(id="sty_…", name="Ink wash", kind="artist", owner=None, family="sd15",
                base_model="tiny-sd15", sha256="…", rank=4, trigger_words=("inkwash",),
                default_strength=0.8, created=…)

The LoRA file lives at ``KILN_HOME/styles/<sha256>.safetensors`` (``style_file_path``):
named by content, so importing the same file twice stores it once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from weights.catalog import STYLE_ID_PREFIX


class StyleKind(StrEnum):
    """Whose a style is: an artist style is everyone's (the admin imports it, images made
    with it need a license), a private style its owner's. A ``StrEnum``: rows and the wire
    keep the same text."""

    ARTIST = "artist"
    PRIVATE = "private"


# Where a style's strength may go: 0 turns it off, above 1 exaggerates it.
MIN_STRENGTH = 0.0
MAX_STRENGTH = 2.0
DEFAULT_STRENGTH = 1.0


@dataclass(frozen=True)
class StyleRecord:
    """A style as every layer sees it."""

    id: str
    name: str
    kind: StyleKind
    owner: str | None  # the tenant of a private style; None for artist styles
    family: str  # the base model family the LoRA fits (sd15, sdxl)
    base_model: str  # the catalog model it was imported or trained for
    sha256: str  # of the LoRA .safetensors file
    rank: int
    trigger_words: tuple[str, ...]
    default_strength: float
    created: datetime

    def __post_init__(self) -> None:
        if self.kind not in tuple(StyleKind):
            raise ValueError(
                f"unknown style kind {str(self.kind)!r}; known: {', '.join(StyleKind)}"
            )
        # A row's text becomes the member: every layer compares with members.
        object.__setattr__(self, "kind", StyleKind(self.kind))
        if (self.kind == StyleKind.PRIVATE) != (self.owner is not None):
            raise ValueError("a private style has an owner; an artist style has none")
        if not MIN_STRENGTH <= self.default_strength <= MAX_STRENGTH:
            raise ValueError(
                f"default_strength must be {MIN_STRENGTH}-{MAX_STRENGTH}, "
                f"got {self.default_strength}"
            )

    @property
    def asset_kind(self) -> str:
        """The asset kind of images made with this style (``artist_style``/``private_style``)."""
        return f"{self.kind}_style"

    def visible_to(self, tenant_id: str) -> bool:
        """Artist styles are everyone's; a private style only its owner's."""
        return self.kind == StyleKind.ARTIST or self.owner == tenant_id


def new_style_id() -> str:
    """A fresh style id."""
    return f"{STYLE_ID_PREFIX}{secrets.token_hex(12)}"


def is_style_id(name: str) -> bool:
    """Whether ``name`` is shaped like a style id (not whether the style exists)."""
    return name.startswith(STYLE_ID_PREFIX)


def style_file_path(styles_dir: Path, sha256: str) -> Path:
    """Where the LoRA file with this SHA-256 is kept."""
    return styles_dir / f"{sha256}.safetensors"
