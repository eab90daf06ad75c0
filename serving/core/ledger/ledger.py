"""The credits ledger: grants, reservations captured per image, license purchases.

Every change is one transaction that appends entries and moves the tenant's ``balances``
row with a *conditional* UPDATE (``... WHERE available >= :x``; zero rows means not enough
credits). The database, not a Python lock, decides between concurrent requests, so the
balance never goes negative with many threads, processes or machines spending at once.

Leases. A reservation holds its credits until ``expires`` (``reservation_lease_s``, from
``KILN_RESERVATION_LEASE_S``); its holder renews it while alive (``renew``: a request's
task in ``serving.core.credits.charging``, the job runner for queued and running jobs), so only
a holder that died or stalled for a whole lease lets it expire. ``sweep_expired`` releases
expired reservations, each with a conditional UPDATE that a renewal committed first wins,
and stamps ``swept_at``. A holder that settles afterwards gets a logged no-op: ``release``
returns 0, and ``capture`` charges nothing and returns ``None`` (the holder stalled past
the lease, its credits were already given back; charging now could only double-book or
overdraw). The sweep runs for one tenant before a reservation its available credits do
not cover (its credits are never refused for a hold nobody owns; a reservation they cover
costs no sweep) and when it reads ``GET /v1/credits``, and for everyone at server start
and with the stale-job reaper (``serving.core.jobs.runner``).

Durability. What moved credits for good (a grant, a settlement's captures, a purchase)
commits durably. A hold, its renewals and its release without a capture commit through
``holds`` (``serving.core.ledger.db.transient``): on SQLite they are not flushed to the
disk, since only a power loss could lose them, and it ends the request holding them too;
the settlement that captures from a reservation, or the job row that names it, commits
durably after it and so flushes it as well. One flush less per request.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Row, Select, bindparam, insert, select, update

from serving.core.ledger.db import create_ledger_engine, migrate, read_only, transient
from serving.core.ledger.driver import DriverStatement
from serving.core.ledger.idempotency import IdempotencyKeys
from serving.core.ledger.schema import balances, entries, reservations, tenants
from serving.core.ledger.types import (
    MAX_CREDITS,
    Balance,
    CreditsLimit,
    Entry,
    InsufficientCredits,
    LedgerError,
    Reservation,
    Tenant,
    UnknownReservation,
    UnknownTenant,
)

if TYPE_CHECKING:
    from serving.core.settings import Settings

logger = logging.getLogger(__name__)

# The largest id an entry can have: a 64-bit signed integer on either database.
MAX_ENTRY_ID = 2**63 - 1

# KILN_RESERVATION_LEASE_S's default, for ledgers opened without settings (tools, tests).
DEFAULT_RESERVATION_LEASE_S = 600.0

# The statements of a request's two transactions (reserve; settle), built once with bound
# parameters and run on the driver's cursor, compiled once per dialect (``DriverStatement``:
# SQLAlchemy's execution machinery was most of both transactions' time). Bound names carry
# a ``b_`` prefix: a column's own name is reserved for the SET and VALUES of its statement.
_res, _bal = reservations.c, balances.c
_INSERT_RESERVATION = DriverStatement(insert(reservations))
_INSERT_ENTRY = DriverStatement(insert(entries).returning(entries.c.id))
_RESERVATION_ROW = select(reservations).where(_res.id == bindparam("b_id"))
_EXPIRED_OF_TENANT = (
    select(_res.id)
    .where(_res.state == "open", _res.expires <= bindparam("b_at"))
    .where(_res.tenant_id == bindparam("b_tenant"))
    .order_by(_res.expires)
)
_HOLD = DriverStatement(
    update(balances)
    .where(_bal.tenant_id == bindparam("b_tenant"), _bal.available >= bindparam("b_amount"))
    .values(
        available=_bal.available - bindparam("b_amount"), held=_bal.held + bindparam("b_amount")
    )
)
_SPEND = DriverStatement(
    update(balances)
    .where(_bal.tenant_id == bindparam("b_tenant"), _bal.available >= bindparam("b_amount"))
    .values(available=_bal.available - bindparam("b_amount"))
)
# A capture and a close answer the reservation's row as they left it (RETURNING: no
# second statement to read it), or no row when their condition did not hold.
_CAPTURE = DriverStatement(
    update(reservations)
    .where(
        _res.id == bindparam("b_id"),
        _res.state == "open",
        _res.captured + bindparam("b_amount") <= _res.amount,
    )
    .values(captured=_res.captured + bindparam("b_amount"))
    .returning(_res.tenant_id, _res.reference)
)
_UNHOLD = DriverStatement(
    update(balances)
    .where(_bal.tenant_id == bindparam("b_tenant"), _bal.held >= bindparam("b_amount"))
    .values(held=_bal.held - bindparam("b_amount"))
)
_CLOSE = DriverStatement(
    update(reservations)
    .where(_res.id == bindparam("b_id"), _res.state == "open")
    .values(state="released")
    .returning(_res.tenant_id, _res.reference, _res.amount, _res.captured)
)
# The sweeper's close: only while still expired as committed (a renewal that got in first
# keeps its reservation), stamped with the sweep's time.
_CLOSE_EXPIRED = DriverStatement(
    update(reservations)
    .where(_res.id == bindparam("b_id"), _res.state == "open", _res.expires <= bindparam("b_at"))
    .values(state="released", swept_at=bindparam("b_at"))
    .returning(_res.tenant_id, _res.reference, _res.amount, _res.captured)
)
_RETURN_REST = DriverStatement(
    update(balances)
    .where(_bal.tenant_id == bindparam("b_tenant"))
    .values(available=_bal.available + bindparam("b_rest"), held=_bal.held - bindparam("b_rest"))
)


def now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands timestamps back naive; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _positive(amount: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise LedgerError(f"amount must be a positive whole number of credits, got {amount!r}")
    return amount


class Ledger:
    """Credits of every tenant, in the database at ``url`` (migrated on open); a
    reservation's lease is ``reservation_lease_s``."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        run_migrations: bool = True,
        reservation_lease_s: float = DEFAULT_RESERVATION_LEASE_S,
    ) -> None:
        self.url = url
        self.engine: Engine = create_ledger_engine(url, pool_size=pool_size)
        # Reads that must not queue behind writers (SQLite): balances, entries, sweeps' scans.
        self.reader: Engine = read_only(self.engine)
        # Holds (a reservation, its renewals, its release without a capture) die with the
        # process that took them: on SQLite their commits skip the WAL's flush (``transient``).
        # Whatever captures from a hold (a settlement) or names it (a job's row) commits
        # durably after it, flushing it too.
        self.holds: Engine = transient(self.engine)
        if run_migrations:
            migrate(self.engine)
        self.idempotency = IdempotencyKeys(self.engine)
        self.reservation_lease = timedelta(seconds=reservation_lease_s)

    @classmethod
    def of(cls, settings: Settings, *, run_migrations: bool = True) -> Ledger:
        """The ledger ``settings`` name: its database and reservation lease."""
        return cls(
            settings.database_url,
            run_migrations=run_migrations,
            reservation_lease_s=settings.reservation_lease_s,
        )

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Tenants

    def create_tenant(self, name: str) -> Tenant:
        """A new tenant with an empty balance."""
        tenant = Tenant(id=f"ten_{secrets.token_hex(12)}", name=name, created=now())
        with self.engine.begin() as conn:
            conn.execute(insert(tenants).values(id=tenant.id, name=name, created=tenant.created))
            conn.execute(insert(balances).values(tenant_id=tenant.id, available=0, held=0))
        return tenant

    def tenant(self, tenant_id: str) -> Tenant:
        """The tenant ``tenant_id``; raises ``UnknownTenant``."""
        with self.engine.begin() as conn:
            row = conn.execute(select(tenants).where(tenants.c.id == tenant_id)).one_or_none()
        if row is None:
            raise UnknownTenant(tenant_id)
        return Tenant(id=row.id, name=row.name, created=as_utc(row.created))

    # Credits

    def grant(self, tenant_id: str, amount: int, reference: str | None = None) -> Entry:
        """Add ``amount`` credits to the tenant's available balance; ``CreditsLimit`` when
        the tenant would hold more than ``MAX_CREDITS`` (the database decides, as for
        spending: the UPDATE's condition is checked against the committed row)."""
        _positive(amount)
        if amount > MAX_CREDITS:
            raise CreditsLimit(amount, None)
        with self.engine.begin() as conn:
            bal = balances.c
            moved = conn.execute(
                update(balances)
                .where(bal.tenant_id == tenant_id, bal.available + bal.held <= MAX_CREDITS - amount)
                .values(available=bal.available + amount)
            )
            if moved.rowcount != 1:
                total = conn.execute(
                    select(bal.available + bal.held).where(bal.tenant_id == tenant_id)
                ).scalar_one_or_none()
                if total is None:
                    raise UnknownTenant(tenant_id)
                raise CreditsLimit(amount, total)
            return self._append(conn, tenant_id, "grant", amount, 0, None, reference)

    def reserve(self, tenant_id: str, amount: int, reference: str | None = None) -> Reservation:
        """Hold ``amount`` credits before any work, for one lease (``renew`` keeps it);
        raises ``InsufficientCredits``. When the available credits do not cover it, the
        tenant's expired reservations are released first and it is asked again, in the
        same transaction."""
        _positive(amount)
        reservation = Reservation(
            id=f"res_{secrets.token_hex(12)}", tenant_id=tenant_id, amount=amount
        )
        at = now()
        with self.holds.begin() as conn:
            # The conditional UPDATE locks the balance row only when it holds; refused, it
            # locks nothing, and the sweep then takes reservation rows before the balance
            # row, as capture and release do: no lock-order cycle either way.
            held = _HOLD.execute(conn, {"b_tenant": tenant_id, "b_amount": amount})
            if held.rowcount != 1:
                expired = conn.execute(_EXPIRED_OF_TENANT, {"b_at": at, "b_tenant": tenant_id})
                for row in expired.all():
                    self._sweep_one(conn, row.id, at)
                self._debit(conn, tenant_id, amount, hold=True)
            _INSERT_RESERVATION.execute(
                conn,
                {
                    "id": reservation.id,
                    "tenant_id": tenant_id,
                    "amount": amount,
                    "captured": 0,
                    "state": "open",
                    "reference": reference,
                    "created": at,
                    "expires": at + self.reservation_lease,
                },
            )
            self._append(conn, tenant_id, "reserve", -amount, amount, reservation.id, reference)
        return reservation

    def capture(self, reservation: Reservation | str, amount: int) -> Entry | None:
        """Spend ``amount`` of an open reservation (call once per delivered image).

        Captures add up to at most the reserved amount; past it, or after ``release``,
        this raises ``LedgerError`` and spends nothing. After the sweeper released the
        reservation (its lease ran out) it is a logged no-op: ``None``, nothing charged.
        """
        _positive(amount)
        with self.engine.begin() as conn:
            return self._capture_in(conn, _reservation_id(reservation), amount)

    def settle(
        self,
        reservation: Reservation | str,
        unit: int,
        count: int,
        also: Callable[[Connection], None] | None = None,
    ) -> tuple[int, int]:
        """Capture ``count`` units of ``unit`` (one entry each, as ``capture``) and release
        the rest, in one transaction: what a request does once it delivered. ``also``
        writes in the same transaction first (the delivered assets' rows: written with
        their settlement or not at all). Returns the credits captured and released; after
        the sweeper released the reservation both are 0 (logged, nothing charged)."""
        reservation_id = _reservation_id(reservation)
        captured = 0
        with self.engine.begin() as conn:
            if also is not None:
                also(conn)
            for _ in range(count if unit else 0):
                if self._capture_in(conn, reservation_id, unit) is None:
                    break
                captured += unit
            released = self._release_in(conn, reservation_id)
        return captured, released or 0

    def _capture_in(self, conn: Connection, reservation_id: str, amount: int) -> Entry | None:
        _positive(amount)
        # Locks the reservation row first, as release does: no lock-order cycle.
        captured = _CAPTURE.execute(conn, {"b_id": reservation_id, "b_amount": amount}).fetchone()
        if captured is None:
            row = self._reservation_row(conn, reservation_id)
            if row.swept_at is not None:
                logger.error(
                    "capture of %d on reservation %s (%s) after the sweeper released it "
                    "at %s: its holder outlived the lease; not charged",
                    amount,
                    reservation_id,
                    row.reference,
                    row.swept_at,
                )
                return None
            if row.state != "open":
                raise LedgerError(f"reservation {reservation_id} is already released")
            left = row.amount - row.captured
            raise LedgerError(
                f"capture of {amount} exceeds the {left} left on reservation {reservation_id}"
            )
        tenant_id, reference = captured
        held = _UNHOLD.execute(conn, {"b_tenant": tenant_id, "b_amount": amount})
        if held.rowcount != 1:  # only if balances was edited behind the ledger's back
            raise LedgerError(f"tenant {tenant_id} holds less than {amount}")
        return self._append(conn, tenant_id, "capture", 0, -amount, reservation_id, reference)

    def release(self, reservation: Reservation | str) -> int:
        """Return the uncaptured rest of a reservation; the amount returned.

        Idempotent: a second release (or one racing another, or the sweeper's) returns 0
        and changes nothing; one after the sweeper's is logged.
        """
        reservation_id = _reservation_id(reservation)
        with self.holds.begin() as conn:
            rest = self._release_in(conn, reservation_id)
        return rest or 0

    def renew(self, reservation: Reservation | str, at: datetime | None = None) -> bool:
        """Push an open reservation's lease to a full lease after ``at`` (now); ``False``
        when it is no longer open (settled, or released by the sweeper)."""
        at = at or now()
        with self.holds.begin() as conn:
            renewed = conn.execute(
                update(reservations)
                .where(
                    reservations.c.id == _reservation_id(reservation),
                    reservations.c.state == "open",
                )
                .values(expires=at + self.reservation_lease)
            )
        return renewed.rowcount == 1

    def sweep_expired(
        self, at: datetime | None = None, tenant_id: str | None = None
    ) -> dict[str, int]:
        """Release every open reservation whose lease ended before ``at`` (now), of one
        tenant or of all; ``{reservation id: credits returned}``. Found by a read that
        takes no lock, so a sweep that finds nothing costs no write transaction."""
        at = at or now()
        with self.reader.begin() as conn:
            expired = [row.id for row in conn.execute(self._expired(at, tenant_id)).all()]
        swept: dict[str, int] = {}
        for reservation_id in expired:
            with self.engine.begin() as conn:
                rest = self._sweep_one(conn, reservation_id, at)
            if rest is not None:
                swept[reservation_id] = rest
        return swept

    def purchase(self, tenant_id: str, amount: int, reference: str | None = None) -> Entry:
        """Spend ``amount`` at once on a license; raises ``InsufficientCredits``."""
        with self.engine.begin() as conn:
            return self.purchase_in(conn, tenant_id, amount, reference)

    def purchase_in(
        self, conn: Connection, tenant_id: str, amount: int, reference: str | None = None
    ) -> Entry:
        """``purchase`` inside the caller's transaction on ``self.engine``, so the spend
        and what it buys (a license row) commit or roll back together."""
        _positive(amount)
        self._debit(conn, tenant_id, amount, hold=False)
        return self._append(conn, tenant_id, "license_purchase", -amount, 0, None, reference)

    def balance(self, tenant_id: str) -> Balance:
        """The tenant's available and held credits; raises ``UnknownTenant``."""
        with self.reader.begin() as conn:
            row = conn.execute(
                select(balances.c.available, balances.c.held).where(
                    balances.c.tenant_id == tenant_id
                )
            ).one_or_none()
        if row is None:
            raise UnknownTenant(tenant_id)
        return Balance(available=row.available, held=row.held)

    def entries(self, tenant_id: str, limit: int = 50, before: int | None = None) -> list[Entry]:
        """The tenant's entries, newest first; ``before`` (an entry id) pages back. A
        cursor past every id the column can hold reads from the newest, as none does, and
        one under 1 reads nothing (either database would refuse the number itself)."""
        if before is not None and before < 1:
            return []
        query = select(entries).where(entries.c.tenant_id == tenant_id)
        if before is not None and before <= MAX_ENTRY_ID:
            query = query.where(entries.c.id < before)
        query = query.order_by(entries.c.id.desc()).limit(limit)
        with self.reader.begin() as conn:
            rows = conn.execute(query).all()
        return [_entry(row) for row in rows]

    # Internals

    def _expired(self, at: datetime, tenant_id: str | None) -> Select[tuple[str]]:
        query = select(reservations.c.id).where(
            reservations.c.state == "open", reservations.c.expires <= at
        )
        if tenant_id is not None:
            query = query.where(reservations.c.tenant_id == tenant_id)
        return query.order_by(reservations.c.expires)

    def _sweep_one(self, conn: Connection, reservation_id: str, at: datetime) -> int | None:
        # Still expired as committed: a renewal that got in first keeps its reservation.
        rest = self._release_in(conn, reservation_id, swept_at=at)
        if rest is not None:
            logger.warning(
                "reservation %s expired unsettled (its holder died or stalled past the "
                "lease); released %d credit(s)",
                reservation_id,
                rest,
            )
        return rest

    def _release_in(
        self, conn: Connection, reservation_id: str, swept_at: datetime | None = None
    ) -> int | None:
        """Close the open reservation and return its rest to the balance; the credits
        returned, or ``None`` when it was not open (nothing changed). ``swept_at``: the
        sweeper's close, only while the reservation is still expired at that time."""
        if swept_at is None:
            closed = _CLOSE.execute(conn, {"b_id": reservation_id}).fetchone()
        else:
            closed = _CLOSE_EXPIRED.execute(
                conn, {"b_id": reservation_id, "b_at": swept_at}
            ).fetchone()
        if closed is None:
            row = self._reservation_row(conn, reservation_id)
            if swept_at is None and row.swept_at is not None:
                logger.warning(
                    "release of reservation %s (%s): the sweeper released it at %s already; "
                    "nothing to return",
                    reservation_id,
                    row.reference,
                    row.swept_at,
                )
            return None
        tenant_id, reference, amount, captured = closed
        rest: int = amount - captured
        if rest:
            _RETURN_REST.execute(conn, {"b_tenant": tenant_id, "b_rest": rest})
            self._append(conn, tenant_id, "release", rest, -rest, reservation_id, reference)
        return rest

    def _debit(self, conn: Connection, tenant_id: str, amount: int, *, hold: bool) -> None:
        # The conditional UPDATE is the whole guard: the database re-checks
        # ``available >= amount`` against the row as committed by any concurrent writer.
        moved = (_HOLD if hold else _SPEND).execute(
            conn, {"b_tenant": tenant_id, "b_amount": amount}
        )
        if moved.rowcount == 1:
            return
        available = conn.execute(
            select(balances.c.available).where(balances.c.tenant_id == tenant_id)
        ).scalar_one_or_none()
        if available is None:
            raise UnknownTenant(tenant_id)
        raise InsufficientCredits(tenant_id, needed=amount, available=available)

    def _append(
        self,
        conn: Connection,
        tenant_id: str,
        kind: str,
        amount: int,
        held: int,
        reservation_id: str | None,
        reference: str | None,
    ) -> Entry:
        created = now()
        inserted = _INSERT_ENTRY.execute(
            conn,
            {
                "tenant_id": tenant_id,
                "kind": kind,
                "amount": amount,
                "held": held,
                "reservation_id": reservation_id,
                "reference": reference,
                "created": created,
            },
        )
        (entry_id,) = inserted.fetchone()
        return Entry(entry_id, tenant_id, kind, amount, held, reservation_id, reference, created)

    def _reservation_row(self, conn: Connection, reservation_id: str) -> Row[Any]:
        row = conn.execute(_RESERVATION_ROW, {"b_id": reservation_id}).one_or_none()
        if row is None:
            raise UnknownReservation(reservation_id)
        return row


def _reservation_id(reservation: Reservation | str) -> str:
    return reservation.id if isinstance(reservation, Reservation) else reservation


def _entry(row: Row[Any]) -> Entry:
    return Entry(
        id=row.id,
        tenant_id=row.tenant_id,
        kind=row.kind,
        amount=row.amount,
        held=row.held,
        reservation_id=row.reservation_id,
        reference=row.reference,
        created=as_utc(row.created),
    )
