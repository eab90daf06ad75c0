"""Tenants and API keys: create, list by prefix, revoke, authenticate; the first admin key."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from pipelines.param_error import check_text
from serving.core.accounts.key_cache import KeyCache
from serving.core.accounts.keys import generate_key, hash_key, key_prefix
from serving.core.errors import KilnError
from serving.core.ledger import Ledger, Tenant
from serving.core.ledger.db import read_only
from serving.core.ledger.ledger import as_utc
from serving.core.ledger.schema import api_keys, balances, tenants
from weights.home import private_dir

logger = logging.getLogger(__name__)

ADMIN_TENANT_ID = "ten_admin"
ADMIN_KEY_FILE = "admin.key"
ROLES = ("admin", "tenant")


class UnknownKey(KilnError):
    """No API key with this id (404 ``key_not_found``)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(404, f"no API key {key_id!r}", code="key_not_found")
        self.key_id = key_id


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: the key's tenant and role."""

    tenant_id: str
    key_id: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class ApiKey:
    """A key as listings show it: never the key, only its prefix."""

    id: str
    tenant_id: str
    prefix: str
    role: str
    created: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: the only moment the key itself is known."""

    key: str
    record: ApiKey


class Accounts:
    """Tenants and their keys, in the ledger's database; live keys are remembered for a
    second (``serving.core.accounts.key_cache``: a revocation is at once here, within
    that second in other processes)."""

    def __init__(self, ledger: Ledger, key_cache: KeyCache[Principal] | None = None) -> None:
        self.ledger = ledger
        self.engine = ledger.engine
        self.key_cache: KeyCache[Principal] = key_cache or KeyCache()

    def create_tenant(self, name: str) -> Tenant:
        """A new tenant with an empty balance (``ParamError`` for a name holding NUL)."""
        return self.ledger.create_tenant(check_text("name", name))

    def create_key(self, tenant_id: str, role: str = "tenant") -> IssuedKey:
        """A new key for ``tenant_id``; raises ``UnknownTenant``."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.ledger.tenant(tenant_id)
        return self._insert_key(tenant_id, generate_key(), role)

    def keys(self, tenant_id: str) -> list[ApiKey]:
        """The tenant's keys (revoked ones included), oldest first; raises ``UnknownTenant``."""
        self.ledger.tenant(tenant_id)
        query = select(api_keys).where(api_keys.c.tenant_id == tenant_id)
        with self.engine.begin() as conn:
            rows = conn.execute(query.order_by(api_keys.c.created, api_keys.c.id)).all()
        return [_api_key(row) for row in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (idempotent); raises ``UnknownKey``."""
        with self.engine.begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).one_or_none()
        self.key_cache.forget(lambda principal: principal.key_id == key_id)
        if row is None:
            raise UnknownKey(key_id)
        return _api_key(row)

    def authenticate(self, key: str) -> Principal | None:
        """The principal of a live key; ``None`` for an unknown or revoked one. A key
        seen live within the last ``KEY_CACHE_S`` is answered from memory."""
        key_hash = hash_key(key)
        cached = self.key_cache.get(key_hash)
        if cached is not None:
            return cached
        query = select(api_keys.c.id, api_keys.c.tenant_id, api_keys.c.role).where(
            api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None)
        )
        # Every request authenticates (twice under Serve: proxy and app): a read that must
        # not queue behind SQLite's write lock.
        with read_only(self.engine).begin() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            return None
        principal = Principal(tenant_id=row.tenant_id, key_id=row.id, role=row.role)
        self.key_cache.put(key_hash, principal)
        return principal

    # The admin

    def ensure_admin_tenant(self) -> None:
        """Create the admin's own tenant once (safe when several processes race)."""
        with contextlib.suppress(IntegrityError), self.engine.begin() as conn:
            conn.execute(
                insert(tenants).values(id=ADMIN_TENANT_ID, name="admin", created=datetime.now(UTC))
            )
            conn.execute(insert(balances).values(tenant_id=ADMIN_TENANT_ID, available=0, held=0))

    def ensure_key(self, tenant_id: str, key: str, role: str) -> None:
        """Make ``key`` a live key of ``tenant_id`` (a configured key; revived if revoked)."""
        digest = hash_key(key)
        with self.engine.begin() as conn:
            known = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_hash == digest)
                .values(tenant_id=tenant_id, role=role, revoked_at=None)
            )
        if known.rowcount == 0:
            with contextlib.suppress(IntegrityError):
                self._insert_key(tenant_id, key, role)

    def has_admin_key(self) -> bool:
        """Whether any live admin key exists."""
        query = select(api_keys.c.id).where(
            api_keys.c.role == "admin", api_keys.c.revoked_at.is_(None)
        )
        with self.engine.begin() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def _insert_key(self, tenant_id: str, key: str, role: str) -> IssuedKey:
        record = ApiKey(
            id=f"key_{secrets.token_hex(12)}",
            tenant_id=tenant_id,
            prefix=key_prefix(key),
            role=role,
            created=datetime.now(UTC),
            revoked_at=None,
        )
        with self.engine.begin() as conn:
            conn.execute(
                insert(api_keys).values(
                    id=record.id,
                    tenant_id=tenant_id,
                    prefix=record.prefix,
                    key_hash=hash_key(key),
                    role=role,
                    created=record.created,
                    revoked_at=None,
                )
            )
        return IssuedKey(key=key, record=record)


def ensure_admin_key(accounts: Accounts, home: Path, configured: str | None) -> str | None:
    """Make sure an admin key exists; the new key when one was generated, else ``None``.

    ``configured`` (``KILN_ADMIN_KEY``) is ensured as a live admin key at every start.
    Without it, a first start generates one and writes it to ``home/admin.key`` (0600);
    the caller prints it once. Later starts find the live admin key and generate nothing.
    """
    accounts.ensure_admin_tenant()
    if configured:
        accounts.ensure_key(ADMIN_TENANT_ID, configured, "admin")
        return None
    if accounts.has_admin_key():
        return None
    issued = accounts.create_key(ADMIN_TENANT_ID, role="admin")
    write_private(home / ADMIN_KEY_FILE, issued.key)
    logger.info("generated the first admin key (prefix %s)", issued.record.prefix)
    return issued.key


def prepare_admin(database_url: str, home: Path, configured: str | None) -> str | None:
    """Migrate the database and ensure the admin key (``ensure_admin_key``) at start."""
    with Ledger(database_url) as ledger:
        return ensure_admin_key(Accounts(ledger), home, configured)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600 from the start)."""
    private_dir(path.parent)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _api_key(row) -> ApiKey:  # noqa: ANN001 (a Row of api_keys)
    return ApiKey(
        id=row.id,
        tenant_id=row.tenant_id,
        prefix=row.prefix,
        role=row.role,
        created=as_utc(row.created),
        revoked_at=as_utc(row.revoked_at) if row.revoked_at is not None else None,
    )
