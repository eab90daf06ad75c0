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
- Importing validates everything first (fields, then the file: ``styles.lora_fit``) and
  stores nothing on a refusal: no row, no file. A row never names a missing file: the row
  is written and the file put in place in one transaction; if the transaction fails, a
  file this import created and no other row names is removed again.
- Files are shared by content: two styles of the same bytes name one file, and deleting
  a style removes its file only when no other style names it. Imports and deletes of the
  same bytes take turns on the file (``serving.core.styles.files``), so a delete never
  removes the file of a style an import of the same bytes is registering.
- A tenant's own imports (``within_quota``: the upload route with a tenant's key) are
  bounded by ``StyleQuota`` (``serving.core.styles.quota``); trained styles and the admin's
  imports count toward it but are never refused by it (training is paid for, and
  refusing its result would waste it). The check and the row are one transaction, under
  a lock on the tenant's row (SQLite: the write lock), so imports in parallel at the
  edge cannot both pass.
- Trained private styles register through ``import_file`` too: the training job's file
  gets the same checks as an upload.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, or_, select

from pipelines.param_error import check_text
from pipelines.params import ParamError
from serving.core.errors import KilnError
from serving.core.features import require_feature
from serving.core.ledger.db import read_only
from serving.core.ledger.ledger import as_utc
from serving.core.ledger.schema import styles, tenants
from serving.core.ledger.types import UnknownTenant
from serving.core.settings import Settings
from serving.core.styles.files import is_named, lock_file, set_aside
from serving.core.styles.quota import StyleQuota, StyleUsage, usage_of
from styles.lora_file import stage_lora_file, store_lora_file
from styles.lora_fit import inspect_lora
from styles.record import (
    DEFAULT_STRENGTH,
    MAX_STRENGTH,
    MIN_STRENGTH,
    StyleKind,
    StyleRecord,
    new_style_id,
    style_file_path,
)
from weights.catalog import Catalog, ModelKind

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 200
MAX_TRIGGER_WORDS = 16
MAX_TRIGGER_CHARS = 64


class UnknownStyle(KilnError):
    """No style with this id that the tenant may use (another's private one counts as
    none: 404 ``style_not_found``)."""

    def __init__(self, style_id: str) -> None:
        super().__init__(404, f"no style {style_id!r}", code="style_not_found")
        self.style_id = style_id


class StyleAdminOnly(KilnError):
    """An artist style changed by a tenant's key: only the admin may (403)."""

    def __init__(self, action: str) -> None:
        super().__init__(
            403, f"{action} an artist style needs the admin key", code="admin_required"
        )


