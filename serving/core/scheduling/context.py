"""Who a model call is for, carried by context variables (as ``current_request_id`` is).

The paid path (``serving.core.paid_images``) sets ``current_work`` — tenant, the tenant's
queue weight and the order's hold — around an order, so the model client's admission
(``serving.core.scheduling.admission``) knows whose call it queues without a tenant
argument on every signature between. The priority class is the caller's: synchronous
routes leave the default ``interactive`` (a client may send ``x-kiln-priority: batch``
to put its own request behind interactive work); batch lines (``kiln batch``, ``/v1/batches``)
set ``batch`` with ``priority_scope``; an asynchronous job that asked
``priority: "batch"`` does the same with the value ``check_priority`` accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from serving.core.errors import KilnError
from serving.core.scheduling.fair_queue import PRIORITIES

DEFAULT_PRIORITY = "interactive"
# The request header a client lowers its own request's class with (serving.http middleware).
PRIORITY_HEADER = "x-kiln-priority"


@dataclass(frozen=True)
class Work:
    """The order a model call belongs to: its tenant, the tenant's queue weight and its
    queued-images quota (``None``: no quota)."""

    tenant_id: str
    weight: float = 1.0
    max_queued_images: int | None = None


current_priority: ContextVar[str] = ContextVar("kiln_priority", default=DEFAULT_PRIORITY)
current_work: ContextVar[Work | None] = ContextVar("kiln_work", default=None)
# Told where the task's model calls wait (a ``QueuePosition``) while they are queued,
# every ``admission.POSITION_EVERY_S``: a job's progress sets it (``GET /v1/jobs/{id}``).
queue_listener: ContextVar[Callable[[object], None] | None] = ContextVar(
    "kiln_queue_listener", default=None
)


class InvalidPriority(KilnError):
    """400 ``invalid_priority``: a priority class Kiln does not have."""

    def __init__(self, value: object, param: str = "priority") -> None:
        super().__init__(
            400,
            f"{param} must be one of {', '.join(PRIORITIES)}; got {value!r}",
            param=param,
            code="invalid_priority",
        )


def check_priority(value: object, param: str = "priority") -> str:
    """``value`` if it names a priority class, else 400 naming ``param``."""
    if value not in PRIORITIES:
        raise InvalidPriority(value, param)
    return str(value)


@contextmanager
def priority_scope(priority: str) -> Iterator[None]:
    """Run the block's model calls in ``priority``'s class (checked)."""
    token = current_priority.set(check_priority(priority))
    try:
        yield
    finally:
        current_priority.reset(token)
