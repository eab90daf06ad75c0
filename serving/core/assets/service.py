"""Assets: every delivered image, stored with how it was made, scoped to its tenant.

    asset, finished = assets.create(tenant_id, ImageRecord(...), pixels)
    assets.get(tenant_id, asset.id)           # UnknownAsset for anyone else's: 404, not 403
    assets.original(tenant_id, asset.id)      # LicenseRequired for unlicensed style kinds
    assets.delete(tenant_id, asset.id)        # files go when no other asset shares them

Rows live in the ledger's database (``assets``), files in a ``BlobStore`` by SHA-256.
The license rule (DESIGN.md §1): base and agentic images are free, their preview *is*
the original; artist- and private-style images get a preview under a visible tiled mark,
and their original is served only once the tenant holds a license for it. Every original
carries the invisible provenance mark, whose payload is derived from the request (model,
style, prompt, seed, parameters), so the same request still gives the same pixels.
Every asset records its model provider's terms (``ImageRecord.terms``, the catalog
entry's ``ProviderTerms``) and its PNG carries their license id as ``kiln:license``.

Deletion removes the row, then each file no remaining row names. Two assets share a file
only when their bytes are equal; original files carry their asset id in PNG metadata, so
in practice only previews of identical requests could be shared.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, func, insert, or_, select

from pipelines.content_credentials import C2paSigner
from pipelines.finishing import FinishedImage, FinishOptions, finish_image
from pipelines.watermark import provenance_payload
from serving.core.assets.store import BlobStore
from serving.core.errors import KilnError
from serving.core.ledger.driver import DriverStatement
from serving.core.ledger.ledger import as_utc
from serving.core.ledger.schema import ASSET_KINDS, assets, licenses
from serving.core.pagination import newest_first
from weights.catalog import ProviderTerms

logger = logging.getLogger(__name__)

MEDIA_TYPE = "image/png"

# A delivery's rows, written in its settlement's transaction on the driver's cursor.
_INSERT_ASSETS = DriverStatement(insert(assets))

# Kinds whose originals need a license and whose previews carry the visible mark.
LICENSED_KINDS = ("artist_style", "private_style")
# An asset's license state, as ``Asset.license_state`` names it and ``AssetFilter`` picks.
LICENSE_STATES = ("free", "required", "licensed")


def license_required(kind: str) -> bool:
    """Whether an asset of ``kind`` is watermarked and its original license-gated."""
    if kind not in ASSET_KINDS:
        raise ValueError(f"unknown asset kind {kind!r}; known: {', '.join(ASSET_KINDS)}")
    return kind in LICENSED_KINDS


class UnknownAsset(KilnError):
    """No asset with this id for this tenant (another tenant's counts as none: 404)."""

    def __init__(self, asset_id: str) -> None:
        super().__init__(404, f"no asset {asset_id!r}", code="asset_not_found")
        self.asset_id = asset_id


class LicenseRequired(KilnError):
    """The original of a style-kind asset before a license was bought (403
    ``license_required``); ``param`` names the request's field where the asset was an
    input (``serving.core.asset_rights``)."""

    def __init__(self, asset_id: str, message: str | None = None, param: str | None = None):
        message = message or (
            f"asset {asset_id!r} is a style image: buy its license "
            f"(POST /v1/assets/{asset_id}/license) to download the original"
        )
        super().__init__(403, message, param=param, code="license_required")
        self.asset_id = asset_id


@dataclass(frozen=True)
class ImageRecord:
    """How one image was made: everything an asset row keeps but its files."""

    kind: str
    model: str
    prompt: str
    seed: int
    width: int
    height: int
    params: Mapping[str, Any] = field(default_factory=dict)
    negative_prompt: str | None = None
    style: str | None = None
    generation_id: str | None = None
    # The asset this image was derived from (edits, variations, exports); None for new ones.
    parent_id: str | None = None
    # Its model provider's terms (the catalog entry's; a derived image keeps its parent's).
    # None only where they are not known: a parent stored before migration 0011.
    terms: ProviderTerms | None = None

    def provenance_key(self) -> str:
        """The request this image answers, canonically: the source of its invisible mark."""
        return json.dumps(
            {
                "model": self.model,
                "style": self.style,
                "prompt": self.prompt,
                "negative_prompt": self.negative_prompt,
                "seed": self.seed,
                "width": self.width,
                "height": self.height,
                "params": dict(self.params),
                "parent_id": self.parent_id,
            },
            sort_keys=True,
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class Asset:
    """A stored image as the API shows it."""

    id: str
    tenant_id: str
    kind: str
    model: str
    style: str | None
    prompt: str
    negative_prompt: str | None
    seed: int
    params: dict[str, Any]
    width: int
    height: int
    media_type: str
    bytes: int
    sha256: str
    preview_sha256: str
    invisible_watermark: str | None
    generation_id: str | None
    created: datetime
    license_id: str | None
    parent_id: str | None = None
    # The model provider's terms recorded when it was made; None on assets made before
    # they were recorded (migration 0011).
    terms: ProviderTerms | None = None

    @property
    def license_required(self) -> bool:
        return license_required(self.kind)

    @property
    def license_state(self) -> str:
        """``free`` (base, agentic), ``required`` (style, unlicensed) or ``licensed``."""
        if self.license_id is not None:
            return "licensed"
        return "required" if self.license_required else "free"


@dataclass(frozen=True)
class AssetFilter:
    """Which of a tenant's assets a listing shows; ``None`` fields match every asset.

    ``model`` is compared as given (an asset keeps its model id after the model leaves
    the catalog, so an id the catalog no longer lists still finds its images)."""

    kind: str | None = None
    model: str | None = None
    license: str | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in ASSET_KINDS:
            raise _bad_filter("kind", self.kind, ASSET_KINDS)
        if self.license is not None and self.license not in LICENSE_STATES:
            raise _bad_filter("license", self.license, LICENSE_STATES)

    def apply(self, query: Select[Any]) -> Select[Any]:
        """``query`` (of ``_select_assets``) narrowed to the matching rows."""
        if self.kind is not None:
            query = query.where(assets.c.kind == self.kind)
        if self.model is not None:
            query = query.where(assets.c.model == self.model)
        if self.license == "licensed":
            query = query.where(licenses.c.id.is_not(None))
        elif self.license == "required":
            query = query.where(assets.c.kind.in_(LICENSED_KINDS), licenses.c.id.is_(None))
        elif self.license == "free":
            query = query.where(assets.c.kind.not_in(LICENSED_KINDS))
        return query


def _bad_filter(param: str, value: str, known: tuple[str, ...]) -> KilnError:
    return KilnError(
        400, f"unknown {param} {value!r}; one of: {', '.join(known)}", param, "invalid_value"
    )


def new_asset_id() -> str:
    return f"ast_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class PreparedAsset:
    """An asset whose files are stored and whose row is not yet written
    (``Assets.prepare``, then ``Assets.insert``)."""

    row: dict[str, Any]
    finished: FinishedImage

    @property
    def asset(self) -> Asset:
        return _asset({**self.row, "license_id": None})


class Assets:
    """Asset rows and files; every read and write is scoped to a tenant."""

    def __init__(self, engine: Engine, store: BlobStore, signer: C2paSigner | None = None):
        self.engine = engine
        self.store = store
        self.signer = signer

    # Writing

    def create(
        self, tenant_id: str, record: ImageRecord, pixels: Any, asset_id: str | None = None
    ) -> tuple[Asset, FinishedImage]:
        """Finish ``pixels`` (uint8 HxWx3), store the files and the row.

        Returns the asset and its finished files (``finished.delivered`` is what to hand
        out now: the preview for watermarked kinds, the original otherwise). Blocking:
        call off the event loop.
        """
        prepared = self.prepare(tenant_id, record, pixels, asset_id)
        with self.engine.begin() as conn:
            self.insert(conn, [prepared])
        return prepared.asset, prepared.finished

    def prepare(
        self, tenant_id: str, record: ImageRecord, pixels: Any, asset_id: str | None = None
    ) -> PreparedAsset:
        """``create`` up to the row: mark and encode ``pixels``, store the files; the row is
        for ``insert`` to write, in the caller's transaction (the paid path writes its
        assets and settles their price in one). Blocking."""
        asset_id = asset_id or new_asset_id()
        visible = license_required(record.kind)
        metadata = {
            "Software": "Kiln",
            "kiln:asset_id": asset_id,
            "kiln:model": record.model,
            "kiln:seed": str(record.seed),
            "kiln:kind": record.kind,
        }
        if record.style is not None:
            metadata["kiln:style"] = record.style
        if record.terms is not None:
            metadata["kiln:license"] = record.terms.license_id
        finished = finish_image(
            pixels,
            FinishOptions(
                payload=provenance_payload(record.provenance_key()),
                metadata=metadata,
                visible=visible,
                signer=self.signer,
                title=asset_id,
            ),
        )
        sha = self.store.put(finished.original, MEDIA_TYPE)
        preview_sha = sha
        if finished.preview is not None:
            preview_sha = self.store.put(finished.preview, MEDIA_TYPE)
        created = datetime.now(UTC)
        row = {
            "id": asset_id,
            "tenant_id": tenant_id,
            "kind": record.kind,
            "model": record.model,
            "style": record.style,
            "prompt": record.prompt,
            "negative_prompt": record.negative_prompt,
            "seed": record.seed,
            "params": json.dumps(dict(record.params), sort_keys=True),
            "width": record.width,
            "height": record.height,
            "media_type": MEDIA_TYPE,
            "bytes": len(finished.original),
            "sha256": sha,
            "preview_sha256": preview_sha,
            "invisible_watermark": (
                finished.invisible_payload.hex() if finished.invisible_payload else None
            ),
            "generation_id": record.generation_id,
            "created": created,
            "parent_id": record.parent_id,
            "terms": (
                json.dumps(record.terms.as_dict(), sort_keys=True)
                if record.terms is not None
                else None
            ),
        }
        return PreparedAsset(row, finished)

    @staticmethod
    def insert(conn: Connection, prepared: list[PreparedAsset]) -> None:
        """Write the rows of ``prepared`` assets on ``conn`` (the caller's transaction)."""
        _INSERT_ASSETS.execute_many(conn, [p.row for p in prepared])

    def delete(self, tenant_id: str, asset_id: str) -> None:
        """Remove the asset and every file no other asset shares. The ledger keeps its
        entries and a license its certificate (licenses outlive their asset)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(assets.c.sha256, assets.c.preview_sha256).where(
                    assets.c.id == asset_id, assets.c.tenant_id == tenant_id
                )
            ).one_or_none()
            if row is None:
                raise UnknownAsset(asset_id)
            conn.execute(delete(assets).where(assets.c.id == asset_id))
            shared = {
                sha
                for sha in {row.sha256, row.preview_sha256}
                if conn.execute(
                    select(func.count())
                    .select_from(assets)
                    .where(or_(assets.c.sha256 == sha, assets.c.preview_sha256 == sha))
                ).scalar_one()
            }
        for sha in {row.sha256, row.preview_sha256} - shared:
            self.store.remove(sha, MEDIA_TYPE)

    def purge_expired(self, retention_days: int, now: datetime | None = None) -> int:
        """Delete unlicensed assets created more than ``retention_days`` ago, of every
        tenant; returns how many. Licensed assets are kept whatever their age."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
        query = (
            select(assets.c.id, assets.c.tenant_id)
            .select_from(assets.outerjoin(licenses, licenses.c.asset_id == assets.c.id))
            .where(assets.c.created < cutoff, licenses.c.id.is_(None))
            .limit(500)
        )
        purged = 0
        while True:
            with self.engine.begin() as conn:
                batch = conn.execute(query).all()
            for asset_id, tenant_id in batch:
                try:
                    self.delete(tenant_id, asset_id)
                    purged += 1
                except UnknownAsset:
                    pass  # deleted meanwhile, by its owner or another replica's sweep
            if len(batch) < 500:
                break
        if purged:
            logger.info("retention: deleted %d unlicensed asset(s) older than %s", purged, cutoff)
        return purged

    # Reading

    def get(self, tenant_id: str, asset_id: str) -> Asset:
        """The caller's asset ``asset_id``; ``UnknownAsset`` for any other."""
        with self.engine.begin() as conn:
            row = conn.execute(
                _select_assets().where(assets.c.id == asset_id, assets.c.tenant_id == tenant_id)
            ).one_or_none()
        if row is None:
            raise UnknownAsset(asset_id)
        return _asset(row._mapping)

    def list(
        self,
        tenant_id: str,
        limit: int = 20,
        after: str | None = None,
        where: AssetFilter = AssetFilter(),
    ) -> tuple[list[Asset], bool]:
        """The caller's assets matching ``where``, newest first, and whether more follow.
        ``after`` is the last id of the previous page (``UnknownCursor`` if it is not the
        caller's); a cursor from an unfiltered page works on a filtered one."""
        query = where.apply(_select_assets().where(assets.c.tenant_id == tenant_id))
        with self.engine.begin() as conn:
            rows, more = newest_first(conn, assets, query, tenant_id, limit, after)
        return [_asset(row._mapping) for row in rows], more

    def preview(self, tenant_id: str, asset_id: str) -> tuple[Asset, bytes]:
        """The preview file (watermarked for style kinds, else the original itself)."""
        asset = self.get(tenant_id, asset_id)
        return asset, self._read(asset, asset.preview_sha256)

    def original(self, tenant_id: str, asset_id: str) -> tuple[Asset, bytes]:
        """The original file; ``LicenseRequired`` for an unlicensed style-kind asset."""
        asset = self.get(tenant_id, asset_id)
        if asset.license_state == "required":
            raise LicenseRequired(asset_id)
        return asset, self._read(asset, asset.sha256)

    def source(self, tenant_id: str, asset_id: str) -> tuple[Asset, bytes]:
        """The original file as the input of a derivation (edit, variation, upscale, ...).

        No license gate: what is derived keeps the parent's kind (DESIGN.md §1), so a
        style image's edit is itself watermarked and license-gated; the unmarked original
        never leaves the server this way. ``UnknownAsset`` for another tenant's asset."""
        asset = self.get(tenant_id, asset_id)
        return asset, self._read(asset, asset.sha256)

    def _read(self, asset: Asset, sha256: str) -> bytes:
        try:
            return self.store.read(sha256, asset.media_type)
        except FileNotFoundError:
            # The row outlived its file (a lost volume, a deletion racing a write).
            logger.error("asset %s: file %s is missing from the store", asset.id, sha256)
            raise


def _select_assets():  # noqa: ANN202 (a Select of assets plus the license id)
    return select(assets, licenses.c.id.label("license_id")).select_from(
        assets.outerjoin(licenses, licenses.c.asset_id == assets.c.id)
    )


def _asset(row: Mapping[str, Any]) -> Asset:
    values = dict(row)
    values["params"] = json.loads(values["params"])
    values["created"] = as_utc(values["created"])
    terms = values.get("terms")
    values["terms"] = ProviderTerms.from_dict(json.loads(terms)) if terms else None
    return Asset(**values)
