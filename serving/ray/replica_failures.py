"""A model replica that dies under a call: retried once, else 503 ``model_unavailable``.

GPUs fall over in production (Xid errors, driver resets, OOM kills, preemptions) and a
render farm's node goes away: an expected fault, never a 500. ``ReplicaFailures.call``
wraps one call through a Serve handle (a generation, a prompt check, an IP-Adapter
embedding, a CLIP extract) and decides:

- **What counts as a dead replica**: ``serving.ray.errors.replica_died`` — Ray's
  actor-died and actor-unavailable errors (``RayActorError``), Serve's
  ``ReplicaUnavailableError``, a crashed worker or a lost node, also wrapped in a
  ``RayTaskError``. A replica that fails Serve's health check mid-call is stopped by
  Serve and its calls end with the actor-died error, so it is the same case. The
  replica's own errors (a ``ParamError``, an out-of-memory 503), a full queue and a
  cancellation are not.
- **Retried once, transparently.** A call's images come back together when its pipeline
  call ends, so a call that died delivered none of them, and the request's seeds are
  fixed before the call: the retry makes the same pixels. Serve's router drops the dead
  replica on the error, so the retry goes to another replica, or to the replacement Serve
  starts. Before retrying, the deployment's ``ready`` is awaited for at most
  ``REPLACEMENT_WAIT_S`` (a replacement loading its model); the retried call itself is
  not timed (it is a whole generation).
- **Else 503** ``model_unavailable`` with ``retry-after`` (``serving.core.errors``): no
  replica answered within ``REPLACEMENT_WAIT_S``, or the retry died too. The paid path
  releases the reservation of every image it did not deliver, as on any error.
- **Cancel and hang-up.** A client that hangs up cancels the request's task: the
  cancellation passes through here untouched (it is not an error), during the first call,
  the wait for a replacement or the retry; Serve cancels the call on the replica, nothing
  is retried for a request nobody waits for, and the reservation is released.
- **Counted and logged.** Each dead replica counts once in
  ``kiln_model_replica_failures{model}`` (by the dead actor's id, however many requests
  it took down); each affected request counts in
  ``kiln_model_replica_failed_requests{model, outcome}`` (``retried`` or
  ``unavailable``). One log line per dead replica, ``REPORT_AFTER_S`` after its first
  failed call, names the request ids it affected (``serving.core.logs.current_request_id``;
  ``-`` for a call outside an HTTP request).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from serving.core.errors import model_unavailable
from serving.core.logs import current_request_id
from serving.core.metrics import Metrics
from serving.ray.errors import RAY_ERRORS, core_error, replica_died

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long a call whose replica died waits for one to answer (another, or the replacement
# loading its model) before it answers 503 model_unavailable. A tiny model reloads in
# seconds; a big checkpoint on a cold disk takes longer and such a request gets the 503.
REPLACEMENT_WAIT_S = 30.0
# The failed calls of one dead replica arrive together; its log line waits this long to
# name them all.
REPORT_AFTER_S = 1.0
# Dead replicas remembered so that a late call of one is not counted as another failure.
_REMEMBERED = 256


def dead_replica_of(exc: BaseException) -> str:
    """The dead replica's actor id as Ray names it (``?`` when it does not)."""
    cause = getattr(exc, "cause", None)
    for error in (exc, cause):
        actor_id = getattr(error, "actor_id", None) or getattr(error, "_replica_id", None)
        if actor_id:
            return str(actor_id)
    return "?"


class ReplicaFailures:
    """Retry-once-or-503 for calls through Serve handles, with its counters and log
    (see the module docstring). ``metrics`` is the app's registry, set once the app's
    core exists; before that, failures are logged only."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self._affected: dict[tuple[str, str], list[str]] = {}
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def call(
        self,
        model_id: str,
        call: Callable[[], Awaitable[T]],
        ready: Callable[[], Awaitable[Any]],
    ) -> T:
        """``call()``'s answer; retried once after ``ready()`` answered if its replica
        died; Ray's other errors as the core's (``core_error``)."""
        try:
            return await call()
        except RAY_ERRORS as exc:
            if not replica_died(exc):
                raise core_error(exc, model_id) from exc
            self.died(model_id, exc)
        try:
            await asyncio.wait_for(ready(), REPLACEMENT_WAIT_S)
            answer = await call()
        except (TimeoutError, *RAY_ERRORS) as exc:
            if not (isinstance(exc, TimeoutError) or replica_died(exc)):
                raise core_error(exc, model_id) from exc
            if replica_died(exc):
                self.died(model_id, exc)
            self._count(model_id, "unavailable")
            raise model_unavailable(model_id) from exc
        self._count(model_id, "retried")
        return answer

    def died(self, model_id: str, exc: BaseException) -> None:
        """Record that a call of the current request found ``model_id``'s replica dead."""
        key = (model_id, dead_replica_of(exc))
        affected = self._affected.get(key)
        if affected is None:
            affected = self._affected[key] = []
            if key not in self._seen:
                self._seen[key] = None
                while len(self._seen) > _REMEMBERED:
                    self._seen.popitem(last=False)
                if self.metrics is not None:
                    self.metrics.replica_failures.labels(model_id).inc()
            asyncio.get_running_loop().call_later(REPORT_AFTER_S, self._report, key, exc)
        affected.append(current_request_id.get() or "-")

    def _report(self, key: tuple[str, str], exc: BaseException) -> None:
        model_id, actor_id = key
        affected = self._affected.pop(key, [])
        logger.error(
            "model %s: replica %s died under %d request(s): %s (%s); each is retried once "
            "on another replica, or answered 503 model_unavailable",
            model_id,
            actor_id,
            len(affected),
            ", ".join(affected),
            type(exc).__name__,
        )

    def _count(self, model_id: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.replica_failed_requests.labels(model_id, outcome).inc()
