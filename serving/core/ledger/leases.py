"""Keeping reservations' leases alive while their holders are (``Ledger.renew``).

A holder renews every quarter lease, so one slow or failed renewal does not lose the
hold, and a holder that dies leaves it for at most one lease. Two shapes of holder:

- a request, on the event loop: ``keep_renewed`` as a task beside it
  (``serving.core.credits.charging.reserve``);
- a job, queued or running on a thread or a Ray task: a ``LeaseKeeper`` thread renews
  every reservation it was asked to keep (``serving.core.jobs.runner``).

A reservation found no longer open (settled, or released by the sweeper after a stall
longer than the lease) is no longer renewed; if the sweeper took it, its holder's
settlement is a no-op that the ledger logs.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from serving.core.ledger.ledger import Ledger
from serving.core.ledger.types import Reservation

logger = logging.getLogger(__name__)

RENEWALS_PER_LEASE = 4


def renew_every_s(ledger: Ledger) -> float:
    """Seconds between renewals of a reservation of ``ledger``."""
    return ledger.reservation_lease.total_seconds() / RENEWALS_PER_LEASE


async def keep_renewed(ledger: Ledger, reservation: Reservation) -> None:
    """Renew ``reservation``'s lease until cancelled, or until it is no longer open."""
    every_s = renew_every_s(ledger)
    while True:
        await asyncio.sleep(every_s)
        try:
            kept = await asyncio.to_thread(ledger.renew, reservation)
        except Exception:
            logger.warning("could not renew reservation %s", reservation.id, exc_info=True)
            continue
        if not kept:
            logger.info("reservation %s is no longer open; not renewed", reservation.id)
            return


class LeaseKeeper:
    """Renews the reservations it keeps on a daemon thread (started by the first ``keep``)
    until each is dropped; ``close`` stops it. Usable as a context manager."""

    def __init__(self, ledger: Ledger, name: str = "kiln-leases") -> None:
        self.ledger = ledger
        self.name = name
        self._kept: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def keep(self, reservation_id: str | None) -> None:
        """Renew ``reservation_id`` from now on (``None``: a free job, nothing to keep)."""
        if reservation_id is None:
            return
        with self._lock:
            self._kept.add(reservation_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def drop(self, reservation_id: str | None) -> None:
        """Stop renewing ``reservation_id`` (its holder settled it, or is about to)."""
        with self._lock:
            self._kept.discard(reservation_id)

    def kept(self) -> set[str]:
        """The reservations renewed now."""
        with self._lock:
            return set(self._kept)

    def close(self) -> None:
        """Stop renewing anything (the thread ends at its next wake-up)."""
        self._stop.set()

    def __enter__(self) -> LeaseKeeper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.wait(renew_every_s(self.ledger)):
            for reservation_id in self.kept():
                try:
                    kept = self.ledger.renew(reservation_id)
                except Exception:
                    logger.warning("could not renew reservation %s", reservation_id, exc_info=True)
                    continue
                if not kept:
                    logger.info("reservation %s is no longer open; not renewed", reservation_id)
                    self.drop(reservation_id)
