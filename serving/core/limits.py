"""Per-tenant limits: the cap on concurrent generation requests
(``KILN_TENANT_MAX_CONCURRENT``, ``ConcurrencyLimiter``) and each tenant's place in the
models' fair queues (``TenantQueues``: weight, queued-images quota).

How the two combine. A generation first takes a concurrency slot (requests, counted in
the database across every model and ingress: 429 ``tenant_concurrency_limit``), then
holds its images against the tenant's queued-images quota on its model
(``KILN_TENANT_MAX_QUEUED_IMAGES`` or the tenant's own from the admin API, counted by the
model's scheduler, ``serving.core.scheduling``: 429 ``tenant_queue_limit``), and only then
reserves credits; a refusal at either step holds and charges nothing. An asynchronous
job counts from when its generation reaches the paid path, as a synchronous one does;
a job waiting for a worker holds no slot and no queued images.

Concurrency slots
-----------------

Counted in the ledger's database (table ``tenant_slots``, migration ``0004_tenant_slots``),
so the cap holds across every ingress process and machine that shares the database, not
per replica. A request holds one *slot*: a row ``(tenant_id, slot)`` with ``slot`` in
``[0, cap)``. Acquiring inserts the first free slot number, or takes over a slot whose
lease expired with a conditional ``UPDATE ... WHERE expires <= now``; the primary key
(and that condition) decide races between processes, no Python lock does. Releasing
deletes the row by ``(tenant_id, slot, holder)``, so a holder only ever frees its own.
A tenant whose live slots already number the cap gets 429 ``tenant_concurrency_limit``
with ``retry-after``. With no cap configured (the default) nothing touches the database.

Leases. A slot's ``expires`` is ``LEASE`` (5 minutes) ahead; while the request runs, a
task renews it every ``RENEW_EVERY_S`` (1 minute), so a request may take as long as it
needs. A process that dies without releasing leaks its slots for at most ``LEASE``: then
the next request of that tenant takes them over. A holder whose renewals failed for a
whole lease (the database unreachable that long) may lose its slot to another request,
which only lets the tenant exceed its cap by that request for a while. Times are the
processes' clocks in UTC; skew of seconds between machines is small against the lease.

The cap protects the GPUs from one tenant's burst; the credits ledger, not this counter,
is what guarantees nobody spends past their balance. Database calls run in threads
(``asyncio.to_thread``), off the event loop. A slot dies with the process that holds it,
so its writes commit as holds do (``serving.core.ledger.db.transient``: on SQLite, not
flushed to the disk; only a power loss that ends the request too can lose one).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from serving.core.errors import KilnError, too_many_requests
from serving.core.ledger.db import transient
from serving.core.ledger.schema import tenant_queue, tenant_slots
from serving.core.scheduling.fair_queue import MAX_WEIGHT, MIN_WEIGHT

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 1
# How long a slot stays held without a renewal: the most a crashed process can leak it.
LEASE = timedelta(minutes=5)
# Renewal period of a held slot; several renewals fit in a lease, so one slow or failed
# renewal does not lose the slot.
RENEW_EVERY_S = 60.0
# Rounds of read-then-claim before answering 429: each lost race means another request
# took the slot, so a round is lost only to real contention.
ACQUIRE_ROUNDS = 5

_PROCESS = f"{socket.gethostname()[:60]}:{os.getpid()}"


def _utc(value: datetime) -> datetime:
    """SQLite hands timestamps back naive; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class HeldSlot:
    """One acquisition: the slot number and the holder name that only it uses."""

    tenant_id: str
    slot: int
    holder: str


