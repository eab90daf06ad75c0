"""The ledger's tables, as typed SQLAlchemy 2 ORM classes (the migrations create them).

Credits are whole integers everywhere: prices are integral in the catalog, and integers
add up exactly on SQLite and PostgreSQL alike (no Decimal or float rounding to reconcile).

Each ledger entry carries two signed amounts: ``amount`` is its effect on the tenant's
*available* credits and ``held`` its effect on the credits *held* by open reservations.
So, per tenant, ``sum(entries.amount) == balances.available`` and
``sum(entries.held) == balances.held``, always:

=================  ========  ======  ====================================
kind               amount    held    meaning
=================  ========  ======  ====================================
grant              +x        0       an admin adds credits
reserve            -x        +x      credits set aside before any work
capture            0         -x      x of a reservation spent (an image delivered)
release            +rest     -rest   the unspent rest of a reservation returns
license_purchase   -x        0       a license bought outright
=================  ========  ======  ====================================
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ENTRY_KINDS = ("grant", "reserve", "capture", "release", "license_purchase")
RESERVATION_STATES = ("open", "released")
IDEMPOTENCY_STATES = ("in_flight", "done")
KEY_ROLES = ("admin", "tenant")
# What made an asset; DESIGN.md §1. Style kinds are watermarked and need a license.
ASSET_KINDS = ("base", "artist_style", "private_style", "agentic")

# SQLite only autoincrements an INTEGER PRIMARY KEY; BIGINT elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    # Named constraints, so later migrations can address them on both databases.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class TenantRow(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BalanceRow(Base):
    """The running totals the conditional UPDATEs guard; the CHECKs are a second fence."""

    __tablename__ = "balances"
    __table_args__ = (
        CheckConstraint("available >= 0", name="available_not_negative"),
        CheckConstraint("held >= 0", name="held_not_negative"),
    )

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    available: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)


class ReservationRow(Base):
    """Credits held for one request or job. ``expires`` is its lease (migration 0009): the
    holder pushes it on while alive, and an open reservation past it belongs to a process
    that died, so the sweeper releases it and stamps ``swept_at``. Both are NULL only on
    rows released before leases existed."""

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("captured >= 0 AND captured <= amount", name="captured_in_range"),
        CheckConstraint(_in("state", RESERVATION_STATES), name="state_known"),
        # The sweeper's question: open and expired (few rows, however long the history).
        Index("ix_reservations_state_expires", "state", "expires"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    captured: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(16), default="open")
    reference: Mapped[str | None] = mapped_column(String(200))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    swept_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EntryRow(Base):
    """Append-only: rows are inserted, never updated or deleted (triggers refuse both)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(_in("kind", ENTRY_KINDS), name="kind_known"),
        Index("ix_ledger_entries_tenant_id_id", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    held: Mapped[int] = mapped_column(BigInteger)
    reservation_id: Mapped[str | None] = mapped_column(ForeignKey("reservations.id"))
    reference: Mapped[str | None] = mapped_column(String(200))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdempotencyKeyRow(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (CheckConstraint(_in("state", IDEMPOTENCY_STATES), name="state_known"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKeyRow(Base):
    """An API key, stored as its SHA-256 (never the key); ``prefix`` is what listings show.

    Added by migration ``0002_api_keys``; ``serving.core.accounts`` owns the logic.
    """

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(_in("role", KEY_ROLES), name="role_known"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AssetRow(Base):
    """A stored image: its files (by SHA-256 under ``KILN_HOME/assets``) and how it was
    made. Added by migration ``0003_assets_licenses``; ``serving.core.assets`` owns the logic.

    ``preview_sha256`` equals ``sha256`` where the preview is the original (free kinds).
    """

    __tablename__ = "assets"
    __table_args__ = (
        CheckConstraint(_in("kind", ASSET_KINDS), name="kind_known"),
        Index("ix_assets_tenant_id_created", "tenant_id", "created"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    style: Mapped[str | None] = mapped_column(String(200))
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[str] = mapped_column(Text)  # JSON: steps, guidance, scheduler, ...
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    media_type: Mapped[str] = mapped_column(String(40))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    preview_sha256: Mapped[str] = mapped_column(String(64), index=True)
    invisible_watermark: Mapped[str | None] = mapped_column(String(32))
    generation_id: Mapped[str | None] = mapped_column(String(40))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The asset this one was derived from (edit, variation, upscale, background removal);
    # added by migration 0007. No foreign key: a parent may be deleted before its children.
    parent_id: Mapped[str | None] = mapped_column(String(40), index=True)
    # The model provider's terms when the image was made (JSON of
    # ``weights.catalog.ProviderTerms``); added by migration 0011, null on older assets.
    terms: Mapped[str | None] = mapped_column(Text)


class LicenseRow(Base):
    """A per-image license. One per asset (the unique ``asset_id`` makes a second purchase
    impossible, also when two race); no foreign key to ``assets``: a license outlives the
    deletion of its asset, and its certificate keeps the asset's SHA-256.
    """

    __tablename__ = "licenses"
    __table_args__ = (Index("ix_licenses_tenant_id_created", "tenant_id", "created"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    asset_id: Mapped[str] = mapped_column(String(40), unique=True)
    asset_sha256: Mapped[str] = mapped_column(String(64))
    price: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    rights: Mapped[str] = mapped_column(Text)  # JSON list of granted rights
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TenantSlotRow(Base):
    """One running generation request of a tenant, under ``KILN_TENANT_MAX_CONCURRENT``.

    Slot numbers run from 0 to the cap - 1, so the primary key ``(tenant_id, slot)`` lets
    at most cap rows exist and decides races between processes. ``holder`` names the one
    acquisition (release deletes only its own row) and ``expires`` bounds how long a
    crashed process keeps a slot. Added by migration ``0004_tenant_slots``;
    ``serving.core.limits`` owns the logic.
    """

    __tablename__ = "tenant_slots"
    __table_args__ = (CheckConstraint("slot >= 0", name="slot_not_negative"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str] = mapped_column(String(100))
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TenantQueueRow(Base):
    """A tenant's place in the models' fair queues, set through the admin API: its weight
    in the deficit round robin and its own queued-images quota (``None``: the server's
    ``KILN_TENANT_MAX_QUEUED_IMAGES``). A tenant without a row has weight 1. Added by
    migration ``0013_tenant_queue``; ``serving.core.limits`` owns the logic."""

    __tablename__ = "tenant_queue"
    __table_args__ = (
        CheckConstraint("weight > 0", name="weight_positive"),
        CheckConstraint("max_queued_images >= 1", name="max_queued_images_positive"),
    )

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    max_queued_images: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StyleRow(Base):
    """A LoRA style (``styles.record.StyleRecord``). Added by migration ``0005_styles``.

    ``owner_tenant_id`` is set for private styles only; the LoRA file is
    ``KILN_HOME/styles/<sha256>.safetensors``.
    """

    __tablename__ = "styles"
    __table_args__ = (
        CheckConstraint("kind IN ('artist', 'private')", name="kind_known"),
        CheckConstraint(
            "(kind = 'private') = (owner_tenant_id IS NOT NULL)", name="private_has_owner"
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    owner_tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    family: Mapped[str] = mapped_column(String(16))
    base_model: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    rank: Mapped[int] = mapped_column(Integer)
    trigger_words: Mapped[str] = mapped_column(Text)  # JSON list of strings
    default_strength: Mapped[float] = mapped_column(Float)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))


JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


class JobRow(Base):
    """A long-running job (style training first; upscaling and batch rendering later).

    The database is the job's source of truth across processes: the ingress that took the
    request, the worker (a Ray task elsewhere) and every ingress that answers a poll read
    and write this row. ``params``, ``progress`` and ``result`` are JSON; ``event_seq`` is
    the number of the job's last ``job_events`` row. Added by migration ``0006_jobs``;
    ``serving.core.jobs`` owns the logic.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("state", JOB_STATES), name="state_known"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        Index("ix_jobs_tenant_id_created", "tenant_id", "created"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16))
    params: Mapped[str] = mapped_column(Text)
    progress: Mapped[str] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    # What the client is told of a failure (public words only; the log has the detail),
    # and its code (migration 0010).
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    price: Mapped[int] = mapped_column(BigInteger, default=0)
    reservation_id: Mapped[str | None] = mapped_column(ForeignKey("reservations.id"))
    event_seq: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobEventRow(Base):
    """One progress or state event of a job, numbered 1, 2, ... per job (``seq``): what
    ``GET /v1/jobs/{id}/events`` streams. Added by migration ``0006_jobs``."""

    __tablename__ = "job_events"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(16))
    data: Mapped[str] = mapped_column(Text)  # JSON
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))


PIN_KINDS = ("character", "product")


class PinRow(Base):
    """A character or product pin (``serving.core.pins``): its IP-Adapter image embeddings
    are ``KILN_HOME/pins/<id>.safetensors`` (one tensor per IP-Adapter component, named
    in ``components``, a JSON list; ``sha256`` is the file's). Only its tenant sees it.
    Added by migration ``0008_pins``. ``pictures`` (migration ``0012_pin_pictures``): the
    pictures it was made from, a JSON list of ``{"sha256", "asset_id"}`` (files under
    ``KILN_HOME/pins/pictures/<id>/``); null for a pin made before Kiln kept them."""

    __tablename__ = "pins"
    __table_args__ = (
        CheckConstraint(_in("kind", PIN_KINDS), name="kind_known"),
        CheckConstraint("images BETWEEN 1 AND 4", name="images_1_to_4"),
        Index("ix_pins_tenant_id_created", "tenant_id", "created"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    images: Mapped[int] = mapped_column(Integer)
    components: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    pictures: Mapped[str | None] = mapped_column(Text, nullable=True)


tenants = TenantRow.__table__
balances = BalanceRow.__table__
reservations = ReservationRow.__table__
entries = EntryRow.__table__
idempotency_keys = IdempotencyKeyRow.__table__
api_keys = ApiKeyRow.__table__
assets = AssetRow.__table__
licenses = LicenseRow.__table__
tenant_slots = TenantSlotRow.__table__
tenant_queue = TenantQueueRow.__table__
styles = StyleRow.__table__
jobs = JobRow.__table__
job_events = JobEventRow.__table__
pins = PinRow.__table__
