"""One model's scheduler: the ``FairQueue`` driven on an event loop, plus the queue quota.

Runs in the process that admits calls to the model: in-process beside a
``LocalModelClient``, or inside the model's scheduler actor (``serving.ray.scheduler``),
whose methods are these. Every method but ``admit`` answers at once.

- ``hold``/``unhold``: the tenant's images queued or running on this model, counted per
  order from before its credits are reserved until it ends; past the tenant's quota
  the order is refused (``hold`` answers False, the caller's 429) and nothing is held.
  A tenant with nothing held may always send one order, however large, so a request
  bigger than the quota is not refused for ever.
- ``admit``: queue a ticket and wait until it is admitted (the caller then makes its
  call and ``release``\\ s it); returns the seconds it waited and how many tickets its
  batch group holds (``Admitted``: a group of one starts at once in its replica). A
  ticket that finds a replica free is admitted at once, unless it says other orders
  are on their way to the model (``Ticket.companions``, counted by its caller's
  ``Admission``): then admission gathers the burst, so that its requests share one
  pipeline call instead of the first running alone. The gathering ends ``gather_s``
  (``KILN_BATCH_WAIT_S``) after the last ticket arrived, at once when a group's worth
  of images waits, and at most ``GATHER_LIMIT`` times ``gather_s`` after it began (a
  burst's requests reach the queue one by one, their reservations taking turns on the
  ledger: 8 at once spread over ~25 ms on 2 cores). A lone request never waits. A
  waiter cancelled (its client hung up) leaves the queue. With ``max_queued`` requests
  already waiting (``KILN_MAX_QUEUED``, the bound Ray Serve's router had before the queue
  stood in front of it) a ticket is refused at once with ``QueueFull``: the caller's 503
  ``overloaded``.
- ``position``: where a queued ticket stands and an ETA from the measured seconds per
  image of recent calls.
- ``renew``/``sweep`` (with ``lease_s``, in the actor): admissions and holds whose
  caller stopped renewing them (its process died) are freed, so a dead ingress cannot
  keep a replica's slot for ever.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import cast

from serving.core.scheduling.fair_queue import PRIORITIES, FairQueue, Ticket

# Weight of the newest call in the seconds-per-image estimate behind ETAs.
EWMA_ALPHA = 0.3
# The longest a free replica gathers a burst, in units of ``gather_s``.
GATHER_LIMIT = 4


class QueueFull(Exception):
    """A model's queue holds ``max_queued`` requests already: come back later."""

    def __init__(self, waiting: int) -> None:
        super().__init__(waiting)  # args pickle it whole (it crosses the actor boundary)
        self.waiting = waiting

    def __str__(self) -> str:
        return f"{self.waiting} requests are waiting"


@dataclass(frozen=True)
class Admitted:
    """A ticket's admission: how long it waited, and how many tickets were admitted with
    it into its batch group (the calls its replica may batch it with: 1 is none, so the
    replica starts it at once instead of waiting out its batch window)."""

    waited_s: float
    group_size: int


@dataclass(frozen=True)
class QueuePosition:
    """A queued request's place: requests and images admitted before it (0 = next), and
    the seconds until it should start (``None`` before any call was measured)."""

    requests_ahead: int
    images_ahead: int
    eta_s: float | None


@dataclass(frozen=True)
class SchedulerConfig:
    """What a model's scheduler is built from (picklable: it travels to the actor)."""

    slots: int = 1
    group_images: int = 8
    class_weights: tuple[tuple[str, float], ...] = (("interactive", 4.0), ("batch", 1.0))
    max_queued: int | None = None  # requests waiting for admission; None: no bound
    # How long a burst being gathered waits for its next ticket (0: never gathers).
    gather_s: float = 0.0

    def queue(self) -> FairQueue:
        return FairQueue(self.slots, self.group_images, dict(self.class_weights))