class ConcurrencyLimiter:
    """Slots per tenant, counted in ``engine``'s database; ``limit=None`` is no cap."""

    def __init__(
        self,
        limit: int | None,
        engine: Engine,
        *,
        lease: timedelta = LEASE,
        renew_every_s: float = RENEW_EVERY_S,
    ) -> None:
        self.limit = limit
        self.engine = engine
        self.holds = transient(engine)  # slots die with their process
        self.lease = lease
        self.renew_every_s = renew_every_s

    @asynccontextmanager
    async def slot(self, tenant_id: str) -> AsyncIterator[None]:
        """Hold one of the tenant's slots for the block; 429 with ``retry-after`` if none."""
        if self.limit is None:
            yield
            return
        acquiring = asyncio.ensure_future(asyncio.to_thread(self.acquire, tenant_id))
        try:
            held = await asyncio.shield(acquiring)
        except asyncio.CancelledError:
            # The thread goes on and may take a slot: give it back rather than leak it.
            taken = await acquiring
            if taken is not None:
                await asyncio.to_thread(self.release, taken)
            raise
        if held is None:
            raise too_many_requests(
                f"too many concurrent requests: this tenant may run {self.limit} at once",
                "tenant_concurrency_limit",
                RETRY_AFTER_S,
            )
        renewing = asyncio.create_task(self._keep_renewed(held))
        try:
            yield
        finally:
            renewing.cancel()
            await asyncio.shield(asyncio.to_thread(self.release, held))

    # The database side, synchronous (called in threads; tests call it directly).

    def acquire(self, tenant_id: str, now: datetime | None = None) -> HeldSlot | None:
        """Take a free or expired slot of the tenant; ``None`` when all are in use."""
        if self.limit is None:
            raise ValueError("no cap configured: there are no slots to acquire")
        now = now or datetime.now(UTC)
        holder = f"{_PROCESS}:{secrets.token_hex(6)}"
        expires = now + self.lease
        key = tenant_slots.c
        for _ in range(ACQUIRE_ROUNDS):
            with self.holds.begin() as conn:
                rows = conn.execute(
                    select(key.slot, key.expires).where(key.tenant_id == tenant_id)
                ).all()
            live = {row.slot for row in rows if _utc(row.expires) > now}
            if len(live) >= self.limit:
                return None
            present = {row.slot for row in rows}
            for number in range(self.limit):
                if number in present:
                    continue
                try:
                    with self.holds.begin() as conn:
                        conn.execute(
                            insert(tenant_slots).values(
                                tenant_id=tenant_id, slot=number, holder=holder, expires=expires
                            )
                        )
                except IntegrityError:
                    continue  # another request inserted this number first
                return HeldSlot(tenant_id, number, holder)
            for number in sorted(present - live):
                with self.holds.begin() as conn:
                    if number >= self.limit:  # left by a larger cap before a restart
                        conn.execute(
                            delete(tenant_slots).where(
                                key.tenant_id == tenant_id,
                                key.slot == number,
                                key.expires <= now,
                            )
                        )
                        continue
                    taken = conn.execute(
                        update(tenant_slots)
                        .where(
                            key.tenant_id == tenant_id,
                            key.slot == number,
                            key.expires <= now,
                        )
                        .values(holder=holder, expires=expires)
                    )
                if taken.rowcount == 1:
                    return HeldSlot(tenant_id, number, holder)
        return None

    def renew(self, held: HeldSlot, now: datetime | None = None) -> bool:
        """Push the slot's lease ``lease`` past ``now``; ``False`` if it is no longer ours."""
        now = now or datetime.now(UTC)
        key = tenant_slots.c
        with self.holds.begin() as conn:
            renewed = conn.execute(
                update(tenant_slots)
                .where(
                    key.tenant_id == held.tenant_id,
                    key.slot == held.slot,
                    key.holder == held.holder,
                )
                .values(expires=now + self.lease)
            )
        return renewed.rowcount == 1

    def release(self, held: HeldSlot) -> None:
        """Free the slot, if it is still this holder's (a taken-over slot stays taken)."""
        key = tenant_slots.c
        with self.holds.begin() as conn:
            conn.execute(
                delete(tenant_slots).where(
                    key.tenant_id == held.tenant_id,
                    key.slot == held.slot,
                    key.holder == held.holder,
                )
            )

    def in_use(self, tenant_id: str, now: datetime | None = None) -> int:
        """How many of the tenant's slots are held (leases not expired), all processes."""
        now = now or datetime.now(UTC)
        key = tenant_slots.c
        with self.engine.begin() as conn:
            return conn.execute(
                select(func.count())
                .select_from(tenant_slots)
                .where(key.tenant_id == tenant_id, key.expires > now)
            ).scalar_one()

    async def _keep_renewed(self, held: HeldSlot) -> None:
        while True:
            await asyncio.sleep(self.renew_every_s)
            try:
                kept = await asyncio.to_thread(self.renew, held)
            except Exception:
                logger.warning(
                    "could not renew slot %s of %s", held.slot, held.tenant_id, exc_info=True
                )
                continue
            if not kept:
                logger.warning(
                    "slot %s of %s expired and was taken over before its request ended",
                    held.slot,
                    held.tenant_id,
                )
                return


