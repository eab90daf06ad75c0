"""Admission: what a model client does around each model call, and the queue quota.

``Admission`` is the port: the model clients wrap their generation calls in
``admitted(params)`` (queued in the model's fair queue, then the call, then the release)
and the paid path wraps an order in ``held(model, images)`` (the tenant's queued-images
quota, before any credit is reserved). Tenant and priority come from the context
variables of ``serving.core.scheduling.context``, so no signature in between changes.

``LocalAdmission`` runs one ``Scheduler`` per model in this process: ``LocalModelClient``
(tools, benchmarks, batch workers, in-process tests) and ``kiln serve``'s own HTTP front,
the one process every request of that server enters (no hop: the queue is a few dict
operations, while a Ray actor call is milliseconds each way on a busy host);
``serving.ray.scheduler.RayAdmission`` asks each model's scheduler actor, shared by every
ingress replica under Ray Serve's front. ``KILN_SCHEDULER`` chooses (``serving.ray.app``).

Orders on their way: ``held`` counts each order for its model until its first call is
queued, and ``admitted`` gives that count to the call's ticket (``Ticket.companions``):
the scheduler then lets a free replica wait a moment for the rest of a burst
(``serving.core.scheduling.scheduler``). Each process counts its own orders. Before an
order names its model it is counted too, from the moment its request reaches an image
route (``arriving``, entered by the HTTP adapter) until ``held``: a burst's first request
could otherwise reach the queue before any other had reached the paid path, and run
alone on the free replica while the rest of the burst waited for it (3 of 20 bursts of
8 split so in benchmarks/serving_overhead.py). And a call that would ask alone first
gives the event loop two turns, so requests already read off their sockets get that far
(``_take_in_what_has_arrived``). Those count for every model, so a call may wait for a
companion that went to another model: at most ``gather_s``.

Metrics (``serving.core.metrics``): images waiting for admission in this process and
the wait of each admitted call, per model and class; summed over ingress replicas they
are the model's.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from serving.core.errors import service_unavailable, too_many_requests
from serving.core.logs import current_request_id
from serving.core.scheduling.context import current_priority, current_work, queue_listener
from serving.core.scheduling.fair_queue import Ticket, parse_class_weights
from serving.core.scheduling.scheduler import (
    Admitted,
    QueueFull,
    QueuePosition,
    Scheduler,
    SchedulerConfig,
)

if TYPE_CHECKING:
    from serving.core.metrics import Metrics

logger = logging.getLogger(__name__)

# A tenant over its queued-images quota may retry when a call of its own has run.
QUOTA_RETRY_AFTER_S = 2
# Where a call runs for nobody in particular (no paid order around it: pings, tools).
NO_TENANT = "-"
# A call that went through no queue (KILN_FAIR_QUEUE=0): its group's size is unknown (0),
# and its replica batches it by its own rule (a call that finds it idle starts at once).
NOT_QUEUED = Admitted(0.0, 0)
# How often a queued call with a listener (a job) is told its position.
POSITION_EVERY_S = 0.5
# The order around a call, while it is on its way: [its model] until its first call is
# queued, then [] (an order's later calls, such as an agent's rounds, announce nothing).
_on_the_way: ContextVar[list[str] | None] = ContextVar("kiln_order_on_the_way", default=None)
# The request around an order, from its image route until it names its model: [the
# Admission counting it] while counted, then [] (``Admission.arriving``).
_in_front: ContextVar[list[Admission] | None] = ContextVar("kiln_request_in_front", default=None)


def scheduler_config(settings: Any, slots: int = 1) -> SchedulerConfig:
    """A model's ``SchedulerConfig`` from settings: a group is one call's worth of images
    (``KILN_MAX_BATCH_SIZE``), ``slots`` the replicas that run groups side by side, the
    wait for a burst's companions ``KILN_BATCH_WAIT_S``."""
    weights = parse_class_weights(settings.scheduler_class_weights)
    return SchedulerConfig(
        slots=max(1, slots),
        group_images=settings.max_batch_size,
        class_weights=tuple(sorted(weights.items())),
        max_queued=settings.max_queued,
        # A free replica's first call waits for a burst's companions about as long as
        # a replica's batch would wait to fill (see the scheduler's docstring).
        gather_s=settings.batch_wait_s,
    )


