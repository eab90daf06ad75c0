"""The style registry: LoRA styles in the ledger's database, their files under
``KILN_HOME/styles``, scoped to who may see them.

    record = styles.import_file(path, StyleImport("Ink wash", "tiny-sd15"), owner=tenant_id)
    styles.resolve(tenant_id, record.id)   # UnknownStyle (404) unless visible to the tenant
    styles.list(tenant_id)                 # artist styles + the tenant's own private ones
    styles.file_path(record)               # KILN_HOME/styles/<sha256>.safetensors

Rules:

- An artist style (``owner=None``) is everyone's; a private style is its owner's alone.
  Another tenant's private style is *unknown*, never "forbidden", so its existence does
  not leak (DESIGN.md §5). Who may create an artist style (the admin) is the caller's
  check: the HTTP route and the CLI, which both know who is asking.
- Importing validates everything first (fields, then the file: ``styles.lora_file``) and
  stores nothing on a refusal: no row, no file. The file goes in before its row, so a row
  never names a missing file; if the row cannot be written, a file this import created
  and no other row names is removed again.
- Files are shared by content: two styles of the same bytes name one file, and deleting
  a style removes its file only when no other style names it.
- Trained private styles register through ``import_file`` too: the training job's file
  gets the same checks as an upload.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, func, insert, or_, select

from pipelines.params import ParamError
from serving.ledger.ledger import as_utc
from serving.ledger.schema import styles, tenants
from serving.ledger.types import UnknownTenant
from serving.settings import Settings
from styles.lora_file import inspect_lora, store_lora_file
from styles.record import (
    DEFAULT_STRENGTH,
    MAX_STRENGTH,
    MIN_STRENGTH,
    STYLE_KINDS,
    StyleRecord,
    new_style_id,
    style_file_path,
)
from weights.catalog import Catalog

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 200
MAX_TRIGGER_WORDS = 16
MAX_TRIGGER_CHARS = 64


class UnknownStyle(LookupError):
    """No style with this id that the tenant may use (another's private one counts as
    none: HTTP 404)."""

    def __init__(self, style_id: str) -> None:
        super().__init__(f"no style {style_id!r}")
        self.style_id = style_id


class StyleAdminOnly(PermissionError):
    """An artist style changed by a tenant's key: only the admin may (HTTP 403)."""

    def __init__(self, action: str) -> None:
        super().__init__(f"{action} an artist style needs the admin key")


@dataclass(frozen=True)
class StyleImport:
    """What an import asks for, before any of it is checked."""

    name: str
    base_model: str
    kind: str = "private"
    trigger_words: tuple[str, ...] = ()
    default_strength: float = DEFAULT_STRENGTH

    def checked(self) -> StyleImport:
        """The same request cleaned up (names and words stripped, duplicates dropped);
        raises ``ParamError`` naming the first bad field."""
        name = self.name.strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise ParamError("name", f"name must be 1-{MAX_NAME_CHARS} characters")
        if self.kind not in STYLE_KINDS:
            raise ParamError("kind", f"kind must be one of {', '.join(STYLE_KINDS)}")
        words: list[str] = []
        for word in self.trigger_words:
            word = word.strip()
            if not word or len(word) > MAX_TRIGGER_CHARS:
                raise ParamError(
                    "trigger_words", f"each trigger word must be 1-{MAX_TRIGGER_CHARS} characters"
                )
            if word not in words:
                words.append(word)
        if len(words) > MAX_TRIGGER_WORDS:
            raise ParamError("trigger_words", f"at most {MAX_TRIGGER_WORDS} trigger words")
        strength = float(self.default_strength)
        if not MIN_STRENGTH <= strength <= MAX_STRENGTH:
            raise ParamError(
                "default_strength",
                f"default_strength must be {MIN_STRENGTH}-{MAX_STRENGTH}, got {strength}",
            )
        return StyleImport(name, self.base_model, self.kind, tuple(words), strength)