# How long an ingress process trusts its copy of a tenant's queue settings: an admin's
# change reaches every process within this.
QUEUE_SETTINGS_TTL_S = 5.0


@dataclass(frozen=True)
class TenantQueue:
    """A tenant's weight in the fair queues and its queued-images quota (``None``: none)."""

    weight: float = 1.0
    max_queued_images: int | None = None


class InvalidQueueSetting(KilnError):
    """400 ``invalid_queue_setting`` naming the field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(400, message, param=param, code="invalid_queue_setting")


# The largest queued-images quota: far past any queue (what the column and every client
# hold exactly, too).
MAX_QUEUED_IMAGES_QUOTA = 1_000_000_000


def check_queue_setting(weight: float | None, max_queued_images: int | None) -> None:
    """Refuse a weight outside ``[MIN_WEIGHT, MAX_WEIGHT]`` or a quota outside 1 to
    ``MAX_QUEUED_IMAGES_QUOTA`` (a quota of zero would refuse every request: suspend the
    tenant's keys instead)."""
    if weight is not None and not MIN_WEIGHT <= weight <= MAX_WEIGHT:
        raise InvalidQueueSetting(
            "weight", f"weight must be {MIN_WEIGHT}-{MAX_WEIGHT}; got {weight}"
        )
    if max_queued_images is not None and not 1 <= max_queued_images <= MAX_QUEUED_IMAGES_QUOTA:
        raise InvalidQueueSetting(
            "max_queued_images",
            f"max_queued_images must be 1-{MAX_QUEUED_IMAGES_QUOTA}; got {max_queued_images}",
        )


class TenantQueues:
    """Tenants' queue settings in the database (table ``tenant_queue``), with the server's
    default quota for tenants that have none of their own; read through a short cache."""

    def __init__(self, engine: Engine, default_max_queued_images: int | None) -> None:
        self.engine = engine
        self.default_max_queued_images = default_max_queued_images
        self._cache: dict[str, tuple[float, TenantQueue]] = {}

    def cached(self, tenant_id: str) -> TenantQueue | None:
        """The tenant's settings if read within ``QUEUE_SETTINGS_TTL_S`` (no database)."""
        cached = self._cache.get(tenant_id)
        if cached is not None and time.monotonic() - cached[0] < QUEUE_SETTINGS_TTL_S:
            return cached[1]
        return None

    def of(self, tenant_id: str) -> TenantQueue:
        """The tenant's settings (blocking; cached ``QUEUE_SETTINGS_TTL_S``)."""
        now = time.monotonic()
        cached = self._cache.get(tenant_id)
        if cached is not None and now - cached[0] < QUEUE_SETTINGS_TTL_S:
            return cached[1]
        key = tenant_queue.c
        with self.engine.begin() as conn:
            row = conn.execute(
                select(key.weight, key.max_queued_images).where(key.tenant_id == tenant_id)
            ).first()
        own = row.max_queued_images if row is not None else None
        settings = TenantQueue(
            weight=row.weight if row is not None else 1.0,
            max_queued_images=own if own is not None else self.default_max_queued_images,
        )
        self._cache[tenant_id] = (now, settings)
        return settings

    def set(
        self, tenant_id: str, weight: float | None, max_queued_images: int | None
    ) -> TenantQueue:
        """Store the tenant's weight and own quota (``None`` keeps the weight, and clears
        the quota back to the server's default); the settings now in force."""
        check_queue_setting(weight, max_queued_images)
        key = tenant_queue.c
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            row = conn.execute(select(key.weight).where(key.tenant_id == tenant_id)).first()
            values = {"max_queued_images": max_queued_images, "updated": now}
            if weight is not None:
                values["weight"] = weight
            if row is None:
                conn.execute(
                    insert(tenant_queue).values(tenant_id=tenant_id, **{"weight": 1.0, **values})
                )
            else:
                conn.execute(
                    update(tenant_queue).where(key.tenant_id == tenant_id).values(**values)
                )
        self._cache.pop(tenant_id, None)
        return self.of(tenant_id)