@dataclass(frozen=True)
class StyleImport:
    """What an import asks for, before any of it is checked."""

    name: str
    base_model: str
    kind: str = StyleKind.PRIVATE
    trigger_words: tuple[str, ...] = ()
    default_strength: float = DEFAULT_STRENGTH

    def checked(self) -> StyleImport:
        """The same request cleaned up (names and words stripped, duplicates dropped);
        raises ``ParamError`` naming the first bad field."""
        name = check_text("name", self.name.strip())
        if not name or len(name) > MAX_NAME_CHARS:
            raise ParamError("name", f"name must be 1-{MAX_NAME_CHARS} characters")
        if self.kind not in tuple(StyleKind):
            raise ParamError("kind", f"kind must be one of {', '.join(StyleKind)}")
        words: list[str] = []
        for word in self.trigger_words:
            word = check_text("trigger_words", word.strip())
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
    """Style records in the database at ``engine``, files under ``styles_dir``; ``quota``
    bounds imports ``within_quota`` (None: no bound).

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
        quota: StyleQuota | None = None,
    ) -> None:
        self.engine = engine
        self.catalog = catalog
        self.styles_dir = styles_dir
        self.max_bytes = max_bytes
        self.max_rank = max_rank
        self.quota = quota

    @classmethod
    def from_settings(cls, engine: Engine, catalog: Catalog, settings: Settings) -> Styles:
        """The registry with ``KILN_HOME/styles`` and the limits of ``settings``."""
        return cls(
            engine,
            catalog,
            settings.styles_dir,
            max_bytes=settings.style_max_bytes,
            max_rank=settings.style_max_rank,
            quota=StyleQuota(settings.style_imports_max, settings.style_imports_max_bytes),
        )

    def import_file(
        self, path: Path, request: StyleImport, owner: str | None, *, within_quota: bool = False
    ) -> StyleRecord:
        """Validate the LoRA at ``path`` for ``request.base_model``, store it, register it.

        ``owner`` is the tenant of a private style and None for an artist one;
        ``within_quota``: a tenant's own import, bounded by ``quota`` (the upload route
        with a tenant's key; not training, not the admin). Raises ``ParamError`` (a bad
        field), ``UnknownModelError``, ``UnknownTenant``, ``StyleQuotaExceeded``,
        ``StyleFileError`` (the file; ``StyleFileTooLarge`` for its size); nothing is
        stored then.
        """
        request = request.checked()
        if (request.kind == StyleKind.PRIVATE) != (owner is not None):
            raise ParamError("kind", "a private style has an owner; an artist style has none")
        spec = self.catalog.get(request.base_model)
        require_feature(self.catalog, spec, "styles", "base_model")
        quota = self.quota if within_quota and owner is not None else None
        if owner is not None:
            # An unknown tenant or a full quota is refused before the file is parsed (a
            # read: it waits for no writer); the check that counts is made with the row.
            with read_only(self.engine).begin() as conn:
                self._admit(conn, owner, path.stat().st_size, quota)
        info = inspect_lora(
            path,
            spec,
            max_bytes=self.max_bytes,
            max_rank=self.max_rank,
            installed=[s for s in self.catalog if s.kind == ModelKind.BASE],
        )
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
        # The copy is made outside the transaction, so the lock is held for one rename,
        # not for writing up to KILN_STYLE_MAX_BYTES.
        target = style_file_path(self.styles_dir, info.sha256)
        staged = None if target.is_file() else stage_lora_file(path, self.styles_dir)
        created = False
        try:
            with self.engine.begin() as conn:
                if owner is not None:
                    self._admit(conn, owner, info.bytes, quota, lock=True)
                lock_file(conn, info.sha256)
                conn.execute(insert(styles).values(**_row(record)))
                # Under the file's lock: a delete of the last style of these bytes has
                # either removed the file (so it is stored again here) or waits for this
                # row, which will name it.
                _, created = store_lora_file(path, self.styles_dir, info.sha256, staged=staged)
        except BaseException:
            if created:
                self._remove_file_unless_named(info.sha256)
            raise
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        logger.info(
            "imported %s style %s (%s, %s layout, rank %d, %d layers) for %s",
            record.kind, record.id, spec.id, info.layout, info.rank, info.layers,
            owner or "everyone",
        )  # fmt: skip
        return record

    def usage(self, tenant_id: str) -> StyleUsage:
        """What ``tenant_id``'s private styles hold, as the quota counts it."""
        with read_only(self.engine).begin() as conn:
            return usage_of(conn, self.styles_dir, tenant_id)

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
        aside: Path | None = None
        try:
            with self.engine.begin() as conn:
                where = styles.c.id == style_id
                if not admin:
                    where = where & _visible_to(tenant_id)
                row = conn.execute(select(styles).where(where)).one_or_none()
                if row is None:
                    raise UnknownStyle(style_id)
                record = _record(row._mapping)
                if record.kind == StyleKind.ARTIST and not admin:
                    raise StyleAdminOnly("deleting")
                lock_file(conn, record.sha256)
                conn.execute(delete(styles).where(styles.c.id == style_id))
                if not is_named(conn, record.sha256):
                    # Moved aside under the lock and removed once the delete is
                    # committed: an import of these bytes after this point stores them
                    # anew, and a failed commit puts the file back for the row it keeps.
                    aside = set_aside(self.file_path(record))
        except BaseException:
            if aside is not None:
                os.replace(aside, self.file_path(record))
            raise
        if aside is not None:
            aside.unlink(missing_ok=True)
        return record

    def file_path(self, record: StyleRecord) -> Path:
        """The LoRA file of ``record`` (what ``load_lora_weights`` is given)."""
        return style_file_path(self.styles_dir, record.sha256)

    def _admit(
        self,
        conn: Connection,
        owner: str,
        size: int,
        quota: StyleQuota | None,
        *,
        lock: bool = False,
    ) -> None:
        """``UnknownTenant`` unless ``owner`` exists; ``StyleQuotaExceeded`` if one more
        style of ``size`` bytes would pass ``quota``. With ``lock`` the tenant's row stays
        locked until the transaction ends (PostgreSQL; SQLite's write lock already
        serialises), so parallel imports of one tenant are counted one after another."""
        query = select(tenants.c.id).where(tenants.c.id == owner)
        if lock:
            query = query.with_for_update()
        if conn.execute(query).first() is None:
            raise UnknownTenant(owner)
        if quota is not None:
            quota.check(usage_of(conn, self.styles_dir, owner), size)

    def _remove_file_unless_named(self, sha256: str) -> None:
        with self.engine.begin() as conn:
            lock_file(conn, sha256)
            if not is_named(conn, sha256):
                style_file_path(self.styles_dir, sha256).unlink(missing_ok=True)


def _visible_to(tenant_id: str) -> Any:
    return or_(styles.c.kind == StyleKind.ARTIST, styles.c.owner_tenant_id == tenant_id)


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