class Admission:
    """The shared half of both adapters: tickets from the context, metrics, the quota's
    429. Subclasses say how a ticket reaches its model's scheduler."""

    def __init__(self, enabled: bool = True, default_max_queued_images: int | None = None) -> None:
        # Off (KILN_FAIR_QUEUE=0): calls go straight to the model, as before the queue.
        self.enabled = enabled
        # KILN_TENANT_MAX_QUEUED_IMAGES: a tenant's quota unless the admin set its own.
        self.default_max_queued_images = default_max_queued_images
        self.metrics: Metrics | None = None
        # Orders in this process per model whose first call is not queued yet.
        self.on_the_way: Counter[str] = Counter()
        # Requests of this process on an image route whose order has not named its model.
        self.in_front = 0

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Count the request of the block as on its way to some model until its order
        names one (``held``), or until the block ends."""
        if not self.enabled:
            yield
            return
        self.in_front += 1
        counted: list[Admission] = [self]
        token = _in_front.set(counted)
        try:
            yield
        finally:
            _in_front.reset(token)
            _named(counted)

    @asynccontextmanager
    async def held(self, model: str, images: int) -> AsyncIterator[None]:
        """Count the order's ``images`` against its tenant's quota on ``model`` for the
        block; 429 ``tenant_queue_limit`` (nothing held) past it. The order counts as on
        its way to ``model`` until its first call is queued (or the block ends)."""
        if not self.enabled:
            yield
            return
        _named(_in_front.get())
        self.on_the_way[model] += 1
        way = [model]
        token = _on_the_way.set(way)
        try:
            async with self._quota(model, images):
                yield
        finally:
            _on_the_way.reset(token)
            self._arrived(way)

    def _arrived(self, way: list[str]) -> None:
        """The order of ``way`` is no longer on its way (its first call is queued)."""
        if way:
            model = way.pop()
            self.on_the_way[model] -= 1
            if self.on_the_way[model] <= 0:
                del self.on_the_way[model]

    @asynccontextmanager
    async def _quota(self, model: str, images: int) -> AsyncIterator[None]:
        work = current_work.get()
        if work is None or work.max_queued_images is None:
            yield
            return
        limit = work.max_queued_images
        hold_id = f"{current_request_id.get() or 'order'}:{uuid.uuid4().hex[:12]}"
        if not await self._hold(model, hold_id, work.tenant_id, images, limit):
            raise too_many_requests(
                f"too many images queued: this tenant may have {limit} images queued "
                f"or running on {model!r} at once",
                "tenant_queue_limit",
                QUOTA_RETRY_AFTER_S,
            )
        try:
            yield
        finally:
            await self._give_back(self._unhold(model, hold_id))

    @asynccontextmanager
    async def admitted(self, params: Any) -> AsyncIterator[Admitted]:
        """Hold an admission to ``params.model``'s replicas for the block (the call); the
        block gets the ``Admitted`` (its group's size goes with the call to the replica:
        ``NOT_QUEUED`` when the queue is off)."""
        if not self.enabled:
            yield NOT_QUEUED
            return
        work = current_work.get()
        ticket = Ticket(
            id=f"{current_request_id.get() or 'call'}:{uuid.uuid4().hex[:12]}",
            tenant=work.tenant_id if work is not None else NO_TENANT,
            priority=current_priority.get(),
            images=params.n,
            batch_key=params.batch_key,
            weight=work.weight if work is not None else 1.0,
        )
        model = params.model
        way = _on_the_way.get()
        if way:
            self._arrived(way)
        _named(_in_front.get())  # a call outside a paid order: not its own companion
        if self.on_the_way[model] + self.in_front == 0:
            await _take_in_what_has_arrived()
        ticket.companions = self.on_the_way[model] + self.in_front
        queued = self._gauge(model, ticket.priority)
        if queued is not None:
            queued.inc(ticket.images)
        listener = queue_listener.get()
        telling = None
        if listener is not None:
            telling = asyncio.ensure_future(self._tell(model, ticket.id, listener))
        try:
            admission = await self._admit(model, ticket)
        except QueueFull as full:  # from the actor too: Ray's error is also a QueueFull
            raise service_unavailable(
                f"model {model!r} has {full.waiting} requests waiting; retry shortly",
                retry_after_s=1,
            ) from None
        finally:
            if telling is not None:
                telling.cancel()
            if queued is not None:
                queued.dec(ticket.images)
        if self.metrics is not None:
            self.metrics.queue_wait.labels(model, ticket.priority).observe(admission.waited_s)
        try:
            yield admission
        finally:
            await self._give_back(self._release(model, ticket.id))

    async def _give_back(self, step: Coroutine[Any, Any, None]) -> None:
        """Run a release or an unhold to its end, even for a cancelled request: shielded
        where it awaits (an actor's round trip); in place where it does not
        (``gives_back_in_place``), as nothing can interrupt a coroutine that never
        suspends, and a shield's task would cost the request two loop iterations."""
        if self.gives_back_in_place:
            await step
        else:
            await asyncio.shield(step)

    async def _tell(self, model: str, ticket_id: str, listener: Any) -> None:
        """Tell ``listener`` the queued ticket's position until it is admitted."""
        while True:
            await asyncio.sleep(POSITION_EVERY_S)  # most calls never wait this long
            try:
                position = await self._position(model, ticket_id)
            except Exception:
                logger.debug("no queue position for %s", ticket_id, exc_info=True)
                continue
            if position is not None:
                listener(position)

    def _gauge(self, model: str, priority: str) -> Any:
        return None if self.metrics is None else self.metrics.queued_images.labels(model, priority)

    async def position(self, model: str, request_id: str) -> QueuePosition | None:
        """Where the call of request ``request_id`` waits for ``model`` (``None`` when it
        is not queued: admitted, done or never queued)."""
        if not self.enabled:
            return None
        return await self._position(model, request_id)

    # What an adapter provides.

    # Whether ``_release`` and ``_unhold`` finish without suspending (this process's own
    # schedulers), so they need no shield (``_give_back``).
    gives_back_in_place = False

    async def _hold(
        self, model: str, hold_id: str, tenant: str, images: int, limit: int | None
    ) -> bool:
        raise NotImplementedError

    async def _unhold(self, model: str, hold_id: str) -> None:
        raise NotImplementedError

    async def _admit(self, model: str, ticket: Ticket) -> Admitted:
        raise NotImplementedError

    async def _release(self, model: str, ticket_id: str) -> None:
        raise NotImplementedError

    async def _position(self, model: str, request_id: str) -> QueuePosition | None:
        raise NotImplementedError


async def _take_in_what_has_arrived() -> None:
    """Two turns of the event loop, for a call that would otherwise ask alone: requests
    already read off their sockets then run up to their image route and count
    (``arriving``). In the first turn the loop reads what has arrived and queues each new
    request's task behind this one; in the second those tasks run. Without it a burst's
    first request, its reservation finished while the loop was busy (a thread holding the
    GIL was descheduled for 5 ms on a 2-core host), took the free replica alone with the
    other seven already waiting in their sockets. A lone request pays the two turns
    (tens of microseconds on an idle loop)."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def _named(counted: list[Admission] | None) -> None:
    """The request of ``counted`` is no longer counted in front of the models."""
    if counted:
        counted.pop().in_front -= 1


class LocalAdmission(Admission):
    """One ``Scheduler`` per model in this process, made on the model's first call."""

    gives_back_in_place = True  # the schedulers' release and unhold are plain calls

    def __init__(
        self,
        config: SchedulerConfig | None = None,
        enabled: bool = True,
        default_max_queued_images: int | None = None,
        configs: dict[str, SchedulerConfig] | None = None,
    ) -> None:
        super().__init__(enabled, default_max_queued_images)
        self.config = config or SchedulerConfig()
        self.configs = configs or {}  # per model (its replicas' slots); else ``config``
        self.schedulers: dict[str, Scheduler] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> LocalAdmission:
        return cls(
            scheduler_config(settings),
            enabled=settings.fair_queue,
            default_max_queued_images=settings.tenant_max_queued_images,
        )

    def scheduler(self, model: str) -> Scheduler:
        if model not in self.schedulers:
            self.schedulers[model] = Scheduler(self.configs.get(model, self.config))
        return self.schedulers[model]

    async def _hold(
        self, model: str, hold_id: str, tenant: str, images: int, limit: int | None
    ) -> bool:
        return self.scheduler(model).hold(hold_id, tenant, images, limit)

    async def _unhold(self, model: str, hold_id: str) -> None:
        self.scheduler(model).unhold(hold_id)

    async def _admit(self, model: str, ticket: Ticket) -> Admitted:
        return await self.scheduler(model).admit(ticket)

    async def _release(self, model: str, ticket_id: str) -> None:
        self.scheduler(model).release(ticket_id)

    async def _position(self, model: str, request_id: str) -> QueuePosition | None:
        scheduler = self.scheduler(model)
        ticket_id = scheduler.find(request_id)
        return None if ticket_id is None else scheduler.position(ticket_id)
