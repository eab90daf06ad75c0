"""What the core is told when a call through a Serve handle fails.

Ray wraps and adds its own failures; the core knows none of Ray's types. A replica's own
error arrives wrapped in ``RayTaskError`` (also an instance of the cause's class, but
with Ray's traceback as its text): the core gets the cause itself, so a ``ParamError`` of
the replica is the same 400 as one raised in the ingress. A full queue
(``BackPressureError``) or a deployment without a live replica
(``DeploymentUnavailableError``) is a 503 ``overloaded`` with ``retry-after``, raised
here because Ray installs its own plain-text handler for these on the app.
"""

from __future__ import annotations

from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from serving.core.errors import service_unavailable

# What a handle call may raise that ``core_error`` translates.
RAY_ERRORS: tuple[type[BaseException], ...] = (
    RayTaskError,
    BackPressureError,
    DeploymentUnavailableError,
)


def core_error(exc: BaseException) -> BaseException:
    """The error the core raises for ``exc``, raised by a Serve handle call: the
    replica's own for a ``RayTaskError``, a 503 for a full or unavailable deployment,
    else ``exc`` as it is."""
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException):
        return exc.cause
    if isinstance(exc, (BackPressureError, DeploymentUnavailableError)):
        retry = getattr(exc, "retry_after_s", None) or 1.0
        return service_unavailable("server busy: the model's queue is full; retry later", retry)
    return exc
