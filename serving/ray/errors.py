"""What the core is told when a call through a Serve handle fails.

Ray wraps and adds its own failures; the core knows none of Ray's types. A replica's own
error arrives wrapped in ``RayTaskError`` (also an instance of the cause's class, but
with Ray's traceback as its text): the core gets the cause itself, so a ``ParamError`` of
the replica is the same 400 as one raised in the ingress. A full queue
(``BackPressureError``) or a deployment without a live replica
(``DeploymentUnavailableError``) is a 503 ``overloaded`` with ``retry-after``, raised
here because Ray installs its own plain-text handler for these on the app.

A replica that died under the call (``replica_died``: its process killed or crashed, its
node lost, Serve's health check failing and Serve stopping it) is a 503
``model_unavailable`` with ``retry-after``: an expected fault of the hardware, never a
500. ``serving.ray.replica_failures`` retries such a call once before it comes to that.
"""

from __future__ import annotations

from ray.exceptions import NodeDiedError, RayActorError, RayTaskError, WorkerCrashedError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)

from serving.core.errors import model_unavailable, service_unavailable

# A dead replica, as a handle call reports it: Ray's actor-died and actor-unavailable
# errors (RayActorError covers both), Serve's replica-unavailable, and the worker's or
# node's death. Not: the replica's own errors (RayTaskError), a full queue, a cancel.
DEAD_REPLICA_ERRORS: tuple[type[BaseException], ...] = (
    RayActorError,
    ReplicaUnavailableError,
    WorkerCrashedError,
    NodeDiedError,
)

# What a handle call may raise that ``core_error`` translates.
RAY_ERRORS: tuple[type[BaseException], ...] = (
    RayTaskError,
    BackPressureError,
    DeploymentUnavailableError,
    *DEAD_REPLICA_ERRORS,
)


def replica_died(exc: BaseException) -> bool:
    """Whether ``exc`` says the replica serving the call died (also when Ray wrapped the
    death in a ``RayTaskError``)."""
    if isinstance(exc, RayTaskError):
        exc = exc.cause if isinstance(exc.cause, BaseException) else exc
    return isinstance(exc, DEAD_REPLICA_ERRORS)


def core_error(exc: BaseException, model_id: str = "") -> BaseException:
    """The error the core raises for ``exc``, raised by a Serve handle call to
    ``model_id``'s deployment: 503 ``model_unavailable`` for a dead replica, the
    replica's own for a ``RayTaskError``, a 503 for a full or unavailable deployment,
    else ``exc`` as it is."""
    if replica_died(exc):
        return model_unavailable(model_id or "?")
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException):
        return exc.cause
    if isinstance(exc, (BackPressureError, DeploymentUnavailableError)):
        retry = getattr(exc, "retry_after_s", None) or 1.0
        return service_unavailable("server busy: the model's queue is full; retry later", retry)
    return exc
