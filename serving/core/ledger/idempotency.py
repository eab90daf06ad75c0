"""``Idempotency-Key`` with Stripe's semantics, kept in the ledger's database.

``begin`` claims a key for a request body (by hash): the first request goes on, a retry
with the same body after ``finish`` gets the stored response, and the same key with a
different body, or while the first is still running, is a conflict (HTTP 409). A request
that ends before producing a response worth replaying (a validation error, a crash
handled upstream) calls ``abandon`` so the key can be used again.

Expiry. As Stripe, a key is kept ``KEY_TTL`` (24 hours) from its claim; past that, the
same key is a new request: ``begin`` replaces the old row with a conditional UPDATE
guarded on its ``created``, so of two requests racing for an expired key exactly one
wins (the other sees the winner's fresh claim: 409).

Crashed claims. A process that dies mid-request leaves its row ``in_flight`` and cannot
abandon it. A claim older than ``IN_FLIGHT_LEASE`` (10 minutes) is taken to be dead: the
next request with the same body takes it over (conditional UPDATE on ``created`` and
``state``; again one winner), another body is still 409. The lease is far longer than a
generation runs (at most 12 images of a model that answers in seconds to a minute each);
should a request outlive it and a retry take its key over, the claim token below keeps
the first request from storing over, or abandoning, the retry's claim.

Claim tokens. ``begin`` writes its ``now`` as the claim's ``created``; a caller that
passes that same value as ``claimed`` to ``finish``/``abandon`` only touches its own
claim, not one that took it over (``finish`` then raises ``ClaimLost``).

Purging. Rows past ``KEY_TTL`` are dead weight: ``purge_expired`` deletes them, and
``begin`` calls it at most once per ``PURGE_EVERY`` (1 hour) per process, swallowing its
errors (a failed purge must not fail a request). Operators may also call it themselves.
Times are the processes' clocks in UTC; skew of seconds between machines does not matter
against these durations.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from serving.core.ledger.schema import idempotency_keys
from serving.core.ledger.types import IdempotencyConflict, LedgerError, StoredResponse

logger = logging.getLogger(__name__)

# Stripe keeps keys 24 hours; after that the same key is a new request.
KEY_TTL = timedelta(hours=24)
# An in-flight claim this old belongs to a process that died: it may be taken over.
IN_FLIGHT_LEASE = timedelta(minutes=10)
# How often (per process, by its monotonic clock) ``begin`` purges expired rows.
PURGE_EVERY = timedelta(hours=1)
# Rounds of insert / look / conditional update before giving up on a contended key.
CLAIM_ROUNDS = 5


class ClaimLost(LedgerError):
    """``finish`` of a claim that another request took over (its lease ran out)."""


def body_hash(body: bytes) -> str:
    """The hash ``begin`` compares: SHA-256 of the request body, hex."""
    return hashlib.sha256(body).hexdigest()


def _utc(value: datetime) -> datetime:
    """Aware UTC: SQLite hands timestamps back naive (written in UTC); callers' ``now``
    may be in any zone (SQLite would store its wall time as it is)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class IdempotencyKeys:
    """Claims, stored responses and replays of idempotency keys, per tenant.

    ``purge_every`` is how often ``begin`` purges expired rows (``None``: never).
    """

    def __init__(self, engine: Engine, *, purge_every: timedelta | None = PURGE_EVERY) -> None:
        self.engine = engine
        self.purge_every = purge_every
        self._next_purge = 0.0  # monotonic time; the first ``begin`` purges

    def begin(
        self, tenant_id: str, key: str, request_hash: str, now: datetime | None = None
    ) -> StoredResponse | None:
        """Claim ``key``: ``None`` means new (go on); a ``StoredResponse`` means replay it.

        Raises ``IdempotencyConflict`` for another body or a request still in flight. A
        key past ``KEY_TTL`` is new again; a claim in flight past ``IN_FLIGHT_LEASE`` is
        taken over by the same body. ``now`` (default: the clock) becomes the claim's
        ``created``, the token ``finish`` and ``abandon`` accept as ``claimed``.
        """
        now = _utc(now or datetime.now(UTC))
        self._maybe_purge(now)
        c = idempotency_keys.c
        for _ in range(CLAIM_ROUNDS):
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        insert(idempotency_keys).values(
                            tenant_id=tenant_id,
                            key=key,
                            request_hash=request_hash,
                            state="in_flight",
                            created=now,
                        )
                    )
                return None
            except IntegrityError:
                pass  # the key exists (or the tenant does not): look at what is there
            with self.engine.begin() as conn:
                row = conn.execute(
                    select(idempotency_keys).where(c.tenant_id == tenant_id, c.key == key)
                ).one_or_none()
            if row is None:
                continue  # abandoned or purged in between: claim it afresh
            age = now - _utc(row.created)
            if age >= KEY_TTL:
                # Expired: a new request, whatever the row held.
                if self._reclaim(tenant_id, key, row.created, request_hash, now, None):
                    return None
                continue  # another request replaced it first: look again
            if row.request_hash != request_hash:
                raise IdempotencyConflict(key, "body_mismatch")
            if row.state == "done":
                return StoredResponse(status=row.response_status, body=row.response_body)
            if age < IN_FLIGHT_LEASE:
                raise IdempotencyConflict(key, "in_flight")
            # A claim whose process died: take it over, unless it finished meanwhile.
            if self._reclaim(tenant_id, key, row.created, request_hash, now, "in_flight"):
                return None
        # Still contended after every round, or the tenant does not exist (foreign key).
        raise LedgerError(f"could not claim idempotency key {key!r} for {tenant_id!r}")

    def finish(
        self,
        tenant_id: str,
        key: str,
        status: int,
        body: bytes,
        claimed: datetime | None = None,
    ) -> None:
        """Store the response of a claimed key, for replays.

        With ``claimed`` (the ``now`` given to ``begin``), only that claim is finished;
        raises ``ClaimLost`` when another request took it over meanwhile.
        """
        c = idempotency_keys.c
        where = [c.tenant_id == tenant_id, c.key == key, c.state == "in_flight"]
        if claimed is not None:
            where.append(c.created == _utc(claimed))
        with self.engine.begin() as conn:
            stored = conn.execute(
                update(idempotency_keys)
                .where(*where)
                .values(state="done", response_status=status, response_body=body)
            )
            if stored.rowcount != 1:
                if claimed is not None:
                    raise ClaimLost(f"idempotency key {key!r} was taken over by another request")
                raise LedgerError(f"idempotency key {key!r} is not in flight")

    def abandon(self, tenant_id: str, key: str, claimed: datetime | None = None) -> None:
        """Give up an in-flight claim without a response, so a retry runs afresh.

        With ``claimed``, only that claim (a claim that took it over stays).
        """
        c = idempotency_keys.c
        where = [c.tenant_id == tenant_id, c.key == key, c.state == "in_flight"]
        if claimed is not None:
            where.append(c.created == _utc(claimed))
        with self.engine.begin() as conn:
            conn.execute(delete(idempotency_keys).where(*where))

    def purge_expired(self, now: datetime | None = None) -> int:
        """Delete every key older than ``KEY_TTL`` (any state); how many went."""
        cutoff = _utc(now or datetime.now(UTC)) - KEY_TTL
        with self.engine.begin() as conn:
            purged = conn.execute(
                delete(idempotency_keys).where(idempotency_keys.c.created <= cutoff)
            )
        return purged.rowcount

    def _reclaim(
        self,
        tenant_id: str,
        key: str,
        old_created: datetime,
        request_hash: str,
        now: datetime,
        state: str | None,
    ) -> bool:
        """Replace the row seen with ``old_created`` by a new claim; ``False`` if it changed.

        The guard on ``created`` (and ``state``, when given) is re-checked by the database
        against the committed row, so of racing reclaims exactly one updates it.
        """
        c = idempotency_keys.c
        where = [c.tenant_id == tenant_id, c.key == key, c.created == old_created]
        if state is not None:
            where.append(c.state == state)
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(idempotency_keys)
                .where(*where)
                .values(
                    request_hash=request_hash,
                    state="in_flight",
                    response_status=None,
                    response_body=None,
                    created=now,
                )
            )
        return taken.rowcount == 1

    def _maybe_purge(self, now: datetime) -> None:
        if self.purge_every is None or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + self.purge_every.total_seconds()
        try:
            purged = self.purge_expired(now)
        except Exception:  # a failed purge must not fail the request; the next one retries
            logger.warning("could not purge expired idempotency keys", exc_info=True)
            return
        if purged:
            logger.info("purged %d expired idempotency keys", purged)
