"""``Idempotency-Key`` with Stripe's semantics, kept in the ledger's database.

``begin`` claims a key for a request body (by hash): the first request goes on, a retry
with the same body after ``finish`` gets the stored response, and the same key with a
different body, or while the first is still running, is a conflict (HTTP 409). A request
that ends before producing a response worth replaying (a validation error, a crash
handled upstream) calls ``abandon`` so the key can be used again.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from serving.ledger.schema import idempotency_keys
from serving.ledger.types import IdempotencyConflict, LedgerError, StoredResponse


def body_hash(body: bytes) -> str:
    """The hash ``begin`` compares: SHA-256 of the request body, hex."""
    return hashlib.sha256(body).hexdigest()


class IdempotencyKeys:
    """Claims, stored responses and replays of idempotency keys, per tenant."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def begin(self, tenant_id: str, key: str, request_hash: str) -> StoredResponse | None:
        """Claim ``key``: ``None`` means new (go on); a ``StoredResponse`` means replay it.

        Raises ``IdempotencyConflict`` for another body or a request still in flight.
        """
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(idempotency_keys).values(
                        tenant_id=tenant_id,
                        key=key,
                        request_hash=request_hash,
                        state="in_flight",
                        created=datetime.now(UTC),
                    )
                )
            return None
        except IntegrityError:
            pass  # the key exists (or the tenant does not): look at what is there
        with self.engine.begin() as conn:
            row = conn.execute(
                select(idempotency_keys).where(
                    idempotency_keys.c.tenant_id == tenant_id, idempotency_keys.c.key == key
                )
            ).one_or_none()
        if row is None:
            # Claimed and abandoned in between, or the insert broke a foreign key.
            raise LedgerError(f"could not claim idempotency key {key!r} for {tenant_id!r}")
        if row.request_hash != request_hash:
            raise IdempotencyConflict(key, "body_mismatch")
        if row.state != "done":
            raise IdempotencyConflict(key, "in_flight")
        return StoredResponse(status=row.response_status, body=row.response_body)

    def finish(self, tenant_id: str, key: str, status: int, body: bytes) -> None:
        """Store the response of a claimed key, for replays."""
        with self.engine.begin() as conn:
            stored = conn.execute(
                update(idempotency_keys)
                .where(
                    idempotency_keys.c.tenant_id == tenant_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.state == "in_flight",
                )
                .values(state="done", response_status=status, response_body=body)
            )
            if stored.rowcount != 1:
                raise LedgerError(f"idempotency key {key!r} is not in flight")

    def abandon(self, tenant_id: str, key: str) -> None:
        """Give up an in-flight claim without a response, so a retry runs afresh."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.tenant_id == tenant_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.state == "in_flight",
                )
            )
