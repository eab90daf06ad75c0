"""The credits ledger: tenants' balances, append-only entries, idempotency keys.

SQLAlchemy 2 over SQLite (``KILN_HOME/kiln.db``, the default) or PostgreSQL
(``KILN_DATABASE_URL``), shaped by the Alembic migrations in ``migrations/``, which
``Ledger(url)`` runs on open.
"""

from serving.core.ledger.db import create_ledger_engine, migrate
from serving.core.ledger.idempotency import IdempotencyKeys, body_hash
from serving.core.ledger.ledger import Ledger
from serving.core.ledger.types import (
    MAX_CREDITS,
    Balance,
    CreditsLimit,
    Entry,
    IdempotencyConflict,
    InsufficientCredits,
    LedgerError,
    Reservation,
    StoredResponse,
    Tenant,
    UnknownReservation,
    UnknownTenant,
)

__all__ = [
    "MAX_CREDITS",
    "Balance",
    "CreditsLimit",
    "Entry",
    "IdempotencyConflict",
    "IdempotencyKeys",
    "InsufficientCredits",
    "Ledger",
    "LedgerError",
    "Reservation",
    "StoredResponse",
    "Tenant",
    "UnknownReservation",
    "UnknownTenant",
    "body_hash",
    "create_ledger_engine",
    "migrate",
]