class Styles:
    """Style records in the database at ``engine``, files under ``styles_dir``.

    Blocking I/O (database, files, torch for the validation): call off the event loop.
    """

    def __init__(
        self,
        engine: Engine,
        catalog: Catalog,
        styles_dir: Path,
        *,
        max_bytes: int,
        max_rank: int,
    ) -> None:
        self.engine = engine
        self.catalog = catalog
        self.styles_dir = styles_dir
        self.max_bytes = max_bytes
        self.max_rank = max_rank

    @classmethod
    def from_settings(cls, engine: Engine, catalog: Catalog, settings: Settings) -> Styles:
        """The registry with ``KILN_HOME/styles`` and the limits of ``settings``."""
        return cls(
            engine,
            catalog,
            settings.styles_dir,
            max_bytes=settings.style_max_bytes,
            max_rank=settings.style_max_rank,
        )

    def import_file(self, path: Path, request: StyleImport, owner: str | None) -> StyleRecord:
        """Validate the LoRA at ``path`` for ``request.base_model``, store it, register it.

        ``owner`` is the tenant of a private style and None for an artist one. Raises
        ``ParamError`` (a bad field), ``UnknownModelError``, ``UnknownTenant``,
        ``StyleFileError`` (the file; ``StyleFileTooLarge`` for its size); nothing is
        stored then.
        """
        request = request.checked()
        if (request.kind == "private") != (owner is not None):
            raise ParamError("kind", "a private style has an owner; an artist style has none")
        spec = self.catalog.get(request.base_model)
        if owner is not None:
            self._check_tenant(owner)
        info = inspect_lora(path, spec, max_bytes=self.max_bytes, max_rank=self.max_rank)
        record = StyleRecord(
            id=new_style_id(),
            name=request.name,
            kind=request.kind,
            owner=owner,
            family=info.family,
            base_model=spec.id,
            sha256=info.sha256,
            rank=info.rank,
            trigger_words=request.trigger_words,
            default_strength=request.default_strength,
            created=datetime.now(UTC),
        )
        stored, created = store_lora_file(path, self.styles_dir, info.sha256)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(styles).values(**_row(record)))
        except BaseException:
            if created:
                self._remove_file_unless_named(info.sha256)
            raise
        logger.info(
            "imported %s style %s (%s, %s layout, rank %d, %d layers) for %s",
            record.kind, record.id, spec.id, info.layout, info.rank, info.layers,
            owner or "everyone",
        )  # fmt: skip
        return record

    def get(self, tenant_id: str, style_id: str) -> StyleRecord:
        """The style ``style_id`` if ``tenant_id`` may use it; ``UnknownStyle`` otherwise
        (also for another tenant's private style)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(styles).where(styles.c.id == style_id, _visible_to(tenant_id))
            ).one_or_none()
        if row is None:
            raise UnknownStyle(style_id)
        return _record(row._mapping)

    def resolve(self, tenant_id: str, style_id: str) -> StyleRecord:
        """The style a generation of ``tenant_id`` asks for by id: as ``get`` (404
        semantics included). Its LoRA file is ``file_path(record)``."""
        return self.get(tenant_id, style_id)

    def list(self, tenant_id: str) -> list[StyleRecord]:
        """Every style ``tenant_id`` may use, newest first: artist styles and its own."""
        query = select(styles).where(_visible_to(tenant_id))
        with self.engine.begin() as conn:
            rows = conn.execute(query.order_by(styles.c.created.desc(), styles.c.id.desc()))
            return [_record(row._mapping) for row in rows]

    def all(self) -> list[StyleRecord]:
        """Every style of every tenant, newest first (for the admin's command line)."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(styles).order_by(styles.c.created.desc(), styles.c.id.desc())
            )
            return [_record(row._mapping) for row in rows]

    def delete(self, tenant_id: str, style_id: str, *, admin: bool = False) -> StyleRecord:
        """Delete a style: its owner may delete a private one, the admin any. Its file
        goes when no other style names it. ``UnknownStyle`` for a style the caller cannot
        see, ``StyleAdminOnly`` for an artist style without ``admin``."""
        with self.engine.begin() as conn:
            where = styles.c.id == style_id
            if not admin:
                where = where & _visible_to(tenant_id)
            row = conn.execute(select(styles).where(where)).one_or_none()
            if row is None:
                raise UnknownStyle(style_id)
            record = _record(row._mapping)
            if record.kind == "artist" and not admin:
                raise StyleAdminOnly("deleting")
            conn.execute(delete(styles).where(styles.c.id == style_id))
        self._remove_file_unless_named(record.sha256)
        return record

    def file_path(self, record: StyleRecord) -> Path:
        """The LoRA file of ``record`` (what ``load_lora_weights`` is given)."""
        return style_file_path(self.styles_dir, record.sha256)

    def _check_tenant(self, tenant_id: str) -> None:
        with self.engine.begin() as conn:
            found = conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id)).first()
        if found is None:
            raise UnknownTenant(tenant_id)

    def _remove_file_unless_named(self, sha256: str) -> None:
        with self.engine.begin() as conn:
            named = conn.execute(
                select(func.count()).select_from(styles).where(styles.c.sha256 == sha256)
            ).scalar_one()
        if not named:
            style_file_path(self.styles_dir, sha256).unlink(missing_ok=True)


def _visible_to(tenant_id: str) -> Any:
    return or_(styles.c.kind == "artist", styles.c.owner_tenant_id == tenant_id)


def _row(record: StyleRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "kind": record.kind,
        "owner_tenant_id": record.owner,
        "family": record.family,
        "base_model": record.base_model,
        "sha256": record.sha256,
        "rank": record.rank,
        "trigger_words": json.dumps(list(record.trigger_words)),
        "default_strength": record.default_strength,
        "created": record.created,
    }


def _record(row: Any) -> StyleRecord:
    return StyleRecord(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        owner=row["owner_tenant_id"],
        family=row["family"],
        base_model=row["base_model"],
        sha256=row["sha256"],
        rank=row["rank"],
        trigger_words=tuple(json.loads(row["trigger_words"])),
        default_strength=row["default_strength"],
        created=as_utc(row["created"]),
    )