class Scheduler:
    """Admission to one model's replicas (see the module docstring)."""

    def __init__(self, config: SchedulerConfig, lease_s: float | None = None) -> None:
        self.config = config
        self.queue = config.queue()
        # Admissions and holds of other processes (the actor's callers) lapse unless
        # renewed within ``lease_s``: a caller that died frees what it held.
        self.lease_s = lease_s
        self._expires: dict[str, float] = {}
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self._admitted_at: dict[str, float] = {}
        self._group_started: dict[int, float] = {}
        self._group_images: dict[int, int] = {}
        self._holds: dict[str, tuple[str, int]] = {}  # hold id -> (tenant, images)
        self.seconds_per_image: float | None = None
        # While set, admission gathers a burst (see the module docstring), until the
        # event loop's time ``_gather_until`` at most.
        self._gathering: asyncio.TimerHandle | None = None
        self._gather_until = 0.0

    # Quota.

    def hold(self, hold_id: str, tenant: str, images: int, limit: int | None) -> bool:
        """Count ``images`` for ``tenant`` under ``hold_id``; False (nothing held) when
        that would pass ``limit``, the tenant's quota."""
        if limit is not None:
            held = self.held_images(tenant)
            if held > 0 and held + images > limit:
                return False
        self._holds[hold_id] = (tenant, images)
        self._lease(hold_id)
        return True

    def unhold(self, hold_id: str) -> None:
        self._holds.pop(hold_id, None)
        self._expires.pop(hold_id, None)

    # Leases.

    def renew(self, ids: list[str]) -> None:
        """Push on the leases of these admissions and holds (their caller is alive)."""
        for lease_id in ids:
            if lease_id in self._expires:
                self._lease(lease_id)

    def sweep(self) -> list[str]:
        """Free the admissions and holds whose lease ran out; their ids."""
        now = time.monotonic()
        lapsed = [lease_id for lease_id, until in self._expires.items() if until <= now]
        for lease_id in lapsed:
            if lease_id in self._holds:
                self.unhold(lease_id)
            else:
                self.release(lease_id)
        return lapsed

    def _lease(self, lease_id: str) -> None:
        if self.lease_s is not None:
            self._expires[lease_id] = time.monotonic() + self.lease_s

    def held_images(self, tenant: str) -> int:
        return sum(images for owner, images in self._holds.values() if owner == tenant)

    # Admission.

    async def admit(self, ticket: Ticket) -> Admitted:
        """Wait until ``ticket`` is admitted; how long it waited, and its group's size."""
        limit = self.config.max_queued
        if limit is not None and len(self.queue) >= limit:
            raise QueueFull(len(self.queue))
        loop = asyncio.get_running_loop()
        ticket.enqueued = time.monotonic()
        waiter: asyncio.Future[Admitted] = loop.create_future()
        self._waiters[ticket.id] = waiter
        self.queue.push(ticket)
        self._gather(ticket, loop)
        self._dispatch()
        try:
            return await waiter
        except asyncio.CancelledError:
            self.cancel(ticket.id)
            raise
        finally:
            self._waiters.pop(ticket.id, None)

    def release(self, ticket_id: str) -> None:
        """The ticket's call is over (or it never ran): its capacity goes to the next."""
        ticket = self.queue.release(ticket_id)
        self._expires.pop(ticket_id, None)
        started = self._admitted_at.pop(ticket_id, None)
        if ticket is not None and started is not None and not self._in_group(ticket.group):
            self._measure(ticket.group)
        self._dispatch()

    def cancel(self, ticket_id: str) -> None:
        """Out of the queue, or released if it was admitted already."""
        waiter = self._waiters.get(ticket_id)
        if waiter is not None and not waiter.done():
            waiter.cancel()
        if self.queue.is_queued(ticket_id):
            self.queue.cancel(ticket_id)
            self._dispatch()
        else:
            self.release(ticket_id)

    def position(self, ticket_id: str) -> QueuePosition | None:
        """Where a queued ticket stands; ``None`` once admitted (or unknown)."""
        place = self.queue.position(ticket_id)
        if place is None:
            return None
        requests, images = place
        eta = None
        if self.seconds_per_image is not None:
            # What runs now finishes first, then the images ahead, slots in parallel.
            work = self.queue.running_images() + images
            eta = work * self.seconds_per_image / self.config.slots
        return QueuePosition(requests, images, eta)

    def find(self, key: str) -> str | None:
        """A queued ticket's id: ``key`` itself, or a ticket of request ``key`` (ticket
        ids are ``<request id>:<suffix>``)."""
        for ticket_id in self._waiters:
            if (ticket_id == key or ticket_id.startswith(f"{key}:")) and self.queue.is_queued(
                ticket_id
            ):
                return ticket_id
        return None

    def stats(self) -> dict[str, int]:
        """Images queued per class and running, for a look from outside."""
        counts = {name: self.queue.queued_images(name) for name in PRIORITIES}
        return {**counts, "running": self.queue.running_images()}

    def _gather(self, ticket: Ticket, loop: asyncio.AbstractEventLoop) -> None:
        """Start, extend or end the gathering of a burst as ``ticket`` arrives (see the
        module docstring)."""
        gather_s = self.config.gather_s
        if gather_s <= 0 or self.queue.queued_images() >= self.config.group_images:
            self._end_gathering()
            return
        now = loop.time()
        if self._gathering is not None:
            self._gathering.cancel()
            ends = min(now + gather_s, self._gather_until)
            self._gathering = loop.call_at(ends, self._gathered)
        elif ticket.companions > 0 and self.queue.has_free_slot():
            self._gather_until = now + GATHER_LIMIT * gather_s
            self._gathering = loop.call_at(now + gather_s, self._gathered)

    def _gathered(self) -> None:
        self._gathering = None
        self._dispatch()

    def _end_gathering(self) -> None:
        if self._gathering is not None:
            self._gathering.cancel()
            self._gathering = None

    def _dispatch(self) -> None:
        if self._gathering is not None:
            return  # the wait for companions ends with its timer or their arrival
        now = time.monotonic()
        orphans = []
        admitted = self.queue.admit()
        sizes: dict[int | None, int] = {}
        for ticket in admitted:
            sizes[ticket.group] = sizes.get(ticket.group, 0) + 1
        for ticket in admitted:
            group = cast(int, ticket.group)  # admit() sets it
            self._admitted_at[ticket.id] = now
            self._group_started.setdefault(group, now)
            images = min(ticket.images, self.config.group_images)
            self._group_images[group] = self._group_images.get(group, 0) + images
            waiter = self._waiters.get(ticket.id)
            if waiter is None or waiter.done():
                orphans.append(ticket.id)  # its waiter left as it was admitted
                continue
            self._lease(ticket.id)
            waiter.set_result(Admitted(now - ticket.enqueued, sizes[ticket.group]))
        for ticket_id in orphans:
            self.release(ticket_id)

    def _in_group(self, group: int | None) -> bool:
        return group is not None and self.queue.group_running(group)

    def _measure(self, group: int | None) -> None:
        started = self._group_started.pop(group, None)  # type: ignore[arg-type]
        images = self._group_images.pop(group, 0)  # type: ignore[arg-type]
        if started is None or images <= 0:
            return
        per_image = (time.monotonic() - started) / images
        previous = self.seconds_per_image
        self.seconds_per_image = (
            per_image if previous is None else EWMA_ALPHA * per_image + (1 - EWMA_ALPHA) * previous
        )
