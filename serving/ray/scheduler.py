"""Each model's scheduler as a Ray actor shared by every ingress, and ``RayAdmission``.

Used where several ingress processes share a model: under Ray Serve's HTTP front (its
``KilnIngress`` replicas) or with ``KILN_SCHEDULER=actor``. ``kiln serve``'s own front is
the server's only ingress, and its schedulers run in its process
(``serving.core.scheduling.admission.LocalAdmission``; ``serving.ray.app.admission``).

One actor per model (``SchedulerActor``, named ``kiln-scheduler:<model id>`` in the
``kiln`` namespace) holds the model's ``Scheduler`` (``serving.core.scheduling``): every
ingress replica's calls to the model queue in it, so priorities, fair shares and quotas
hold across ingress replicas, and it alone admits calls to the model's replicas. Its
capacity is one batch group (``KILN_MAX_BATCH_SIZE`` images of one batch key) per
replica the model may have, so the in-replica ``serve.batch`` queue only holds what runs
next and Ray Serve's router queue stays empty.

The actor is made by the first ingress that needs it (``get_if_exists``), not by the app
builder: ``serve deploy`` builds the app in a process that goes away, and an actor is
owned by (and dies with) its creator. It is not detached: it goes with the app.

A scheduler that dies (killed, its node or owner lost) loses its queue, not requests:
each caller waiting for admission gets Ray's actor error and queues again on a new
actor, up to ``ADMIT_TRIES`` times (a few seconds), after which the request answers 503
``scheduler_unavailable`` with ``retry-after`` and the paid path releases its credits.
Calls already admitted run on and their release to the dead actor is dropped; until
they end, the new actor may admit past capacity (a replica's queue holds them: nothing
is lost). Quota holds on the dead actor are forgotten the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ray

from serving.core.errors import service_unavailable
from serving.core.scheduling.admission import Admission
from serving.core.scheduling.fair_queue import Ticket
from serving.core.scheduling.scheduler import (
    Admitted,
    QueuePosition,
    Scheduler,
    SchedulerConfig,
)

T = TypeVar("T")

logger = logging.getLogger(__name__)

NAMESPACE = "kiln"
# Admission attempts of one call across scheduler restarts before it answers 503.
ADMIT_TRIES = 5
# Pause before asking for the scheduler again after finding it dead: its name is freed
# once Ray has marked it dead, a moment after the kill.
RESTART_PAUSE_S = 0.2
# Waiters are coroutines in the actor's event loop: many at once is cheap.
ACTOR_CONCURRENCY = 10_000
# An admission or quota hold lapses this long after its caller's last renewal (the
# caller's process died); callers renew every RENEW_EVERY_S, the actor sweeps every
# SWEEP_EVERY_S.
LEASE_S = 60.0
RENEW_EVERY_S = 15.0
SWEEP_EVERY_S = 10.0


def actor_name(model_id: str) -> str:
    return f"kiln-scheduler:{model_id}"


@ray.remote(num_cpus=0, max_restarts=0)
class SchedulerActor:
    """The ``Scheduler`` of one model, its methods as remote calls."""

    def __init__(self, config: SchedulerConfig) -> None:
        from serving.core.logs import configure_replica_logging

        configure_replica_logging()
        self.scheduler = Scheduler(config, lease_s=LEASE_S)
        self._sweeper: asyncio.Task | None = None

    async def admit(self, ticket: Ticket) -> Admitted:
        if self._sweeper is None:  # the actor's event loop runs only inside its methods
            self._sweeper = asyncio.ensure_future(self._sweep())
        return await self.scheduler.admit(ticket)

    async def renew(self, ids: list[str]) -> None:
        self.scheduler.renew(ids)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            lapsed = self.scheduler.sweep()
            if lapsed:
                logger.warning("freed %d admission(s) whose caller went away", len(lapsed))

    async def release(self, ticket_id: str) -> None:
        self.scheduler.release(ticket_id)

    async def cancel(self, ticket_id: str) -> None:
        self.scheduler.cancel(ticket_id)

    async def hold(self, hold_id: str, tenant: str, images: int, limit: int | None) -> bool:
        return self.scheduler.hold(hold_id, tenant, images, limit)

    async def unhold(self, hold_id: str) -> None:
        self.scheduler.unhold(hold_id)

    async def position(self, request_id: str) -> QueuePosition | None:
        ticket_id = self.scheduler.find(request_id)
        return None if ticket_id is None else self.scheduler.position(ticket_id)

    async def stats(self) -> dict[str, int]:
        return self.scheduler.stats()


class RayAdmission(Admission):
    """Admission through each model's ``SchedulerActor`` (see the module docstring)."""

    def __init__(
        self,
        configs: dict[str, SchedulerConfig],
        enabled: bool = True,
        default_max_queued_images: int | None = None,
    ) -> None:
        super().__init__(enabled, default_max_queued_images)
        self.configs = configs
        self._actors: dict[str, Any] = {}
        self._live: dict[str, set[str]] = {}  # model -> admissions and holds to renew
        self._renewer: asyncio.Task | None = None

    def _holding(self, model_id: str, lease_id: str) -> None:
        self._live.setdefault(model_id, set()).add(lease_id)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.ensure_future(self._renew())

    def _dropping(self, model_id: str, lease_id: str) -> None:
        self._live.get(model_id, set()).discard(lease_id)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            for model_id, ids in list(self._live.items()):
                actor = self._actors.get(model_id)
                if actor is not None and ids:
                    await self._quietly(actor.renew.remote(sorted(ids)))

    async def actor(self, model_id: str) -> Any:
        """The model's scheduler actor, made if no process has made it yet."""
        actor = self._actors.get(model_id)
        if actor is None:
            config = self.configs.get(model_id) or SchedulerConfig()
            options = SchedulerActor.options(
                name=actor_name(model_id),
                namespace=NAMESPACE,
                get_if_exists=True,
                max_concurrency=ACTOR_CONCURRENCY,
            )
            # A lookup in Ray's control store: off the event loop.
            actor = await asyncio.to_thread(options.remote, config)
            self._actors[model_id] = actor
        return actor

    def _lost(self, model_id: str, actor: Any) -> None:
        if self._actors.get(model_id) is actor:
            del self._actors[model_id]
            logger.warning("scheduler of %s died; its callers queue again", model_id)
            if self.metrics is not None:
                self.metrics.scheduler_restarts.labels(model_id).inc()

    async def _on_actor(self, model: str, call: Callable[[Any], Awaitable[T]]) -> T:
        """``call(actor)`` on the model's scheduler actor; when the actor dies under it,
        again on its replacement (``ADMIT_TRIES`` in all), then 503
        ``scheduler_unavailable``: the paid path releases the order's reservation."""
        for attempt in range(ADMIT_TRIES):
            actor = await self.actor(model)
            try:
                return await call(actor)
            except ray.exceptions.RayActorError:
                self._lost(model, actor)
                if attempt + 1 < ADMIT_TRIES:
                    await asyncio.sleep(RESTART_PAUSE_S * (attempt + 1))
        raise service_unavailable(
            f"the scheduler of model {model!r} is restarting; retry",
            retry_after_s=1,
            code="scheduler_unavailable",
        )

    async def _admit(self, model: str, ticket: Ticket) -> Admitted:
        async def admit(actor: Any) -> Admitted:
            try:
                admitted = await actor.admit.remote(ticket)
            except asyncio.CancelledError:
                # The client left: take the ticket out (or give its admission back).
                asyncio.ensure_future(self._quietly(actor.cancel.remote(ticket.id)))
                raise
            self._holding(model, ticket.id)
            return admitted

        return await self._on_actor(model, admit)

    async def _release(self, model: str, ticket_id: str) -> None:
        self._dropping(model, ticket_id)
        actor = self._actors.get(model)
        if actor is not None:
            await self._quietly(actor.release.remote(ticket_id))

    async def _hold(
        self, model: str, hold_id: str, tenant: str, images: int, limit: int | None
    ) -> bool:
        held = await self._on_actor(
            model, lambda actor: actor.hold.remote(hold_id, tenant, images, limit)
        )
        if held:
            self._holding(model, hold_id)
        return held

    async def _unhold(self, model: str, hold_id: str) -> None:
        self._dropping(model, hold_id)
        actor = self._actors.get(model)
        if actor is not None:
            await self._quietly(actor.unhold.remote(hold_id))

    async def _position(self, model: str, request_id: str) -> QueuePosition | None:
        actor = self._actors.get(model)
        if actor is None:
            return None
        try:
            return await actor.position.remote(request_id)
        except ray.exceptions.RayActorError:
            return None

    @staticmethod
    async def _quietly(call: Any) -> None:
        """A release or cancel: a dead actor has nothing left to free."""
        with contextlib.suppress(ray.exceptions.RayActorError):
            await call
